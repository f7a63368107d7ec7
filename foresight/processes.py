"""Run named subprocesses a few at a time, each writing to its own log: the ladder's training runs and the
capability forecast's pass-rate measurements both work this way."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def run_jobs(jobs: list[tuple[str, list[str], Path]], parallel: int, on_success: Callable[[str, float], None],
             say=print, log_mode: str = "w", slot_env: Callable[[int], dict[str, str]] | None = None) -> list[str]:
    """Run each (name, argv, log path) with stdout and stderr to the log, `parallel` at a time, in list order.

    Each running job holds one of `parallel` slots (0, 1, ...); `slot_env(slot)` adds to its environment, e.g. the
    GPU that slot's jobs use. on_success(name, start time) is called as each job exits with status 0. Returns one
    "name: last log line" per failed job (the caller decides how to report them); a failure does not stop the others."""
    queue = list(jobs)
    running: dict[str, tuple[subprocess.Popen, float, object, Path, int]] = {}
    free_slots = list(range(parallel))
    failures = []
    while queue or running:
        while queue and free_slots:
            name, argv, log_path = queue.pop(0)
            slot = free_slots.pop(0)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, log_mode)
            env = {**os.environ, **slot_env(slot)} if slot_env else None
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
            running[name] = (proc, time.time(), log, log_path, slot)
        time.sleep(0.2)
        for name, (proc, started, log, log_path, slot) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            free_slots.append(slot)
            free_slots.sort()
            if proc.returncode != 0:
                failures.append(failure(name, log_path, proc.returncode))
                say(f"  {name} failed: {failures[-1]}")
            else:
                on_success(name, started)
    return failures


def failure(name: str, log_path: Path, returncode: int) -> str:
    """A failed job's line for the caller's report: its name and the last line of its log (or its exit code, if it
    logged nothing)."""
    tail = log_path.read_text().strip().splitlines()[-1:] if log_path.is_file() else []
    return f"{name}: {tail[0] if tail else 'exit ' + str(returncode)}"
