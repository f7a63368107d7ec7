"""Batches from a token shard, addressed by step so that resuming and data parallelism are exact.

The global batch of optimizer step s is a deterministic function of (seed, s): `batch_size` windows at offsets drawn
from a generator seeded with both. Nothing else about the data position needs saving, a resumed run draws exactly
the batches it would have drawn, and N processes that each take a contiguous slice of the global batch see exactly
the rows one process would.
"""

from __future__ import annotations

import numpy as np
import torch


class StepBatches:
    def __init__(self, tokens: np.ndarray, seq_len: int, seed: int):
        if len(tokens) < seq_len + 2:
            raise ValueError(f"the training split has {len(tokens)} tokens, fewer than one sequence of {seq_len}")
        self.tokens, self.seq_len, self.seed = tokens, seq_len, seed

    def rows(self, step: int, batch_size: int, first: int = 0, count: int | None = None) -> tuple[torch.Tensor, ...]:
        """Inputs and next-token targets [count, seq_len] for rows first..first+count of step's global batch."""
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(0, len(self.tokens) - self.seq_len - 1, size=batch_size)
        starts = starts[first: first + (batch_size if count is None else count)]
        windows = np.stack([np.asarray(self.tokens[s: s + self.seq_len + 1], dtype=np.int64) for s in starts])
        windows = torch.from_numpy(windows)
        return windows[:, :-1], windows[:, 1:]


def validation_windows(tokens: np.ndarray, seq_len: int, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed validation set: max_tokens // seq_len sequences at evenly spaced offsets across the whole split.

    Spread, not the first max_tokens tokens: the split is stored source by source, so its head is one source only.
    The offsets depend only on the split's length, seq_len and max_tokens, so every run sees the same tokens."""
    n = min(max_tokens, len(tokens) - 1) // seq_len
    if n == 0:
        raise ValueError(f"the validation split has {len(tokens)} tokens, fewer than one sequence of {seq_len}")
    starts = np.linspace(0, len(tokens) - seq_len - 1, n).astype(np.int64)
    windows = np.stack([np.asarray(tokens[s: s + seq_len + 1], dtype=np.int64) for s in starts])
    return torch.from_numpy(windows[:, :-1].copy()), torch.from_numpy(windows[:, 1:].copy())
