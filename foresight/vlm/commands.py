"""`foresight vlm`: train a vision-language model on image-text data, and score it on held-out questions."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vlm", help="images in, text out: train and score a vision-language model",
                       description="A vision-language model (an image encoder and a projector feeding a language "
                                   "model, LLaVA's shape): train it in stages on image-text data, and score it on "
                                   "held-out questions beside its image-removed and majority baselines.")
    vsub = p.add_subparsers(dest="vlm_command", metavar="STEP", required=True)
    t = vsub.add_parser("train", help="train a stage (caption, instruct, or all at once)",
                        description="Train a vision-language model. Writes RUN/config.toml (resolved), metrics.jsonl, "
                                    "tensorboard/, checkpoints/, summary.json (with held-out VQA accuracy) and "
                                    "model/ (the language model as a Hugging Face folder plus vision.json and "
                                    "vision.safetensors).")
    t.add_argument("config", help="a TOML config, e.g. configs/vlm-tiny.toml")
    t.add_argument("--out", required=True, help="run directory to write")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set vlm.steps=100 (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    e = vsub.add_parser("eval", help="held-out VQA accuracy per question type, with and without the image",
                        description="Answer the questions of held-out scenes greedily, with the image and with it "
                                    "removed, and print the accuracy per question type beside the majority answer's.")
    e.add_argument("model", metavar="RUN", help="a vlm run directory (or its model/ folder)")
    e.add_argument("--scenes", type=int, default=200, help="held-out scenes to ask about (default 200)")
    e.add_argument("--kinds", default=None, help="comma-separated scene kinds (default: the run's)")
    e.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    from foresight.config import load_config
    from foresight.train.commands import check_out_dir
    from foresight.vlm.config import VLMConfig
    from foresight.vlm.train import train_vlm

    cfg = load_config(args.config, VLMConfig, overrides=args.overrides)
    summary = train_vlm(cfg, check_out_dir(args.out), resume=args.resume, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "vqa"}, indent=1))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from foresight.config import load_config
    from foresight.data.scenes import KINDS
    from foresight.errors import ForesightError
    from foresight.vlm.config import VLMConfig
    from foresight.vlm.model_io import load_vlm
    from foresight.vlm.vqa import evaluate_vqa

    if args.scenes < 1:
        raise ForesightError(f"--scenes must be at least 1, not {args.scenes}")
    built = load_vlm(args.model)
    kinds = tuple(args.kinds.split(",")) if args.kinds else None
    run_config = Path(args.model) / "config.toml"
    if kinds is None:
        kinds = tuple(load_config(run_config, VLMConfig).data.kinds) if run_config.is_file() else KINDS
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ForesightError(f"--kinds: unknown scene kind {unknown[0]!r} (kinds: {', '.join(KINDS)})")
    result = evaluate_vqa(built.vlm, built.tokenizer, args.scenes, kinds)
    print(json.dumps(result, indent=1))
    return 0
