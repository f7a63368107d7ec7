"""Prompt + reply sequences laid out in rows, and a language model's log-probabilities of the reply tokens: what
DPO (pairs of replies) and PPO (sampled replies, with values) both compute.

Sequences are laid out as the reward model lays out its pairs (`packing.pad_rows`: one right-padded row each, or
`packing.pack_rows`: packed, each attending only to itself), and each sequence says where its reply starts. Only the
positions that predict a reply token are read: position (rows[k], cols[k]) predicts targets[k], the token at
offset[k] of sequence seq[k]'s reply. The output head runs on those positions alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from foresight.align.packing import Sides, pack_rows, pad_rows, side_hidden_states
from foresight.align.rm import Pair


@dataclass
class ReplyBatch:
    sides: Sides
    rows: torch.Tensor
    cols: torch.Tensor
    targets: torch.Tensor
    seq: torch.Tensor  # which sequence each predicted token belongs to
    offset: torch.Tensor  # its index within that sequence's reply

    def to(self, device) -> "ReplyBatch":
        return ReplyBatch(self.sides.to(device), *(t.to(device, non_blocking=True) for t in
                                                   (self.rows, self.cols, self.targets, self.seq, self.offset)))

    @property
    def n_sequences(self) -> int:
        return len(self.sides.last_row)

    def padded(self, values: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token values (aligned with targets) as [sequences, longest reply], and the mask of real tokens."""
        if width is None:
            width = int(self.offset.max()) + 1 if len(self.offset) else 0
        out = torch.zeros(self.n_sequences, width, dtype=values.dtype, device=values.device)
        mask = torch.zeros(self.n_sequences, width, dtype=torch.float32, device=values.device)
        out[self.seq, self.offset] = values
        mask[self.seq, self.offset] = 1.0
        return out, mask


def replies_batch(seqs: list[list[int]], starts: list[int], row_len: int = 0) -> ReplyBatch:
    """Sequences (prompt + reply ids) whose replies begin at `starts`: packed into rows of row_len tokens, or one
    right-padded row each if 0."""
    sides = pack_rows(seqs, row_len) if row_len else pad_rows(seqs)
    rows, cols, targets, seq, offset = [], [], [], [], []
    for i, (ids, start) in enumerate(zip(seqs, starts)):
        row, end = int(sides.last_row[i]), int(sides.last_col[i])
        begin = end - len(ids) + 1  # the column of the sequence's first token
        first = max(start, 1)
        for j in range(first, len(ids)):  # token j is predicted at the position before it
            rows.append(row)
            cols.append(begin + j - 1)
            targets.append(ids[j])
            seq.append(i)
            offset.append(j - first)
    as_long = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return ReplyBatch(sides, *map(as_long, (rows, cols, targets, seq, offset)))


def reply_batch(pairs: list[Pair], row_len: int = 0) -> ReplyBatch:
    """The chosen sides of the pairs, then the rejected ones."""
    return replies_batch([p.chosen for p in pairs] + [p.rejected for p in pairs],
                         [p.reply_start for p in pairs] * 2, row_len)


def reply_hidden_states(lm: nn.Module, batch: ReplyBatch) -> torch.Tensor:
    """Final-norm hidden states [predicted tokens, d] at the positions that predict reply tokens."""
    return side_hidden_states(lm, batch.sides)[batch.rows, batch.cols]


def token_logprobs(lm: nn.Module, batch: ReplyBatch, hidden: torch.Tensor | None = None) -> torch.Tensor:
    """log pi(token) of every reply token, aligned with batch.targets."""
    hidden = reply_hidden_states(lm, batch) if hidden is None else hidden
    return -F.cross_entropy(lm.logits(hidden).float(), batch.targets, reduction="none")


def reply_logprobs(lm: nn.Module, batch: ReplyBatch) -> torch.Tensor:
    """log pi(reply | prompt) of every sequence, summed over its reply tokens."""
    logps = token_logprobs(lm, batch)
    return torch.zeros(batch.n_sequences, device=logps.device).index_add(0, batch.seq, logps)
