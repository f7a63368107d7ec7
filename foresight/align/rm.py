"""Reward model: a language model with a scalar head, trained on preference pairs with the Bradley-Terry loss.

A pair is a prompt (chat messages ending with the user's turn) and two replies, one preferred. Each side is rendered
with the model's chat template (prompt + reply + end-of-turn) and the reward is a linear head on the final-norm
hidden state of its last token. The loss is -log sigmoid(r_chosen - r_rejected - margin) (InstructGPT's, with
Llama 2's optional margin); accuracy is the fraction of pairs with r_chosen > r_rejected, reported per source.

In training, the chosen and rejected sides of a micro-batch are packed into rows of train.seq_len tokens (first fit,
longest first; each side keeps its own positions and attends only to itself), so no padding is computed; held-out
scoring batches pairs of similar length as right-padded rows, where a row's last real token never sees the padding
after it, so no mask is needed. `[rm] pack = false` trains on padded rows too.

The run directory holds model/ (the language model body and its tokenizer, as SFT's runs do) and reward_head.json
(the head's weights, its bias and the base model); `load_reward_model(RUN)` reads both back, and
`foresight align score RUN --prompt ... --response ...` prints a reward.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foresight.align import run as align_run
from foresight.align.config import RMConfig
from foresight.align.packing import Sides, pack_rows, pad_rows, side_hidden_states
from foresight.errors import ForesightError
from foresight.files import atomic_write_text
from foresight.train.distributed import DistInfo, micro_batches
from foresight.train.loop import train_loop
from foresight.train.optim import build_optimizer

HEAD_FILE = "reward_head.json"


class RewardModel(nn.Module):
    """A Transformer body and a linear head from its last token's hidden state to one number."""

    def __init__(self, lm: nn.Module, head: nn.Linear | None = None):
        super().__init__()
        self.lm = lm
        self.head = head or nn.Linear(lm.cfg.d_model, 1)
        if head is None:  # small, so the first rewards are near 0 and the first gradients tame
            nn.init.normal_(self.head.weight, std=1 / math.sqrt(lm.cfg.d_model + 1))
            nn.init.zeros_(self.head.bias)

    def param_groups(self, weight_decay: float) -> list[dict]:
        groups = self.lm.param_groups(weight_decay)
        return groups + [{"name": "reward_head", "params": list(self.head.parameters()), "lr_mult": 1.0,
                          "weight_decay": 0.0}]

    def forward(self, sides: "Sides") -> torch.Tensor:
        """One reward per sequence of `sides`, in their order."""
        last = side_hidden_states(self.lm, sides)[sides.last_row, sides.last_col]
        return self.head(last.float() if self.head.weight.dtype == torch.float32 else last).squeeze(-1)


@dataclass
class Pair:
    chosen: list[int]
    rejected: list[int]
    source: str
    reply_start: int = 0  # index of the first reply token in both sides (the prompt and the assistant's opening)


def tokenize_pairs(tokenizer, records: list[dict], max_len: int) -> tuple[list[Pair], int]:
    from foresight.align.tokens import reply_sequence

    pairs, too_long = [], 0
    for r in records:
        chosen, start = reply_sequence(tokenizer, r["messages"], r["chosen"])
        rejected, _ = reply_sequence(tokenizer, r["messages"], r["rejected"])  # the same prompt: the same start
        if max(len(chosen), len(rejected)) > max_len:
            too_long += 1
        else:
            pairs.append(Pair(chosen, rejected, r.get("source", "unknown"), start))
    return pairs, too_long


def pair_batch(pairs: list[Pair], row_len: int = 0) -> Sides:
    """Chosen sides first, then rejected: packed into rows of row_len tokens, or one padded row each if 0."""
    seqs = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    return pack_rows(seqs, row_len) if row_len else pad_rows(seqs)


def bradley_terry(rewards: torch.Tensor, margin: float, reduction: str = "mean") -> torch.Tensor:
    chosen, rejected = rewards.float().chunk(2)
    loss = -F.logsigmoid(chosen - rejected - margin)
    return loss.mean() if reduction == "mean" else loss.sum()


@torch.no_grad()
def pair_rewards(model: RewardModel, pairs: list[Pair], micro: int, device, autocast) -> np.ndarray:
    """[n, 2] rewards (chosen, rejected) for pairs, in order; pairs of similar length are batched together."""
    was_training = model.training
    model.eval()
    out = np.zeros((len(pairs), 2))
    order = sorted(range(len(pairs)), key=lambda i: max(len(pairs[i].chosen), len(pairs[i].rejected)))
    for b in range(0, len(order), micro):
        idx = order[b:b + micro]
        with autocast:
            r = model(pair_batch([pairs[i] for i in idx]).to(device)).float().cpu().numpy()
        out[idx, 0], out[idx, 1] = r[:len(idx)], r[len(idx):]
    model.train(was_training)
    return out


def accuracy_by_source(pairs: list[Pair], rewards: np.ndarray) -> dict:
    """{"acc": overall, "acc/<source>": per source, "margin": mean r_chosen - r_rejected}."""
    right = rewards[:, 0] > rewards[:, 1]
    metrics = {"acc": float(right.mean()), "margin": float((rewards[:, 0] - rewards[:, 1]).mean())}
    for source in sorted({p.source for p in pairs}):
        mask = np.array([p.source == source for p in pairs])
        metrics[f"acc/{source}"] = float(right[mask].mean())
    return metrics


@dataclass
class PairData:
    """A pair trainer's data (the reward model's and DPO's): the training pairs a config selects, tokenized, those
    left out for not fitting in train.seq_len, and the held-out pairs."""
    pairs: list[Pair]
    heldout: list[Pair]
    too_long: int
    max_len: int
    files: dict

    @staticmethod
    def load(cfg, loaded) -> "PairData":
        from foresight.align.data import read_pairs

        t = cfg.train
        train_path, heldout_path = align_run.data_files(cfg.data, "pairs")
        max_len = min(t.seq_len, loaded.model.cfg.max_seq_len)
        records = align_run.select(read_pairs(train_path), cfg.data, t.seed)
        pairs, too_long = tokenize_pairs(loaded.tokenizer, records, max_len)
        if not pairs:
            raise ForesightError(f"{train_path}: no pair fits in train.seq_len = {t.seq_len} tokens")
        heldout: list[Pair] = []
        if heldout_path is not None:
            held = align_run.sample(read_pairs(heldout_path), cfg.data.max_heldout, t.seed)
            heldout, _ = tokenize_pairs(loaded.tokenizer, held, max_len)
        return PairData(pairs, heldout, too_long, max_len,
                        {"train": str(train_path), "heldout": str(heldout_path) if heldout_path else None})


def train_rm(cfg: RMConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    return align_run.run_with_processes(cfg, _train_rm, out, resume, progress)


def _train_rm(cfg: RMConfig, out: Path, resume: bool, progress: bool, info: DistInfo) -> dict:
    t = cfg.train
    device, autocast = align_run.start(cfg, RMConfig, out, resume, info)
    t0 = time.time()

    loaded = align_run.load_base(cfg.base, device)
    data = PairData.load(cfg, loaded)
    pairs, heldout, too_long, max_len = data.pairs, data.heldout, data.too_long, data.max_len

    per_process, micro = micro_batches(t, info)
    steps = cfg.rm.steps if cfg.rm.steps > 0 else max(1, math.ceil(cfg.rm.epochs * len(pairs) / t.batch_size))
    if info.is_main:
        print(f"rm: {len(pairs)} pairs ({too_long} longer than {max_len} tokens left out), {len(heldout)} held out; "
              f"{steps} steps of {t.batch_size} pairs")

    torch.manual_seed(t.seed)
    model = RewardModel(loaded.model).to(device)
    mean_len = float(np.mean([len(p.chosen) + len(p.rejected) for p in pairs]))

    def batch(step: int, m: int):
        order = align_run.step_order(len(pairs), t.seed, step, t.batch_size, info.rank * per_process + m * micro,
                                     micro)
        return pair_batch([pairs[i] for i in order], t.seq_len if cfg.rm.pack else 0).to(device)

    def loss(forward, sides: Sides) -> torch.Tensor:
        return bradley_terry(forward(sides), cfg.rm.margin)

    def evaluate() -> dict:
        # Every process scores every held-out pair (a few hundred forwards): the same figures everywhere.
        if not heldout:
            return {}
        rewards = pair_rewards(model, heldout, micro, device, autocast)
        metrics = accuracy_by_source(heldout, rewards)
        metrics["val_loss"] = float(np.logaddexp(0, -(rewards[:, 0] - rewards[:, 1] - cfg.rm.margin)).mean())
        return metrics

    result = train_loop(model, lambda m: build_optimizer(m, t), cfg=t, out=out, steps=steps, accum=per_process // micro,
                        tokens_per_step=round(t.batch_size * mean_len), batch=batch, loss=loss, evaluate=evaluate,
                        info=info, device=device, autocast=autocast, resume=resume, progress=progress)
    summary = {
        "base": cfg.base,
        "heldout": result.metrics,
        "final_train_loss": result.train_loss,
        "steps": steps,
        "pairs": len(pairs),
        "left_out_too_long": too_long,
        "heldout_pairs": len(heldout),
        "tokens_per_second": result.tokens_per_second,
        "train_seconds": result.train_seconds,
        "wall_seconds": result.wall_seconds,
        "data": data.files,
        "model": str(out / align_run.MODEL_DIR),
    }
    if info.is_main:
        align_run.export_model(loaded, out)
        head = {"base": cfg.base, "d_model": model.lm.cfg.d_model,
                "weight": model.head.weight.detach().float().cpu().flatten().tolist(),
                "bias": float(model.head.bias.detach().float().cpu())}
        atomic_write_text(out / HEAD_FILE, json.dumps(head) + "\n")
        align_run.write_summary(out, summary)
        accs = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items() if k.startswith("acc"))
        print(f"rm: {time.time() - t0:.0f} s; held-out {accs or '(no held-out pairs)'}; wrote {out}")
    return summary


def load_reward_model(run: str | Path, device="cpu") -> tuple[RewardModel, object]:
    """(reward model in eval mode, tokenizer) from a run directory written by train_rm."""
    from foresight.weights.load import load_model

    run = Path(run)
    head_path = run / HEAD_FILE
    if not head_path.is_file():
        raise ForesightError(f"{run} is not a reward-model run: it has no {HEAD_FILE} (train one with "
                             f"`foresight align rm CONFIG --out RUN`)")
    try:
        head_data = json.loads(head_path.read_text())
        weight = torch.tensor(head_data["weight"], dtype=torch.float32)
        bias = float(head_data["bias"])
    except (ValueError, KeyError, TypeError) as e:
        raise ForesightError(f"{head_path}: not a reward head file ({e})") from None
    loaded = load_model(str(run), device=device)
    if weight.numel() != loaded.model.cfg.d_model:
        raise ForesightError(f"{head_path}: the head has {weight.numel()} weights but the model's width is "
                             f"{loaded.model.cfg.d_model}")
    head = nn.Linear(loaded.model.cfg.d_model, 1)
    with torch.no_grad():
        head.weight.copy_(weight[None])
        head.bias.fill_(bias)
    return RewardModel(loaded.model, head).to(device).eval(), loaded.tokenizer


def score(model: RewardModel, tokenizer, prompt: list[dict], responses: list[str], device="cpu") -> list[float]:
    """The rewards of several replies to one prompt."""
    return score_conversations(model, tokenizer, [prompt] * len(responses), responses, device)


@torch.no_grad()
def score_conversations(model: RewardModel, tokenizer, prompts: list[list[dict]], responses: list[str],
                        device="cpu", batch: int = 16) -> list[float]:
    """The reward of each reply to its own prompt (the messages before it), `batch` right-padded rows at a time."""
    from foresight.align.tokens import reply_tokens

    seqs = [reply_tokens(tokenizer, m, r) for m, r in zip(prompts, responses)]
    out: list[float] = []
    for b in range(0, len(seqs), batch):
        out += model(pad_rows(seqs[b:b + batch]).to(device)).float().tolist()
    return out


class RewardModelReward:
    """A reward model as a reward callable (`foresight.align.rewards`): fn(prompts, responses, messages=[...]),
    where messages[i] is rollout i's conversation before the reply (system and user turns)."""

    def __init__(self, run: str | Path, device="cpu"):
        self.model, self.tokenizer = load_reward_model(run, device)
        self.device = device

    def __call__(self, prompts: list[str], responses: list[str], messages: list[list[dict]] | None = None,
                 **meta) -> list[float]:
        if messages is None:
            messages = [[{"role": "user", "content": p}] for p in prompts]
        return score_conversations(self.model, self.tokenizer, messages, responses, self.device)
