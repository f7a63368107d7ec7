"""Run the same named subprocesses as `processes.run_jobs`, as tasks on a Ray cluster: the ladder's training runs
and the capability measurements, when one machine is not enough.

Each job is one Ray task with its CPU and GPU request; the task runs the job's command on whichever node Ray picks
and writes its log where the local pool would (so the nodes must share the run directory's file system and the
Python environment: the usual set-up of a cluster with a shared home). Jobs are resumable commands (`foresight
train ... --resume`), so a task whose worker dies (a node lost, a process killed) is retried by Ray and the run
continues from its last checkpoint. The command's process is tied to the worker (it is killed with it), so a
retry never races an orphaned copy of itself.

Ray is an optional dependency (`pip install -e ".[ray]"`). Ray 2.60 binds to the machine's external address
unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is set for both `ray start` and the driver; the driver sets it for
itself (docs/cluster.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from foresight.errors import ForesightError

RETRIES = 3  # times a task whose worker died is run again (each run resumes from the job's last checkpoint)


def _run_command(argv: list[str], log_path: str, log_mode: str) -> int:
    """The body of each Ray task: run `argv` with its output in `log_path`, dying with this worker."""
    import ctypes
    import signal
    import subprocess

    def die_with_worker() -> None:  # PR_SET_PDEATHSIG: the kernel kills the command when its worker exits
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)

    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, log_mode) as log:
        return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                              preexec_fn=die_with_worker if os.name == "posix" else None).returncode


def connect(address: str) -> None:
    """Join the Ray cluster at `address` ("auto": the one `ray start` began on this machine)."""
    try:
        import ray
    except ImportError:
        raise ForesightError('--ray needs Ray: pip install -e ".[ray]" (then `ray start --head` on one machine '
                             'and `ray start --address HEAD:6379` on the others)') from None
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if ray.is_initialized():
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():  # Ray itself would retry an address with nothing behind it for minutes
        import socket

        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as e:
            raise ForesightError(f"--ray {address}: no Ray cluster answers there ({e.strerror or e}); start one "
                                 f"with `ray start --head --port {port}`, or give the address it printed") from None
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ForesightError(f"cannot join the Ray cluster at {address!r}: {e}") from None


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def run_jobs_on_ray(jobs: list[tuple[str, list[str], Path]], address: str, on_success: Callable[[str, float], None],
                    say=print, log_mode: str = "w", cpus: float = 1, gpus: float = 0,
                    retries: int = RETRIES) -> list[str]:
    """Run each (name, argv, log path) as a Ray task asking for `cpus` CPUs and `gpus` GPUs (Ray sets
    CUDA_VISIBLE_DEVICES for it); Ray runs as many at once as the cluster has room for. on_success(name, start
    time) is called as each job exits with status 0. Returns one "name: reason" per failed job, as run_jobs does."""
    import ray

    connect(address)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=retries)(_run_command)
    started = time.time()
    refs = {task.remote(argv, str(log_path), log_mode): (name, log_path) for name, argv, log_path in jobs}
    failures = []
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=5.0)
        for ref in ready:
            name, log_path = refs.pop(ref)
            try:
                code = ray.get(ref)
            except ray.exceptions.RayError as e:  # the worker died more than `retries` times, or Ray failed
                failures.append(f"{name}: {type(e).__name__} after {retries} retries")
                say(f"  {name} failed: {failures[-1]}")
                continue
            if code != 0:
                tail = Path(log_path).read_text().strip().splitlines()[-1:] if Path(log_path).is_file() else []
                failures.append(f"{name}: {tail[0] if tail else 'exit ' + str(code)}")
                say(f"  {name} failed: {failures[-1]}")
            else:
                on_success(name, started)
    return failures
