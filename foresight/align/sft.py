"""Supervised fine-tuning: next-token loss on the assistant's tokens of chat demonstrations, on the shared loop.

Each conversation is rendered by the model's own chat template and its assistant tokens marked
(align/tokens.py). With packing, conversations are laid end to end in rows of train.seq_len + 1 tokens, first fit
in a seeded order; each keeps its own positions (0, 1, ...) and attends only to itself (a block-diagonal causal
mask), so a packed row computes exactly what the conversations would alone, with no padding trained or computed.
The loss is the mean cross-entropy over the assistant tokens of a micro-batch, and the output head runs on those
positions only (the others' logits would be thrown away).

The rows of optimizer step s are a function of s alone (`align_run.step_order`: each epoch a seeded permutation
of the packed rows), so --resume continues exactly, as pre-training does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foresight.align import run as align_run
from foresight.align.config import SFTConfig
from foresight.align.packing import document_mask, first_fit
from foresight.errors import ForesightError
from foresight.train.distributed import DistInfo, all_reduce_sum, micro_batches
from foresight.train.loop import train_loop
from foresight.train.optim import build_optimizer

IGNORE = -100  # target of a position the loss skips


@dataclass
class Example:
    ids: list[int]
    trained: list[bool]


def tokenize(tokenizer, records: list[dict], max_len: int, where: str) -> tuple[list[Example], int]:
    """Examples that fit in max_len tokens (and train at least one token), and how many were left out as too long."""
    from foresight.align.tokens import conversation_tokens

    examples, too_long = [], 0
    for r in records:
        ids, trained = conversation_tokens(tokenizer, r["messages"], where=f"{where}: {r.get('id', '?')}")
        if len(ids) > max_len:
            too_long += 1
        elif any(trained[1:]):
            examples.append(Example(ids, trained))
    return examples, too_long


@dataclass
class Rows:
    """Model inputs for a set of rows of length T: tokens, next-token targets (IGNORE where untrained), positions,
    and a document id per position (-1 for padding) from which the attention mask is built."""
    tokens: torch.Tensor
    targets: torch.Tensor
    positions: torch.Tensor
    documents: torch.Tensor

    def to(self, device) -> "Rows":
        return Rows(*(t.to(device, non_blocking=True) for t in (self.tokens, self.targets, self.positions,
                                                                 self.documents)))

    def attention_mask(self) -> torch.Tensor:
        return document_mask(self.documents)


def _row(parts: list[Example], length: int) -> tuple[np.ndarray, ...]:
    """One row of `length` inputs from conversations laid end to end (each shifted for next-token targets)."""
    tokens = np.zeros(length, np.int64)
    targets = np.full(length, IGNORE, np.int64)
    positions = np.zeros(length, np.int64)
    documents = np.full(length, -1, np.int64)
    at = 0
    for doc, ex in enumerate(parts):
        n = len(ex.ids) - 1  # inputs ids[:-1] predict ids[1:]
        tokens[at:at + n] = ex.ids[:-1]
        targets[at:at + n] = [t if keep else IGNORE for t, keep in zip(ex.ids[1:], ex.trained[1:])]
        positions[at:at + n] = np.arange(n)
        documents[at:at + n] = doc
        at += n
    return tokens, targets, positions, documents


def pack(examples: list[Example], seq_len: int, seed: int, packed: bool = True) -> list[tuple[np.ndarray, ...]]:
    """Rows of seq_len inputs. Packed: first fit over a seeded order of the examples; else one example per row."""
    order = np.random.default_rng(seed).permutation(len(examples))
    if not packed:
        return [_row([examples[i]], seq_len) for i in order]
    bins = first_fit([len(ex.ids) - 1 for ex in examples], seq_len, order)
    return [_row([examples[i] for i in b], seq_len) for b in bins]


def stack(rows: list[tuple[np.ndarray, ...]]) -> Rows:
    return Rows(*(torch.from_numpy(np.stack(col)) for col in zip(*rows)))


class AssistantLoss(nn.Module):
    """Wraps the language model so that one call (the one data parallelism hooks) returns the mean cross-entropy
    over the trained positions; the output head runs on those positions only."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def param_groups(self, weight_decay: float) -> list[dict]:
        return self.lm.param_groups(weight_decay)

    def forward(self, rows: Rows, reduction: str = "mean") -> torch.Tensor:
        hidden = self.lm.hidden_states(rows.tokens, positions=rows.positions, attn_mask=rows.attention_mask())
        return trained_token_loss(self.lm, hidden, rows.targets, reduction)


def trained_token_loss(model: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
                       ) -> torch.Tensor:
    """Next-token cross-entropy at the positions whose target is not IGNORE; `model.logits` (the output head) runs
    on those positions only."""
    keep = targets != IGNORE
    return F.cross_entropy(model.logits(hidden[keep]).float(), targets[keep], reduction=reduction)


def steps_for(n_rows: int, batch_size: int, epochs: float, steps: int) -> int:
    return steps if steps > 0 else max(1, math.ceil(epochs * n_rows / batch_size))


@torch.no_grad()
def heldout_loss(loss_model: AssistantLoss, rows: list, micro: int, device, info: DistInfo, autocast) -> float:
    """Mean cross-entropy (nats) over every assistant token of the held-out rows (sharded across processes)."""
    was_training = loss_model.training
    loss_model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for i in range(info.rank * micro, len(rows), micro * info.world_size):
        batch = stack(rows[i:i + micro]).to(device)
        with autocast:
            loss_sum = loss_model(batch, reduction="sum")
        total += torch.stack([loss_sum.double(), (batch.targets != IGNORE).sum().double()])
    all_reduce_sum(total, info)
    loss_model.train(was_training)
    return (total[0] / total[1].clamp(min=1)).item()


def train_sft(cfg: SFTConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    return align_run.run_with_processes(cfg, _train_sft, out, resume, progress)


def _train_sft(cfg: SFTConfig, out: Path, resume: bool, progress: bool, info: DistInfo) -> dict:
    from foresight.align.data import read_conversations

    t = cfg.train
    device, autocast = align_run.start(cfg, SFTConfig, out, resume, info)
    t0 = time.time()

    train_path, heldout_path = align_run.data_files(cfg.data, "sft")
    loaded = align_run.load_base(cfg.base, device)
    if t.seq_len + 1 > loaded.model.cfg.max_seq_len:
        raise ForesightError(f"train.seq_len ({t.seq_len}) must be below the model's context "
                             f"({loaded.model.cfg.max_seq_len})")
    records = align_run.select(read_conversations(train_path), cfg.data, t.seed)
    examples, too_long = tokenize(loaded.tokenizer, records, t.seq_len + 1, str(train_path))
    if not examples:
        raise ForesightError(f"{train_path}: no conversation fits in train.seq_len + 1 = {t.seq_len + 1} tokens")
    rows = pack(examples, t.seq_len, t.seed, cfg.sft.pack)
    heldout_rows: list = []
    if heldout_path is not None:
        held = align_run.sample(read_conversations(heldout_path), cfg.data.max_heldout, t.seed)
        held_examples, _ = tokenize(loaded.tokenizer, held, t.seq_len + 1, str(heldout_path))
        heldout_rows = pack(held_examples, t.seq_len, t.seed, cfg.sft.pack)

    per_process, micro = micro_batches(t, info)
    steps = steps_for(len(rows), t.batch_size, cfg.sft.epochs, cfg.sft.steps)
    trained_tokens = sum(sum(ex.trained[1:]) for ex in examples)
    if info.is_main:
        print(f"sft: {len(examples)} conversations ({too_long} longer than {t.seq_len + 1} tokens left out), "
              f"{trained_tokens:,} assistant tokens, {len(rows)} rows of {t.seq_len}; {steps} steps of "
              f"{t.batch_size} rows")

    torch.manual_seed(t.seed)
    loss_model = AssistantLoss(loaded.model)
    def batch(step: int, m: int) -> Rows:
        order = align_run.step_order(len(rows), t.seed, step, t.batch_size, info.rank * per_process + m * micro, micro)
        return stack([rows[i] for i in order]).to(device)

    def assistant_loss(forward, inputs: Rows) -> torch.Tensor:
        return forward(inputs)

    def evaluate() -> dict:
        return {"val_loss": heldout_loss(loss_model, heldout_rows, micro, device, info, autocast)} if heldout_rows \
            else {}

    result = train_loop(loss_model, lambda m: build_optimizer(m, t),
                        cfg=t, out=out, steps=steps, accum=per_process // micro,
                        tokens_per_step=t.batch_size * t.seq_len, batch=batch, loss=assistant_loss,
                        evaluate=evaluate, info=info, device=device, autocast=autocast, resume=resume,
                        progress=progress)
    summary = {
        "base": cfg.base,
        "final_heldout_loss": result.metrics.get("val_loss"),
        "final_train_loss": result.train_loss,
        "steps": steps,
        "conversations": len(examples),
        "left_out_too_long": too_long,
        "rows": len(rows),
        "assistant_tokens": trained_tokens,
        "heldout_rows": len(heldout_rows),
        "tokens_per_second": result.tokens_per_second,
        "train_seconds": result.train_seconds,
        "wall_seconds": result.wall_seconds,
        "data": {"train": str(train_path), "heldout": str(heldout_path) if heldout_path else None},
        "model": str(out / align_run.MODEL_DIR),
    }
    if info.is_main:
        align_run.export_model(loaded, out)
        align_run.write_summary(out, summary)
        print(f"sft: {time.time() - t0:.0f} s; wrote {out / align_run.MODEL_DIR}")
    return summary
