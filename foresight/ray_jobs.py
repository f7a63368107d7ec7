"""Run the same named subprocesses as `processes.run_jobs`, as tasks on a Ray cluster: the ladder's training runs
and the capability measurements, when one machine is not enough.

Each job is one Ray task with its CPU and GPU request; the task runs the job's command on whichever node Ray picks
and writes its log where the local pool would (so the nodes must share the run directory's file system and the
Python environment: the usual set-up of a cluster with a shared home). Jobs are resumable commands (`foresight
train ... --resume`), so a task whose worker dies (a node lost, a process killed) is retried by Ray and the run
continues from its last checkpoint. The command is tied to the worker: when the worker dies the kernel sends it
SIGTERM (`setpriv --pdeathsig`), on which torchrun stops its ranks too, so a retry never races an orphaned copy.

Ray is an optional dependency (`pip install -e ".[ray]"`); docs/cluster.md says how to start a cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from foresight.errors import ForesightError
from foresight.processes import failure

RETRIES = 3  # times a task whose worker died is run again (each run resumes from the job's last checkpoint)


def _run_command(argv: list[str], log_path: str, log_mode: str) -> int:
    """The body of each Ray task: run `argv` with its output in `log_path`, stopped if this worker dies."""
    import shutil
    import subprocess

    # SIGTERM, not SIGKILL: torchrun (--procs-per-run > 1) starts its ranks in sessions of their own and stops
    # them on SIGTERM, while a SIGKILLed torchrun would leave them running.
    setpriv = shutil.which("setpriv")
    tied = [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, log_mode) as log:
        return subprocess.run(tied, stdout=log, stderr=subprocess.STDOUT).returncode


def connect(address: str) -> None:
    """Join the Ray cluster at `address` ("auto": the one `ray start` began on this machine)."""
    try:
        import ray
    except ImportError:
        raise ForesightError('--ray needs Ray: pip install -e ".[ray]" (then `ray start --head` on one machine '
                             'and `ray start --address HEAD:6379` on the others)') from None
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
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        # Ray would queue such a task forever
        have = ", ".join(f"{r.get('CPU', 0):g} CPU/{r.get('GPU', 0):g} GPU" for r in nodes) or "no live node"
        raise ForesightError(f"each job needs {cpus:g} CPU(s) and {gpus:g} GPU(s) on one node, and no node of the "
                             f"Ray cluster at {address!r} has that ({have}); lower --procs-per-run")
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
            except ray.exceptions.WorkerCrashedError:
                failures.append(f"{name}: its worker died {retries + 1} times")
                say(f"  {name} failed: {failures[-1]}")
                continue
            except ray.exceptions.RayError as e:
                failures.append(f"{name}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}")
                say(f"  {name} failed: {failures[-1]}")
                continue
            if code != 0:
                failures.append(failure(name, Path(log_path), code))
                say(f"  {name} failed: {failures[-1]}")
            else:
                on_success(name, started)
    return failures
