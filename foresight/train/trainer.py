"""Pre-training: `train` sets up a run from a RunConfig (the prepared corpus, its tokenizer, the model, the optimizer)
and hands it to the shared training loop (train/loop.py) with next-token cross-entropy as the loss. The same function
trains a 50K-parameter ladder model on a laptop and a 1B model under torchrun. It writes RUN_DIR/config.toml,
metrics.jsonl, TensorBoard events, checkpoints and summary.json."""

from __future__ import annotations

import contextlib
import os
import shutil
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from foresight.config import RunConfig, config_to_dict, dump_config, load_config
from foresight.data.prepare import resolve_data_dir
from foresight.errors import ForesightError
from foresight.files import atomic_write_text
from foresight.model import Transformer
from foresight.train.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, micro_batches, shutdown
from foresight.train.flops import device_peak_flops, flops_per_token, plan_length
from foresight.train.loader import StepBatches, validation_windows
from foresight.train.loop import train_loop
from foresight.train.optim import build_optimizer

RUN_MARKERS = ("config.toml", "metrics.jsonl", "summary.json", "checkpoints")


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


def check_out_dir(out: Path, resume: bool, markers: tuple[str, ...] = RUN_MARKERS) -> None:
    """Refuse to start a run in a directory that holds one, unless resuming it."""
    holds_run = out.is_dir() and any((out / m).exists() for m in markers)
    if holds_run and not resume:
        raise ForesightError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")


def check_resume_config(out: Path, cfg, schema: type = RunConfig) -> None:
    """Refuse --resume with a config that differs from the run's saved one (threads, device, compile and activation
    checkpointing may change)."""
    saved_path = out / "config.toml"
    if not saved_path.is_file():
        return
    saved = config_to_dict(load_config(saved_path, schema))
    now = config_to_dict(cfg)
    # what changes neither the numbers nor the checkpoints' layout
    ignored = {("train", "threads"), ("train", "device"), ("train", "compile"), ("train", "activation_checkpointing")}
    diffs = []
    for sec, value in now.items():
        if not isinstance(value, dict):  # a top-level key (e.g. an align config's base model)
            if saved.get(sec) != value:
                diffs.append(f"{sec}: {saved.get(sec)!r} -> {value!r}")
            continue
        diffs += [f"{sec}.{k}: {saved[sec].get(k)!r} -> {v!r}" for k, v in value.items()
                  if saved.get(sec, {}).get(k) != v and (sec, k) not in ignored]
    if diffs:
        raise ForesightError(f"--resume with a config that differs from {saved_path}: " + "; ".join(diffs))


# ----- evaluation ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
             info: DistInfo, autocast) -> float:
    """Mean next-token cross-entropy (nats) over all validation tokens; sequences are sharded across processes."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses, token count)
    stride = batch_size * info.world_size
    for start in range(0, len(x), stride):  # the same number of forward passes on every process (FSDP's are collective)
        i = start + info.rank * batch_size
        xb, yb = x[i: i + batch_size].to(device), y[i: i + batch_size].to(device)
        scored = len(xb) > 0
        if not scored:  # this process's slice of the last stride is empty: a pass over one row, not counted
            xb, yb = x[:1].to(device), y[:1].to(device)
        with autocast:
            logits = model(xb)
        if scored:
            loss = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="sum")
            total += torch.stack([loss.double(), torch.tensor(yb.numel(), dtype=torch.float64, device=device)])
    all_reduce_sum(total, info)
    model.train(was_training)
    return (total[0] / total[1]).item()


# ----- the run ------------------------------------------------------------------------------------------------------


def train(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    """Train per `cfg` into `out`; returns the summary dict (also written to out/summary.json)."""
    out = Path(out)
    check_out_dir(out, resume)
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

    per_process, micro = micro_batches(t, info)  # global batch -> per-process micro-batches
    steps, tokens = plan_length(cfg)

    if resume:
        check_resume_config(out, cfg)
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
    batches = StepBatches(train_tokens, t.seq_len, t.seed)
    val_x, val_y = validation_windows(val_tokens, t.seq_len, cfg.data.val_tokens)

    def batch(step: int, m: int):
        # This process's m-th slice of step's global batch: N processes see exactly the rows one process would.
        x, y = batches.rows(step, t.batch_size, first=info.rank * per_process + m * micro, count=micro)
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def next_token_loss(forward, inputs) -> torch.Tensor:
        x, y = inputs
        return F.cross_entropy(forward(x).float().flatten(0, 1), y.flatten())

    def validation() -> dict:
        return {"val_loss": evaluate(model, val_x, val_y, micro, device, info, autocast)}

    result = train_loop(model, lambda m: build_optimizer(m, t), cfg=t, out=out, steps=steps, accum=per_process // micro,
                        tokens_per_step=t.batch_size * t.seq_len, batch=batch, loss=next_token_loss,
                        evaluate=validation, info=info, device=device, autocast=autocast, resume=resume,
                        progress=progress)

    fpt = flops_per_token(cfg.model, t.seq_len)
    peak, peak_note = device_peak_flops(device)
    tps = result.tokens_per_second
    summary = {
        "final_val_loss": result.metrics.get("val_loss", float("nan")),
        "final_train_loss": result.train_loss,
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
        "wall_seconds": result.wall_seconds,
        "train_seconds": result.train_seconds,
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
    return summary
