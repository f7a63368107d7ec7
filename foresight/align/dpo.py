"""Direct Preference Optimization (Rafailov et al., 2023): preference pairs trained against a frozen reference,
without a reward model or sampling (issue 21): the loss, and the trainer on the shared loop
(`foresight align dpo CONFIG --out RUN`), on the same pairs and data pipeline as the reward model (`rm.py`).

For a pair (chosen y_w, rejected y_l) of replies to one prompt, with log pi(y|x) summed over the reply's tokens
under the policy and the reference:

    implicit reward   r(y) = beta * (log pi(y|x) - log pi_ref(y|x))
    loss              -log sigmoid(r(y_w) - r(y_l))                       ("sigmoid", the paper's)
                      (1 - eps) * that + eps * -log sigmoid(-(...))       (label smoothing eps: conservative DPO)
                      ((r(y_w) - r(y_l)) / beta - 1 / (2 beta))^2          ("ipo", Azar et al. 2023)

the same three TRL's DPOTrainer offers under those names, so its losses can be compared step for step.

Each step runs the policy and the frozen reference (a second copy of the base, or `dpo.reference`) over the same
rows: the chosen and rejected sides of a micro-batch packed into rows of train.seq_len tokens as the reward model
packs them, and log pi(reply) summed over the reply's tokens only (its end-of-turn token included). Held-out
figures: the loss, the implicit-reward accuracy per source and the mean margin, as the reward model reports.
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
from foresight.align.config import DPOConfig, DPOOptions
from foresight.align.replies import ReplyBatch, reply_batch, reply_logprobs
from foresight.align.rm import PairData, accuracy_by_source
from foresight.errors import ForesightError
from foresight.train.distributed import DistInfo, micro_batches
from foresight.train.loop import train_loop
from foresight.train.optim import build_optimizer

DPO_LOSSES = ("sigmoid", "ipo")


@dataclass
class DPOLoss:
    loss: torch.Tensor  # mean over pairs
    chosen_rewards: torch.Tensor  # [pairs], detached
    rejected_rewards: torch.Tensor  # [pairs], detached

    @property
    def accuracy(self) -> float:
        """Share of pairs whose chosen reply has the larger implicit reward."""
        return (self.chosen_rewards > self.rejected_rewards).float().mean().item()

    @property
    def margin(self) -> float:
        return (self.chosen_rewards - self.rejected_rewards).mean().item()


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1, kind: str = "sigmoid", label_smoothing: float = 0.0
             ) -> DPOLoss:
    """The loss from summed reply log-probabilities, each [pairs]."""
    if kind not in DPO_LOSSES:
        raise ValueError(f"DPO loss must be one of {', '.join(DPO_LOSSES)}, not {kind!r}")
    if beta <= 0 or not 0.0 <= label_smoothing < 0.5:
        raise ValueError("DPO needs beta > 0 and 0 <= label_smoothing < 0.5")
    chosen = policy_chosen - ref_chosen
    rejected = policy_rejected - ref_rejected
    logits = chosen - rejected
    if kind == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * logits) - label_smoothing * F.logsigmoid(-beta * logits)
    else:
        losses = (logits - 1 / (2 * beta)) ** 2
    return DPOLoss(losses.mean(), (beta * chosen).detach(), (beta * rejected).detach())


# ----- the trainer: `foresight align dpo CONFIG --out RUN` ---------------------------------------------------------

class PolicyAndReference(nn.Module):
    """The policy (trained, checkpointed) and the frozen reference (neither: kept out of the module tree)."""

    def __init__(self, policy: nn.Module, reference: nn.Module):
        super().__init__()
        self.policy = policy
        self._reference = [reference.eval().requires_grad_(False)]

    def param_groups(self, weight_decay: float) -> list[dict]:
        return self.policy.param_groups(weight_decay)

    def forward(self, batch: ReplyBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy, reference) reply log-probabilities, each [2 * pairs]: chosen sides, then rejected."""
        with torch.no_grad():
            ref = reply_logprobs(self._reference[0], batch)
        return reply_logprobs(self.policy, batch), ref


def pair_loss(logps: tuple[torch.Tensor, torch.Tensor], opts: DPOOptions) -> DPOLoss:
    policy, ref = logps
    (pc, pr), (rc, rr) = policy.chunk(2), ref.chunk(2)
    return dpo_loss(pc, pr, rc, rr, beta=opts.beta, kind=opts.loss, label_smoothing=opts.label_smoothing)


def train_dpo(cfg: DPOConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    return align_run.run_with_processes(cfg, _train_dpo, out, resume, progress)


def _train_dpo(cfg: DPOConfig, out: Path, resume: bool, progress: bool, info: DistInfo) -> dict:
    t = cfg.train
    device, autocast = align_run.start(cfg, DPOConfig, out, resume, info)
    t0 = time.time()
    loaded = align_run.load_base(cfg.base, device)
    reference = align_run.load_base(cfg.dpo.reference or cfg.base, device).model
    if reference.cfg != loaded.model.cfg:
        raise ForesightError(f"dpo.reference ({cfg.dpo.reference}) has a different shape from base ({cfg.base})")
    data = PairData.load(cfg, loaded)
    pairs, heldout, too_long, max_len = data.pairs, data.heldout, data.too_long, data.max_len

    per_process, micro = micro_batches(t, info)
    steps = cfg.dpo.steps if cfg.dpo.steps > 0 else max(1, math.ceil(cfg.dpo.epochs * len(pairs) / t.batch_size))
    if info.is_main:
        print(f"dpo: {len(pairs)} pairs ({too_long} longer than {max_len} tokens left out), {len(heldout)} held "
              f"out; {steps} steps of {t.batch_size} pairs; beta {cfg.dpo.beta}, {cfg.dpo.loss} loss")

    torch.manual_seed(t.seed)
    model = PolicyAndReference(loaded.model, reference).to(device)
    mean_len = float(np.mean([len(p.chosen) + len(p.rejected) for p in pairs]))

    def batch(step: int, m: int) -> ReplyBatch:
        order = align_run.step_order(len(pairs), t.seed, step, t.batch_size, info.rank * per_process + m * micro,
                                     micro)
        return reply_batch([pairs[i] for i in order], t.seq_len if cfg.dpo.pack else 0).to(device)

    @torch.no_grad()
    def evaluate() -> dict:
        if not heldout:
            return {}
        was = model.training
        model.eval()
        rewards = np.zeros((len(heldout), 2))
        losses = np.zeros(len(heldout))
        order = sorted(range(len(heldout)), key=lambda i: max(len(heldout[i].chosen), len(heldout[i].rejected)))
        for b in range(0, len(order), micro):
            idx = order[b:b + micro]
            with autocast:
                result = pair_loss(model(reply_batch([heldout[i] for i in idx]).to(device)), cfg.dpo)
            rewards[idx, 0] = result.chosen_rewards.float().cpu().numpy()
            rewards[idx, 1] = result.rejected_rewards.float().cpu().numpy()
            losses[idx] = result.loss.item()  # each micro-batch's mean, weighted back by its pairs below
        model.train(was)
        metrics = accuracy_by_source(heldout, rewards)
        metrics["val_loss"] = float(losses.mean())
        metrics["chosen_reward"], metrics["rejected_reward"] = float(rewards[:, 0].mean()), float(rewards[:, 1].mean())
        return metrics

    result = train_loop(model, lambda m: build_optimizer(m, t), cfg=t, out=out, steps=steps, accum=per_process // micro,
                        tokens_per_step=round(t.batch_size * mean_len), batch=batch,
                        loss=lambda forward, b: pair_loss(forward(b), cfg.dpo).loss, evaluate=evaluate, info=info,
                        device=device, autocast=autocast, resume=resume, progress=progress)
    summary = {"base": cfg.base, "reference": cfg.dpo.reference or cfg.base, "beta": cfg.dpo.beta,
               "loss": cfg.dpo.loss, "heldout": result.metrics, "final_train_loss": result.train_loss,
               "steps": steps, "pairs": len(pairs), "left_out_too_long": too_long, "heldout_pairs": len(heldout),
               "tokens_per_second": result.tokens_per_second, "train_seconds": result.train_seconds,
               "wall_seconds": result.wall_seconds,
               "data": data.files, "model": str(out / align_run.MODEL_DIR)}
    if info.is_main:
        align_run.export_model(loaded, out)
        align_run.write_summary(out, summary)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items() if k in ("acc", "margin", "val_loss"))
        print(f"dpo: {time.time() - t0:.0f} s; held-out {shown or '(no held-out pairs)'}; wrote {out}")
    return summary
