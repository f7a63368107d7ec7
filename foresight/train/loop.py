"""The training loop every trainer shares: pre-training, and (next) SFT, reward models, DPO and PPO.

A caller brings a model, how to build its optimizer (after `parallelize`, which may replace the parameters), its
batches and its loss; the loop owns everything else about taking optimizer
steps well:

- gradient accumulation over micro-batches, data parallelism (through `parallelize`: DDP or FSDP2, with gradient
  sync skipped on every micro-batch but the last), mixed precision (the caller's autocast), gradient clipping, the
  learning-rate schedule;
- exact resume: an atomic checkpoint holds the model, the optimizer, the torch RNG and the step (sharded through
  torch.distributed.checkpoint under FSDP, so a run saved by K processes resumes on any number); the batches of step s
  must be a function of s alone (see train/loader.py), so nothing else about the data position needs saving;
- metrics.jsonl, TensorBoard, the progress bar, and a clear stop when the loss diverges.

The batches are a function `batch(step, micro) -> inputs` for micro-batch `micro` of optimizer step `step` on this
process, and the loss is a function `loss(forward, inputs) -> mean loss` over that micro-batch (`forward` is the
wrapped model to call). Evaluation is `evaluate() -> {name: value}`, run every `eval_every` steps and at the end.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.distributed.tensor import DTensor

from foresight.config import TrainConfig
from foresight.errors import ForesightError
from foresight.files import atomic_write_text
from foresight.train import checkpoint as ckpt
from foresight.train.distributed import DistInfo, all_reduce_sum, barrier, no_sync, parallelize
from foresight.train.optim import lr_factor, set_lr

SMOOTHING = 10  # final_train_loss is the mean of the last this-many steps' training losses

Batch = Callable[[int, int], Any]  # (step, micro-batch index) -> the inputs `loss` takes
Loss = Callable[[Callable, Any], torch.Tensor]  # (forward, inputs) -> mean loss over the micro-batch
Evaluate = Callable[[], dict]  # () -> {"val_loss": ..., ...}


@dataclass
class LoopResult:
    start_step: int  # the step the loop started (or resumed) from
    steps: int
    train_loss: float  # mean of the last SMOOTHING steps' training losses
    metrics: dict  # the last evaluation's metrics
    train_seconds: float  # time in optimizer steps, over every session of the run
    wall_seconds: float  # wall time over every session of the run
    tokens_per_second: float  # this session's training throughput


def trim_step_log(path: Path, last_step: int) -> None:
    """On resume, drop the rows of a step-keyed JSON-lines log written after the checkpoint resumed from (they will
    be written again). A last row cut short (the run was killed while appending it) is dropped with them; any
    other unreadable row is an error naming the file and line."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for n, line in enumerate(lines, 1):
        try:
            step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            if n == len(lines) and isinstance(e, json.JSONDecodeError):
                break
            raise ForesightError(f"{path}:{n}: not a step-keyed JSON row ({e}); cannot resume past it") from None
        if step <= last_step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def train_loop(model: torch.nn.Module, make_optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer], *,
               cfg: TrainConfig, out: Path, steps: int, accum: int, tokens_per_step: int, batch: Batch, loss: Loss,
               evaluate: Evaluate, info: DistInfo, device: torch.device, autocast, resume: bool,
               progress: bool = True, step_logs: tuple[str, ...] = ()) -> LoopResult:
    """Train `model` for `steps` optimizer steps of `accum` micro-batches each, checkpointing into out/checkpoints.

    With `resume`, continues from the newest checkpoint that loads (an unreadable one is reported and the one
    before it used), dropping the rows of metrics.jsonl and of the caller's other `step_logs` (files in `out` of
    JSON rows keyed by "step") written after it. `tokens_per_step` is the global number of tokens per optimizer step
    (for throughput)."""
    ckpt_root = out / "checkpoints"
    wrapped, forward = parallelize(model, info, cfg)
    optimizer = make_optimizer(model)  # on the parameters FSDP sharded, if it did
    sharded = cfg.parallel == "fsdp"
    start_step, wall_before, train_seconds_before = 0, 0.0, 0.0
    recent = collections.deque(maxlen=SMOOTHING)
    loaded = ckpt.load_latest(ckpt_root, warn=info.is_main) if resume else None
    if loaded is not None:
        if loaded.sharded:
            ckpt.load_sharded(loaded.directory, model, optimizer)
        else:
            model.load_state_dict(loaded.model_state, strict=False)  # strict=False: tied weights are stored once
            optimizer.load_state_dict(loaded.optimizer_state)
        state = loaded.state
        torch.set_rng_state(torch.tensor(state["rng_torch"], dtype=torch.uint8))
        start_step, wall_before = state["step"], state["wall_seconds"]
        train_seconds_before = state["train_seconds"]
        recent.extend(state["recent_train_losses"])
        if info.is_main:
            print(f"resuming {out} from {loaded.directory.name} (step {start_step} of {steps})")
    elif resume and info.is_main:
        print(f"no checkpoint in {ckpt_root}; starting from step 0")
    if resume and info.is_main:  # rows past the step resumed from (0 without a checkpoint) will be written again
        for log in ("metrics.jsonl", *step_logs):
            trim_step_log(out / log, start_step)

    writer = metrics_file = bar = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step if start_step else None)
        metrics_file = open(out / "metrics.jsonl", "a")
        if progress:
            from tqdm import tqdm

            # Redraw often on a terminal; in a log file, a line every 30 s is plenty.
            bar = tqdm(total=steps, initial=start_step, desc=out.name, unit="step", dynamic_ncols=True,
                       mininterval=0.2 if sys.stderr.isatty() else 30)

    def log(row: dict) -> None:
        if metrics_file is None:
            return
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
        for k, v in row.items():
            if k != "step" and isinstance(v, float):
                writer.add_scalar(k, v, row["step"])

    def save(step_done: int) -> None:
        state = {"step": step_done, "wall_seconds": wall_before + time.time() - t_start,
                 "train_seconds": train_seconds, "recent_train_losses": list(recent),
                 "rng_torch": torch.get_rng_state().tolist(), "rng_numpy_seed": [cfg.seed, step_done]}
        if sharded:  # every process writes its shards
            ckpt.save_sharded_checkpoint(ckpt_root, step_done, model, optimizer, state, keep=cfg.keep_checkpoints,
                                         full_model=step_done == steps)
        elif info.is_main:
            ckpt.save_checkpoint(ckpt_root, step_done, model.state_dict(), optimizer.state_dict(), state,
                                 keep=cfg.keep_checkpoints)
        barrier(info)

    t_start = time.time()
    train_seconds = train_seconds_before
    metrics: dict = {}
    model.train()
    for step in range(start_step, steps):
        t0 = time.perf_counter()
        lr = set_lr(optimizer, cfg.lr, lr_factor(step, steps, cfg))
        loss_sum = torch.zeros((), device=device)
        for m in range(accum):
            inputs = batch(step, m)
            last_micro = m == accum - 1
            # the backward pass inside no_sync too: FSDP decides whether to reduce-scatter when it runs
            with contextlib.nullcontext() if last_micro else no_sync(wrapped):
                with autocast:
                    micro_loss = loss(forward, inputs) / accum
                micro_loss.backward()
            loss_sum += micro_loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        if isinstance(grad_norm, DTensor):  # FSDP: the norm over every shard
            grad_norm = grad_norm.full_tensor()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = all_reduce_sum(loss_sum, info).item() / info.world_size
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise ForesightError(f"training diverged at step {step + 1}: loss is {train_loss} "
                                 f"(lower train.lr, currently {cfg.lr}, or raise train.warmup_fraction)")
        recent.append(train_loss)
        done = step + 1
        tps = (done - start_step) * tokens_per_step / max(1e-9, train_seconds - train_seconds_before)
        if bar is not None:
            # postfix first and without its own redraw: update() then redraws at most every mininterval, so a log
            # file gets a line every 30 s rather than one per step
            shown = {"loss": f"{train_loss:.3f}", "tok_s": f"{tps:,.0f}"}
            shown |= {("val" if k == "val_loss" else k): f"{v:.3f}" for k, v in metrics.items()}
            bar.set_postfix(shown, refresh=False)
            bar.update(1)
        row = None
        if done % cfg.log_every == 0 or done == steps:
            row = {"step": done, "tokens": done * tokens_per_step, "train_loss": train_loss, "lr": lr,
                   "grad_norm": float(grad_norm), "tokens_per_second": tps}
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == steps:
            metrics = evaluate()
            row = (row or {"step": done, "tokens": done * tokens_per_step}) | metrics
        if row:
            log(row)
        if done == steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            save(done)

    if start_step >= steps:  # resumed a finished run: just re-measure
        metrics = evaluate()
    if bar is not None:
        bar.close()
    if info.is_main:
        metrics_file.close()
        writer.close()
    run_seconds = train_seconds - train_seconds_before
    return LoopResult(
        start_step=start_step, steps=steps, metrics=metrics,
        train_loss=float(np.mean(recent)) if recent else float("nan"),
        train_seconds=train_seconds, wall_seconds=wall_before + time.time() - t_start,
        tokens_per_second=(steps - start_step) * tokens_per_step / run_seconds if run_seconds > 0 else 0.0,
    )
