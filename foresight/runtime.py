"""Process-wide tuning applied once at start-up by the CLI."""

from __future__ import annotations

import ctypes
import os
import sys


def keep_freed_memory() -> bool:
    """Stop glibc from returning large freed blocks to the OS after every use.

    PyTorch on CPU frees and re-allocates the same multi-MB activation buffers every step; by default glibc serves
    blocks over 128 KB with mmap and unmaps them on free, so each step page-faults all of them in again. Raising the
    mmap and trim thresholds keeps them in the heap: training steps run 1.3-1.8x faster on 2 cores (docs/LOG.md,
    2026-11-23), with system time down 7x. Returns whether the setting took (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 31))


def passive_thread_waits() -> None:
    """Make idle OpenMP threads sleep instead of spinning (unless the user chose a policy).

    By default libgomp's threads spin-wait between parallel regions. With 2 threads on 2 cores, any other busy
    process takes a core from a spinning thread and every matmul waits for it: a training step ran 8.5x slower
    (1,240 vs 10,500 tok/s for the forecast-cpu target while a benchmark held one core; docs/LOG.md, 2026-11-23).
    Must run before torch is imported, since libgomp reads it once when it loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
