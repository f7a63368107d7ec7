"""Packing several sequences into one row: first-fit bins and the block-diagonal causal mask that keeps them apart.

SFT packs conversations into its training rows, and the reward model packs the chosen and rejected sides of a
micro-batch; in both, each sequence keeps its own positions (0, 1, ...) and attends only to itself, so a packed row
computes exactly what its sequences would alone, without computing padding.
"""

from __future__ import annotations

import torch


def first_fit(lengths: list[int], capacity: int, order) -> list[list[int]]:
    """Indices into `lengths`, taken in `order`, grouped into bins of total length <= capacity (first fit: each
    goes into the earliest bin with room, else a new one). Every length must be <= capacity."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = lengths[i]
        slot = next((b for b, free in enumerate(room) if free >= n), None)
        if slot is None:
            bins.append([])
            room.append(capacity)
            slot = len(bins) - 1
        bins[slot].append(i)
        room[slot] -= n
    return bins


def document_mask(documents: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] boolean attention mask from a document id per position [B, T] (-1 = padding): a position sees the
    earlier positions of its own document; padding sees itself, so no row of the mask is empty."""
    T = documents.shape[1]
    same = documents[:, :, None] == documents[:, None, :]
    causal = torch.ones(T, T, dtype=torch.bool, device=documents.device).tril()
    real = (documents >= 0)[:, :, None]
    pad_self = torch.eye(T, dtype=torch.bool, device=documents.device) & ~real
    return ((same & causal & real) | pad_self).unsqueeze(1)
