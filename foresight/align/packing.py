"""Packing several sequences into one row: first-fit bins and the block-diagonal causal mask that keeps them apart.

SFT packs conversations into its training rows, and the reward model packs the chosen and rejected sides of a
micro-batch; in both, each sequence keeps its own positions (0, 1, ...) and attends only to itself, so a packed row
computes exactly what its sequences would alone, without computing padding. `Sides` is that layout for scoring
whole sequences (the reward model, DPO's and PPO's log-probabilities, the RBRM's grading states): rows padded or
packed, and where each sequence ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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


@dataclass
class Sides:
    """Token sequences laid out in rows [R, T], and where each sequence's last token is (last_row[i], last_col[i]).
    Padded rows hold one sequence each and need no mask (documents None); packed rows carry each position's
    sequence number (-1 = padding) and position within it."""
    tokens: torch.Tensor
    last_row: torch.Tensor
    last_col: torch.Tensor
    positions: torch.Tensor | None = None
    documents: torch.Tensor | None = None

    def to(self, device) -> "Sides":
        return Sides(*(None if t is None else t.to(device, non_blocking=True)
                       for t in (self.tokens, self.last_row, self.last_col, self.positions, self.documents)))


def side_hidden_states(lm: nn.Module, sides: "Sides") -> torch.Tensor:
    """The language model's final-norm hidden states [R, T, d] over rows laid out by pad_rows or pack_rows (packed
    sequences each attend only to themselves, from position 0)."""
    if sides.documents is None:
        return lm.hidden_states(sides.tokens)
    return lm.hidden_states(sides.tokens, positions=sides.positions, attn_mask=document_mask(sides.documents))


def pad_rows(seqs: list[list[int]]) -> Sides:
    """One right-padded row per sequence (padding id 0)."""
    longest = max(len(s) for s in seqs)
    tokens = torch.zeros(len(seqs), longest, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, :len(s)] = torch.tensor(s)
    return Sides(tokens, torch.arange(len(seqs)), torch.tensor([len(s) - 1 for s in seqs]))


def pack_rows(seqs: list[list[int]], row_len: int) -> Sides:
    """The sequences packed into rows of max(row_len, longest) tokens, first fit, longest first."""
    lengths = [len(s) for s in seqs]
    row_len = max(row_len, max(lengths))
    bins = first_fit(lengths, row_len, sorted(range(len(seqs)), key=lambda i: -lengths[i]))
    tokens = torch.zeros(len(bins), row_len, dtype=torch.long)
    positions = torch.zeros(len(bins), row_len, dtype=torch.long)
    documents = torch.full((len(bins), row_len), -1, dtype=torch.long)
    last_row = torch.zeros(len(seqs), dtype=torch.long)
    last_col = torch.zeros(len(seqs), dtype=torch.long)
    for r, members in enumerate(bins):
        at = 0
        for i in members:
            n = lengths[i]
            tokens[r, at:at + n] = torch.tensor(seqs[i])
            positions[r, at:at + n] = torch.arange(n)
            documents[r, at:at + n] = i
            last_row[i], last_col[i] = r, at + n - 1
            at += n
    return Sides(tokens, last_row, last_col, positions, documents)
