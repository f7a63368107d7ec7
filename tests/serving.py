"""Starting a real `foresight serve` process on 127.0.0.1 for a test, and waiting until it is ready."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BUILTIN_MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def output_of(proc: subprocess.Popen) -> str:
    """What the server has printed so far (its stdout and stderr go to a file, so a chatty server never blocks
    on a full pipe)."""
    proc.stdout.flush()
    with open(proc.stdout.name, encoding="utf-8", errors="replace") as f:
        return f.read()


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Poll GET /health until it answers 200; fail with the server's output if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{output_of(proc)}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the server did not become healthy in {timeout} s:\n{output_of(proc)}")


@contextlib.contextmanager
def running_server(*args: str, model: str = BUILTIN_MODEL, env: dict | None = None):
    """Yields (base_url, process) for `foresight serve MODEL --port P ARGS...`; stops it (SIGTERM) afterwards.
    `output_of(process)` is what it printed."""
    port = free_port()
    cmd = [sys.executable, "-m", "foresight", "serve", model, "--host", "127.0.0.1", "--port", str(port), *args]
    log = tempfile.NamedTemporaryFile("w+", prefix="foresight-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        os.unlink(log.name)
