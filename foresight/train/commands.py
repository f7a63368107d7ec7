"""`foresight train`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from foresight.errors import ForesightError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model from a TOML config",
        description="Train a model. Writes RUN_DIR/config.toml (resolved), metrics.jsonl, tensorboard/, "
                    "checkpoints/ and summary.json. Under torchrun, trains data-parallel: "
                    "torchrun --nproc_per_node=2 -m foresight train CONFIG --out RUN_DIR",
    )
    p.add_argument("config", help="a TOML config, e.g. configs/tiny.toml")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=0.01 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def check_out_dir(out: str | Path, flag: str = "--out") -> Path:
    """The output directory, refused before any work starts where it cannot be one: empty, a path that names an
    existing file, or one that lies under a file."""
    if not str(out).strip():
        raise ForesightError(f"{flag} is empty: give a directory for the run")
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            where = "is a file" if p == out else f"is under {p}, which is a file"
            raise ForesightError(f"{flag} {out} {where}: give a directory for the run")
        if p.exists():
            break
    return out


def _train(args: argparse.Namespace) -> int:
    from foresight.config import load_config
    from foresight.train.trainer import train

    cfg = load_config(args.config, overrides=args.overrides)
    out = check_out_dir(args.out)
    summary = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    import torch.distributed as dist  # noqa: F401  (only the main process prints)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        keys = ["final_val_loss", "final_train_loss", "params", "tokens", "flops", "tokens_per_second", "mfu",
                "wall_seconds"]
        print(json.dumps({k: summary[k] for k in keys}, indent=1))
        print(f"wrote {args.out}/summary.json")
    return 0
