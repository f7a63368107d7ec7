"""Timing helpers shared by the bench/ scripts.

Every benchmark times ours and a peer in the same process, interleaved (so a noisy neighbour or a warm cache hurts
both alike), several times, and reports medians; its last printed line is `ratio: X` (higher is better for us).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def synchronize() -> None:
    """Wait for queued GPU work, so that a timer measures the work and not just its launch."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function: `warmup` untimed rounds, then `repeats` timed rounds in which every
    function runs once, in an order that rotates from round to round."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            synchronize()
            start = time.perf_counter()
            fns[name]()
            synchronize()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_ratio(ratio: float) -> None:
    """The line every benchmark ends with."""
    print(f"ratio: {ratio:.3f}")
