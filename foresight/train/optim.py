"""AdamW over the model's parameter groups, and the learning-rate schedules."""

from __future__ import annotations

import math

import torch

from foresight.config import TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with one group per entry of `model.param_groups`; each group's lr is base lr x its `lr_mult`
    (muP's per-group rates), re-applied every step by `set_lr`."""
    groups = model.param_groups(cfg.weight_decay)
    for g in groups:
        g["lr"] = cfg.lr * g["lr_mult"]
    fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused or None)


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    steps = cfg.warmup_steps if cfg.warmup_steps > 0 else round(cfg.warmup_fraction * total_steps)
    return min(steps, total_steps)


def lr_factor(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Multiplier on the peak learning rate for optimizer step `step` (0-based)."""
    warm = warmup_steps(cfg, total_steps)
    if step < warm:
        return (step + 1) / warm
    floor = cfg.min_lr_ratio
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        progress = (step - warm) / max(1, total_steps - warm - 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    # warmup-stable-decay: flat, then a linear decay over the last decay_fraction of steps
    decay = max(1, round(cfg.decay_fraction * total_steps))
    decay_start = total_steps - decay
    if step < decay_start:
        return 1.0
    progress = (step - decay_start + 1) / decay
    return 1.0 - (1.0 - floor) * min(1.0, progress)


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    for g in optimizer.param_groups:
        g["lr"] = base_lr * factor * g["lr_mult"]
    return base_lr * factor
