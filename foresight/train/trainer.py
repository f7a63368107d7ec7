"""The training loop: one function, `train`, used for a 50K-parameter ladder model on a laptop and a 1B model under
torchrun alike. It writes RUN_DIR/config.toml, metrics.jsonl, TensorBoard events, checkpoints and summary.json."""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from foresight.config import RunConfig, config_to_dict, dump_config, load_config
from foresight.data.prepare import resolve_data_dir
from foresight.errors import ForesightError
from foresight.files import atomic_write_text
from foresight.model import Transformer
from foresight.train import checkpoint as ckpt
from foresight.train.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, shutdown
from foresight.train.flops import device_peak_flops, flops_per_token, plan_length
from foresight.train.loader import StepBatches, validation_windows
from foresight.train.optim import build_optimizer, lr_factor, set_lr

RUN_MARKERS = ("config.toml", "metrics.jsonl", "summary.json", "checkpoints")
SMOOTHING = 10  # final_train_loss is the mean of the last this-many steps' training losses


# ----- set-up helpers ------------------------------------------------------------------------------------------------


def pick_device(cfg: RunConfig, info: DistInfo) -> torch.device:
    want = cfg.train.device
    if want == "cuda" and not torch.cuda.is_available():
        raise ForesightError("train.device = 'cuda' but no CUDA device is available")
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def autocast_context(cfg: RunConfig, device: torch.device):
    dtype = cfg.train.dtype
    if dtype == "bfloat16" or (dtype == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _check_out_dir(out: Path, resume: bool) -> None:
    holds_run = out.is_dir() and any((out / m).exists() for m in RUN_MARKERS)
    if holds_run and not resume:
        raise ForesightError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")


def _check_resume_config(out: Path, cfg: RunConfig) -> None:
    saved_path = out / "config.toml"
    if not saved_path.is_file():
        return
    saved = config_to_dict(load_config(saved_path))
    now = config_to_dict(cfg)
    diffs = [f"{sec}.{k}: {saved[sec].get(k)!r} -> {v!r}" for sec in now for k, v in now[sec].items()
             if saved.get(sec, {}).get(k) != v and not (sec, k) in {("train", "threads"), ("train", "device")}]
    if diffs:
        raise ForesightError(f"--resume with a config that differs from {saved_path}: " + "; ".join(diffs))


def _trim_metrics(path: Path, last_step: int) -> None:
    """On resume, drop metric rows written after the checkpoint we resume from (they will be recomputed)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


# ----- evaluation ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
             info: DistInfo, autocast) -> float:
    """Mean next-token cross-entropy (nats) over all validation tokens; sequences are sharded across processes."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses, token count)
    for i in range(info.rank * batch_size, len(x), batch_size * info.world_size):
        xb, yb = x[i: i + batch_size].to(device), y[i: i + batch_size].to(device)
        with autocast:
            logits = model(xb)
        loss = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="sum")
        total += torch.stack([loss.double(), torch.tensor(yb.numel(), dtype=torch.float64, device=device)])
    all_reduce_sum(total, info)
    model.train(was_training)
    return (total[0] / total[1]).item()


# ----- the loop ------------------------------------------------------------------------------------------------------


def train(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    """Train per `cfg` into `out`; returns the summary dict (also written to out/summary.json)."""
    out = Path(out)
    _check_out_dir(out, resume)
    info = init_distributed("cuda" if cfg.train.device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        return _train(cfg, out, resume, progress, info)
    finally:
        shutdown(info)


def _train(cfg: RunConfig, out: Path, resume: bool, progress: bool, info: DistInfo) -> dict:
    from foresight.data.shards import open_split, read_manifest
    from foresight.data.tokenizer import Tokenizer

    t = cfg.train
    device = pick_device(cfg, info)
    if device.type == "cpu":
        torch.set_num_threads(t.threads or max(1, (os.cpu_count() or 1) // info.local_world_size))
    autocast = autocast_context(cfg, device)

    # Data: the prepared corpus, its tokenizer, and the model's vocabulary sized to it.
    data_dir = resolve_data_dir(cfg.data)
    train_tokens = open_split(data_dir, "train", verify=info.is_main)
    val_tokens = open_split(data_dir, "val", verify=info.is_main)
    manifest = read_manifest(data_dir)
    tokenizer = Tokenizer.load(data_dir)
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = tokenizer.vocab_size
    elif cfg.model.vocab_size < tokenizer.vocab_size:
        raise ForesightError(f"model.vocab_size ({cfg.model.vocab_size}) is smaller than the tokenizer's "
                             f"vocabulary ({tokenizer.vocab_size}) in {data_dir}; set it to 0 to size it automatically")

    # Global batch -> per-process micro-batches.
    if t.batch_size % info.world_size:
        raise ForesightError(f"train.batch_size ({t.batch_size}) must be divisible by the {info.world_size} processes")
    per_process = t.batch_size // info.world_size
    micro = t.micro_batch_size or per_process
    if per_process % micro:
        raise ForesightError(f"train.micro_batch_size ({micro}) must divide the per-process batch ({per_process})")
    accum = per_process // micro
    steps, tokens = plan_length(cfg)

    if resume:
        _check_resume_config(out, cfg)
    ckpt_root = out / "checkpoints"
    last = ckpt.latest_checkpoint(ckpt_root) if resume else None
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.toml", dump_config(cfg))
        if not (out / "tokenizer").exists():
            tmp = out / f".tokenizer-tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tokenizer.save(tmp)
            os.rename(tmp, out / "tokenizer")
    barrier(info)

    torch.manual_seed(t.seed)  # identical initial weights on every process
    model = Transformer(cfg.model).to(device)
    optimizer = build_optimizer(model, t)
    start_step, wall_before, train_seconds_before = 0, 0.0, 0.0
    recent = collections.deque(maxlen=SMOOTHING)
    if last is not None:
        model_state, optimizer_state, state = ckpt.load_checkpoint(last)
        model.load_state_dict(model_state, strict=False)  # strict=False: tied weights are stored once
        optimizer.load_state_dict(optimizer_state)
        torch.set_rng_state(torch.tensor(state["rng_torch"], dtype=torch.uint8))
        start_step, wall_before = state["step"], state["wall_seconds"]
        train_seconds_before = state["train_seconds"]
        recent.extend(state["recent_train_losses"])
        if info.is_main:
            _trim_metrics(out / "metrics.jsonl", start_step)
            print(f"resuming {out} from {last.name} (step {start_step} of {steps})")
    elif resume and info.is_main:
        print(f"no checkpoint in {ckpt_root}; starting from step 0")

    train_model = DistributedDataParallel(model) if info.enabled else model
    forward = torch.compile(train_model) if t.compile else train_model
    batches = StepBatches(train_tokens, t.seq_len, t.seed)
    val_x, val_y = validation_windows(val_tokens, t.seq_len, cfg.data.val_tokens)
    fpt = flops_per_token(cfg.model, t.seq_len)
    peak, peak_note = device_peak_flops(device)

    writer = None
    metrics_file = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step if start_step else None)
        metrics_file = open(out / "metrics.jsonl", "a")
    bar = None
    if info.is_main and progress:
        from tqdm import tqdm

        import sys

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

    def save(step_done: int, train_seconds: float) -> None:
        if info.is_main:
            state = {"step": step_done, "wall_seconds": wall_before + time.time() - t_start,
                     "train_seconds": train_seconds, "recent_train_losses": list(recent),
                     "rng_torch": torch.get_rng_state().tolist(), "rng_numpy_seed": [t.seed, step_done]}
            ckpt.save_checkpoint(ckpt_root, step_done, model.state_dict(), optimizer.state_dict(), state,
                                 keep=t.keep_checkpoints)
        barrier(info)

    t_start = time.time()
    train_seconds = train_seconds_before
    val_loss = float("nan")
    model.train()
    for step in range(start_step, steps):
        t0 = time.perf_counter()
        lr = set_lr(optimizer, t.lr, lr_factor(step, steps, t))
        loss_sum = torch.zeros((), device=device)
        for m in range(accum):
            x, y = batches.rows(step, t.batch_size, first=info.rank * per_process + m * micro, count=micro)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sync = m == accum - 1 or not info.enabled
            with (contextlib.nullcontext() if sync else train_model.no_sync()), autocast:
                logits = forward(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten()) / accum
            loss.backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip if t.grad_clip > 0 else math.inf)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = all_reduce_sum(loss_sum, info).item() / info.world_size
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise ForesightError(f"training diverged at step {step + 1}: loss is {train_loss} "
                                 f"(lower train.lr, currently {t.lr}, or raise train.warmup_fraction)")
        recent.append(train_loss)
        done = step + 1
        tokens_seen = done * t.batch_size * t.seq_len
        tps = (done - start_step) * t.batch_size * t.seq_len / max(1e-9, train_seconds - train_seconds_before)
        if bar is not None:
            # postfix first and without its own redraw: update() then redraws at most every mininterval, so a log
            # file gets a line every 30 s rather than one per step
            shown = {"loss": f"{train_loss:.3f}", "tok_s": f"{tps:,.0f}"}
            if math.isfinite(val_loss):  # nothing to show before the first evaluation (eval_every = 0: the end)
                shown["val"] = f"{val_loss:.3f}"
            bar.set_postfix(shown, refresh=False)
            bar.update(1)
        row = None
        if done % t.log_every == 0 or done == steps:
            row = {"step": done, "tokens": tokens_seen, "train_loss": train_loss, "lr": lr,
                   "grad_norm": float(grad_norm), "tokens_per_second": tps}
        if (t.eval_every and done % t.eval_every == 0) or done == steps:
            val_loss = evaluate(model, val_x, val_y, micro, device, info, autocast)
            row = (row or {"step": done, "tokens": tokens_seen}) | {"val_loss": val_loss}
        if row:
            log(row)
        if done == steps or (t.checkpoint_every and done % t.checkpoint_every == 0):
            save(done, train_seconds)

    if start_step >= steps:  # resumed a finished run: just re-measure
        val_loss = evaluate(model, val_x, val_y, micro, device, info, autocast)
    if bar is not None:
        bar.close()
    run_seconds = train_seconds - train_seconds_before
    tps = (steps - start_step) * t.batch_size * t.seq_len / run_seconds if run_seconds > 0 else 0.0
    summary = {
        "final_val_loss": val_loss,
        "final_train_loss": float(np.mean(recent)) if recent else float("nan"),
        "flops": fpt * tokens,
        "flops_per_token": fpt,
        "flops_formula": "6*(non_embedding_params + vocab_size*d_model)*tokens + 12*n_layers*d_model*seq_len*tokens",
        "params": model.num_params(),
        "non_embedding_params": model.num_non_embedding_params(),
        "tokens": tokens,
        "steps": steps,
        "batch_size": t.batch_size,
        "seq_len": t.seq_len,
        "val_tokens": int(val_y.numel()),
        "wall_seconds": wall_before + time.time() - t_start,
        "train_seconds": train_seconds,
        "tokens_per_second": tps,
        "mfu": (fpt * tps / (peak * info.world_size)) if peak else None,
        "peak_flops": peak,
        "mfu_note": peak_note,
        "device": str(device),
        "world_size": info.world_size,
        "unigram_entropy_nats": manifest.get("unigram_entropy_nats"),
        "data": str(data_dir),
    }
    if info.is_main:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
        metrics_file.close()
        writer.close()
    return summary
