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
    e.add_argument("--sets", default=None, help="comma-separated labelled image sets (mnist, fashion_mnist, "
                                                 "tuxpaint; default: the run's; 'none' for none)")
    e.add_argument("--set-images", type=int, default=200, help="held-out images per set (default 200)")
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
    from dataclasses import replace
    from pathlib import Path

    from foresight.config import load_config
    from foresight.errors import ForesightError
    from foresight.vlm.config import VLMConfig, VLMDataConfig
    from foresight.vlm.model_io import load_vlm
    from foresight.vlm.vqa import evaluate_vqa

    if args.scenes < 0 or args.set_images < 0:
        raise ForesightError("--scenes and --set-images must be at least 0")
    run_config = Path(args.model) / "config.toml"
    data = load_config(run_config, VLMConfig).data if run_config.is_file() else VLMDataConfig()
    changes = {"heldout_scenes": args.scenes, "set_heldout": args.set_images}
    if args.kinds is not None:
        changes["kinds"] = [k for k in args.kinds.split(",") if k and k != "none"]
    if args.sets is not None:
        changes["sets"] = [k for k in args.sets.split(",") if k and k != "none"]
    try:
        data = replace(data, **changes)  # validated again: an unknown kind or set is named
    except ValueError as e:
        raise ForesightError(f"--kinds/--sets: {e}") from None
    if not (data.heldout_scenes and data.kinds) and not (data.set_heldout and data.sets):
        raise ForesightError(f"nothing to ask: --scenes {data.heldout_scenes} of kinds {list(data.kinds)}, "
                             f"--set-images {data.set_heldout} of sets {list(data.sets)}")
    built = load_vlm(args.model)  # after the flags are checked: a bad flag is named before a slow load
    result = evaluate_vqa(built.vlm, built.tokenizer, data)
    print(json.dumps(result, indent=1))
    return 0
