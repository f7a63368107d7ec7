"""Checkpoints that survive a kill at any moment.

Layout: RUN_DIR/checkpoints/step_00001200/{model.safetensors, optimizer.pt, state.json} and RUN_DIR/checkpoints/latest
(a text file naming the newest complete checkpoint directory). A checkpoint is written into a temporary directory,
flushed to disk, then renamed into place; `latest` is replaced atomically afterwards. A process killed mid-write
leaves only a stray temporary directory, which the next save removes, and `latest` still names a good checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from foresight.errors import ForesightError
from foresight.files import atomic_write_text, fsync_path

MODEL_FILE, OPTIMIZER_FILE, STATE_FILE = "model.safetensors", "optimizer.pt", "state.json"


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(ckpt_root: Path, step: int, model_state: dict, optimizer_state: dict | None, state: dict,
                    keep: int = 2) -> Path:
    """Write one checkpoint atomically and drop all but the newest `keep` ones. Returns its directory."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    for stray in ckpt_root.glob(".tmp-*"):  # left by a process killed mid-save
        shutil.rmtree(stray, ignore_errors=True)
    final = ckpt_root / checkpoint_name(step)
    tmp = ckpt_root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    tmp.mkdir()
    # safetensors refuses tensors that share memory (tied embeddings): store each storage once.
    save_file(_dedupe_shared(model_state), tmp / MODEL_FILE)
    if optimizer_state is not None:
        torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))  # written last: its presence marks completeness
    for f in tmp.iterdir():
        fsync_path(f)
    if final.exists():  # a re-save of the same step (e.g. the final step) replaces the old one
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_path(ckpt_root)
    atomic_write_text(ckpt_root / "latest", final.name + "\n")
    complete = sorted(p for p in ckpt_root.glob("step_*") if (p / STATE_FILE).exists())
    for old in complete[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _dedupe_shared(state: dict) -> dict:
    seen, out = {}, {}
    for k, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue
        seen[key] = k
        out[k] = t.detach().contiguous().cpu()
    return out


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """The newest complete checkpoint: the one `latest` names, or failing that the highest complete step."""
    pointer = ckpt_root / "latest"
    if pointer.is_file():
        candidate = ckpt_root / pointer.read_text().strip()
        if (candidate / STATE_FILE).is_file() and (candidate / MODEL_FILE).is_file():
            return candidate
    complete = sorted(p for p in ckpt_root.glob("step_*") if (p / STATE_FILE).is_file() and (p / MODEL_FILE).is_file())
    return complete[-1] if complete else None


def load_model_state(ckpt_dir: Path) -> dict:
    try:
        return load_file(ckpt_dir / MODEL_FILE)
    except Exception as e:  # a truncated or foreign file
        raise ForesightError(f"cannot read checkpoint weights {ckpt_dir / MODEL_FILE}: {e}") from None


@dataclass
class Checkpoint:
    directory: Path
    model_state: dict
    optimizer_state: dict | None
    state: dict  # the trainer's: step, RNG state, timers, recent losses


def load_checkpoint(ckpt_dir: Path) -> Checkpoint:
    """Everything in one checkpoint directory, each file checked; a file that cannot be read is named."""
    model_state = load_model_state(ckpt_dir)
    opt_path = ckpt_dir / OPTIMIZER_FILE
    try:
        optimizer_state = torch.load(opt_path, map_location="cpu", weights_only=False) if opt_path.exists() else None
    except Exception as e:  # truncated: torch's message says which zip record failed
        raise ForesightError(f"cannot read optimizer state {opt_path}: {type(e).__name__}: {e}") from None
    try:
        state = json.loads((ckpt_dir / STATE_FILE).read_text())
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError("no integer 'step'")
    except (OSError, ValueError) as e:
        raise ForesightError(f"cannot read trainer state {ckpt_dir / STATE_FILE}: {e}") from None
    return Checkpoint(ckpt_dir, model_state, optimizer_state, state)


def load_latest(ckpt_root: Path, warn: bool = True) -> Checkpoint | None:
    """The newest checkpoint that loads, or None if there is none. A checkpoint that fails to load (a truncated or
    corrupted file) is reported and the one before it is used: that is what keeping two checkpoints is for."""
    candidates = sorted((p for p in ckpt_root.glob("step_*") if (p / STATE_FILE).is_file()), reverse=True)
    newest = latest_checkpoint(ckpt_root)
    if newest is not None and newest in candidates:  # the one `latest` names first
        candidates.remove(newest)
        candidates.insert(0, newest)
    failures = []
    for directory in candidates:
        try:
            loaded = load_checkpoint(directory)
        except ForesightError as e:
            failures.append(str(e))
            if warn:
                print(f"warning: skipping checkpoint {directory.name}: {e}", file=sys.stderr)
            continue
        return loaded
    if failures:
        raise ForesightError(f"no checkpoint in {ckpt_root} could be read ({len(failures)} tried); "
                             f"the newest failed with: {failures[0]}")
    return None
