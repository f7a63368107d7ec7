"""Checkpoints that survive a kill at any moment.

Layout: RUN_DIR/checkpoints/step_00001200/{model.safetensors, optimizer.pt, state.json} and RUN_DIR/checkpoints/latest
(a text file naming the newest complete checkpoint directory). A run with train.parallel = "fsdp" writes
step_N/{sharded/, state.json} instead: the model and optimizer through torch.distributed.checkpoint, each process
its own shards, loadable by any number of processes (DCP reshards on load); its final checkpoint also holds the
whole model.safetensors, for everything that reads a run's weights. A checkpoint is written into a temporary directory,
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
SHARDED_DIR = "sharded"  # torch.distributed.checkpoint's directory: .metadata and one file per process


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(ckpt_root: Path, step: int, model_state: dict, optimizer_state: dict | None, state: dict,
                    keep: int = 2) -> Path:
    """Write one checkpoint atomically and drop all but the newest `keep` ones. Returns its directory."""
    final = ckpt_root / checkpoint_name(step)
    tmp = ckpt_root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    _begin(ckpt_root, tmp)
    # safetensors refuses tensors that share memory (tied embeddings): store each storage once.
    save_file(_dedupe_shared(model_state), tmp / MODEL_FILE)
    if optimizer_state is not None:
        torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))  # written last: its presence marks completeness
    _publish(tmp, final, ckpt_root, keep)
    return final


def save_sharded_checkpoint(ckpt_root: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                            state: dict, keep: int = 2, full_model: bool = False) -> Path:
    """Collective (every process calls it): the model and optimizer through torch.distributed.checkpoint, each
    process writing its own shards; with `full_model`, the whole model gathered into model.safetensors too. The
    first process publishes the checkpoint atomically, as `save_checkpoint` does."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

    group = dist.is_available() and dist.is_initialized()
    main = not group or dist.get_rank() == 0
    final = ckpt_root / checkpoint_name(step)
    tmp = ckpt_root / f".tmp-{checkpoint_name(step)}"  # one name every process knows

    def on_main(work) -> None:
        """Run `work` on the first process and share its failure with all (so none waits at a barrier for it)."""
        error = None
        if main:
            try:
                work()
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
        if group:
            box = [error]
            dist.broadcast_object_list(box, src=0)
            error = box[0]
        if error:
            raise ForesightError(f"saving checkpoint {final} failed on the first process: {error}")

    on_main(lambda: _begin(ckpt_root, tmp))
    if not tmp.is_dir():  # DCP would create it here, and these shards would never be published
        raise ForesightError(f"{tmp} (made by the first process) is not visible to process {dist.get_rank()}: "
                             f"sharded checkpoints need a file system every machine shares")
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=tmp / SHARDED_DIR)
    whole = (get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
             if full_model else None)

    def finish() -> None:
        if whole is not None:
            save_file(_dedupe_shared(whole), tmp / MODEL_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
        _publish(tmp, final, ckpt_root, keep)

    on_main(finish)
    return final


def load_sharded(ckpt_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a sharded checkpoint into `model` and `optimizer`, however many processes wrote it and however many
    read it now (each reads the pieces of its own shards)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    try:
        dcp.load({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=ckpt_dir / SHARDED_DIR)
    except Exception as e:  # a missing or truncated shard; DCP names the file
        raise ForesightError(f"cannot read sharded checkpoint {ckpt_dir / SHARDED_DIR}: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from None
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)


def check_shards(sharded: Path) -> None:
    """A sharded checkpoint's index is readable and every shard file it names holds the bytes it points to: a
    missing or truncated shard is named here, so that `load_latest` falls back to the checkpoint before."""
    from torch.distributed.checkpoint import FileSystemReader

    if not (sharded / ".metadata").is_file():
        raise ForesightError(f"sharded checkpoint {sharded} has no .metadata (an interrupted save)")
    try:
        metadata = FileSystemReader(str(sharded)).read_metadata()
    except Exception as e:
        raise ForesightError(f"cannot read {sharded / '.metadata'}: {type(e).__name__}: {e}") from None
    needed: dict[str, int] = {}
    for info in (metadata.storage_data or {}).values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    for name, size in sorted(needed.items()):
        path = sharded / name
        have = path.stat().st_size if path.is_file() else -1
        if have < size:
            raise ForesightError(f"shard {path} is {'missing' if have < 0 else f'truncated ({have} of {size} bytes)'}")


def _begin(ckpt_root: Path, tmp: Path) -> None:
    """Make the temporary directory a checkpoint is written into, after removing those left by a process killed
    mid-save."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    for stray in ckpt_root.glob(".tmp-*"):
        shutil.rmtree(stray, ignore_errors=True)
    tmp.mkdir()


def _publish(tmp: Path, final: Path, ckpt_root: Path, keep: int) -> None:
    """Flush a finished temporary checkpoint, rename it into place, point `latest` at it, drop old ones."""
    for f in tmp.rglob("*"):
        if f.is_file():
            fsync_path(f)
    if final.exists():  # a re-save of the same step (e.g. the final step) replaces the old one
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_path(ckpt_root)
    atomic_write_text(ckpt_root / "latest", final.name + "\n")
    complete = sorted(p for p in ckpt_root.glob("step_*") if (p / STATE_FILE).exists())
    for old in complete[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


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
    model_state: dict | None  # None for a sharded checkpoint: `load_sharded` reads it into the wrapped model
    optimizer_state: dict | None
    state: dict  # the trainer's: step, RNG state, timers, recent losses

    @property
    def sharded(self) -> bool:
        return self.model_state is None


def load_checkpoint(ckpt_dir: Path) -> Checkpoint:
    """Everything in one checkpoint directory, each file checked; a file that cannot be read is named. A sharded
    checkpoint's model and optimizer are only checked for their index here (`load_sharded` reads them)."""
    sharded = ckpt_dir / SHARDED_DIR
    model_state = optimizer_state = None
    if sharded.is_dir():
        check_shards(sharded)
    else:
        model_state = load_model_state(ckpt_dir)
        opt_path = ckpt_dir / OPTIMIZER_FILE
        try:
            optimizer_state = (torch.load(opt_path, map_location="cpu", weights_only=False) if opt_path.exists()
                               else None)
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
