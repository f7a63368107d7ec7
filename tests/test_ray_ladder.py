"""A ladder trained on a real Ray cluster: `ray start --head` on loopback with room for two tasks at once, inside a
network namespace that has only loopback (Ray probes cloud metadata and DNS at start). One worker is killed mid-run;
Ray retries its task, the run resumes from its checkpoint, and every run's losses equal the local pool's."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"


def _can_isolate() -> bool:
    return shutil.which("unshare") is not None and shutil.which("ip") is not None and subprocess.run(
        ["unshare", "--net", "true"], capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.skipif(not RAY.exists(), reason="Ray is not installed (pip install -e '.[ray]')"),
    pytest.mark.skipif(not _can_isolate(), reason="needs `unshare --net` (root) to keep Ray's traffic on loopback"),
]


def foresight(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "foresight", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO)


def three_run_ladder(data_dir: Path, out: Path) -> None:
    """The mini forecast of test_forecast, longer, planned; its three largest runs kept (a plan holds at least 5)."""
    proc = foresight("ladder", "plan", "configs/forecast-cpu.toml", "--out", out,
                     "--set", f'target.data.path="{data_dir}"', "--set", "target.data.val_tokens=32768",
                     "--set", "target.train.flops=3e12", "--set", "target.model.d_model=48",
                     "--set", "target.model.n_heads=3", "--set", "target.model.n_layers=2", "--set", "ladder.runs=5",
                     "--set", "ladder.min_steps=200", "--set", "target.train.batch_size=16")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((out / "plan.json").read_text())
    plan["runs"] = plan["runs"][2:]
    (out / "plan.json").write_text(json.dumps(plan, indent=1))


def train_processes(run: Path) -> list[int]:
    """Pids of the `foresight train` processes training `run`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"train" in argv and str(run).encode() in argv:
            pids.append(int(entry.name))
    return pids


def parent(pid: int) -> tuple[int, str]:
    ppid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return ppid, (Path("/proc") / str(ppid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()


def outside_connects(strace_log: Path) -> list[str]:
    """The connect() calls to anything but loopback (or a local socket)."""
    loopback = ('inet_addr("127.0.0.1")', '"::1"', '"::ffff:127.0.0.1"')
    return [line for line in strace_log.read_text().splitlines()
            if "connect(" in line and "AF_INET" in line and not any(a in line for a in loopback)]


@pytest.mark.timeout(900)
def test_ray_ladder_survives_a_killed_worker_and_matches_the_local_pool(small_dataset, tmp_path):
    planned = tmp_path / "plan"
    three_run_ladder(small_dataset, planned)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    shutil.copytree(planned, local)
    shutil.copytree(planned, on_ray)
    names = [r["name"] for r in json.loads((planned / "plan.json").read_text())["runs"]]
    largest = on_ray / "runs" / names[-1]

    proc = foresight("ladder", "run", local, "--jobs", "2")
    assert proc.returncode == 0, proc.stderr

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    script = (f"set -e; ip link set lo up; export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0; "
              f"{RAY} start --head --node-ip-address=127.0.0.1 --port=6379 --num-cpus=2 --include-dashboard=false "
              f"--disable-usage-stats --temp-dir={temp} > {tmp_path / 'ray-start.log'} 2>&1; "
              f"trap '{RAY} stop --force > /dev/null 2>&1' EXIT; "
              f"{sys.executable} -m foresight ladder run {on_ray} --ray 127.0.0.1:6379")
    strace = shutil.which("strace")
    trace = tmp_path / "connect.strace"
    argv = ["unshare", "--net", "bash", "-c", script]
    if strace:
        argv = [strace, "-f", "-e", "trace=connect", "-o", str(trace), *argv]
    driver = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Kill the Ray worker training the largest run once its first checkpoint is on disk.
        deadline, killed = time.time() + 400, None
        while killed is None and time.time() < deadline and driver.poll() is None:
            if (largest / "checkpoints" / "latest").is_file() and not (largest / "summary.json").exists():
                for pid in train_processes(largest):
                    worker, title = parent(pid)
                    if "ray" in title:
                        os.kill(worker, signal.SIGKILL)
                        killed = pid
                        break
            time.sleep(0.2)
        assert killed, "never caught the largest run between its first checkpoint and its end"
        # the training process dies with its worker (else Ray's retry would race it on the same run directory)
        def gone() -> bool:
            try:
                return " Z " in Path(f"/proc/{killed}/stat").read_text()  # exited, not yet reaped
            except OSError:
                return True

        deadline = time.time() + 20
        while not gone() and time.time() < deadline:
            time.sleep(0.2)
        assert gone(), "the killed worker's training process outlived it"
        output, _ = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
        shutil.rmtree(temp, ignore_errors=True)
    assert driver.returncode == 0, output[-3000:]
    assert "as Ray tasks" in output
    log = (largest / "train.log").read_text()
    assert "resuming" in log, log[-2000:]  # the retried task continued from the checkpoint, not from scratch

    for name in names:
        a = json.loads((local / "runs" / name / "summary.json").read_text())
        b = json.loads((on_ray / "runs" / name / "summary.json").read_text())
        assert abs(a["final_val_loss"] - b["final_val_loss"]) <= 1e-4, name
        rows = lambda d: [json.loads(line) for line in (d / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        ra, rb = rows(local), rows(on_ray)
        assert [r["step"] for r in ra] == [r["step"] for r in rb]
        assert max(abs(x["train_loss"] - y["train_loss"]) for x, y in zip(ra, rb)) <= 1e-4, name

    if strace:  # Ray's own probes (cloud metadata, DNS) are tried; none can leave the namespace
        for line in outside_connects(trace):
            assert "ENETUNREACH" in line, line
