"""`foresight align`: post-training's data, SFT, the reward model, scoring with it, and the before/after report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from foresight.errors import ForesightError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("align", help="post-training: data, SFT, reward model, DPO, PPO, score, report",
                       description="Post-training (GPT-4 report, section 2 and Figure 8): build the demonstration "
                                   "and preference data, fine-tune on demonstrations (sft), train a reward model "
                                   "(rm), tune on preference pairs directly (dpo) or by RL (ppo), score replies "
                                   "with a reward model, and compare behaviour before and after a stage.")
    asub = p.add_subparsers(dest="align_command", metavar="STEP", required=True)

    d = asub.add_parser("data", help="build the demonstrations, preference pairs and held-out splits",
                        description="Build ROOT/align/: SFT demonstrations and preference pairs (train and held-out "
                                    "JSONL files with a manifest of counts and sha256). Cached: a second call checks "
                                    "the files and returns.")
    d.add_argument("--root", default=None, help="data root (default $FORESIGHT_DATA or ./data)")
    d.add_argument("--force", action="store_true", help="rebuild even if an intact build exists")
    d.set_defaults(func=_data)

    trainers = {"sft": _sft, "rm": _rm, "dpo": _dpo, "ppo": _ppo}
    for name, what in (("sft", "supervised fine-tuning on demonstrations (loss on the assistant's tokens)"),
                       ("rm", "a reward model on preference pairs (Bradley-Terry)"),
                       ("dpo", "direct preference optimization on preference pairs, against a frozen reference"),
                       ("ppo", "RLHF with PPO: rollouts through the serving engine, scored by a reward model, a "
                               "rubric and reward functions, with a KL penalty to the starting model")):
        t = asub.add_parser(name, help=what, description=f"{what[0].upper()}{what[1:]}. Writes RUN/config.toml "
                            "(resolved), metrics.jsonl, tensorboard/, checkpoints/, summary.json and model/ (the "
                            "trained model, which `foresight eval|chat|serve RUN` load).")
        t.add_argument("config", help=f"a TOML config, e.g. configs/align-{name}-smollm2.toml")
        t.add_argument("--out", required=True, help="run directory to write")
        t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set train.lr=1e-5 (repeatable)")
        t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
        t.add_argument("--no-progress", action="store_true", help="no progress bar")
        t.set_defaults(func=trainers[name])

    s = asub.add_parser("score", help="score replies with a reward model",
                        description="Print the reward model's score for each --response to --prompt.")
    s.add_argument("rm", metavar="RM", help="a reward-model run directory (from `foresight align rm`)")
    s.add_argument("--prompt", required=True, help="the user's message")
    s.add_argument("--system", default=None, help="a system message before it")
    s.add_argument("--response", action="append", required=True, help="a reply to score (repeatable)")
    s.set_defaults(func=_score)

    r = asub.add_parser("report", help="compare eval results of the stages of post-training",
                        description="A table and figures of every metric the `foresight eval --out` files of "
                                    "successive stages share (base -> SFT -> PPO ...), each stage against the one it "
                                    "started from, with the direction of better for each; MMLU's calibration at "
                                    "each stage (the GPT-4 report's Figure 8); training curves of --runs.")
    r.add_argument("results", type=Path, nargs="+", help="eval results files, one per stage, in order (at least 2)")
    r.add_argument("--out", type=Path, required=True, help="directory for report.md, report.json and the PNGs")
    r.add_argument("--labels", default=None, help="the stages' names, comma-separated (default: before,after)")
    r.add_argument("--started-from", default=None, metavar="LABELS",
                   help="for each stage after the first, the label of the stage it started from, comma-separated "
                        "(default: the previous one), e.g. base,SFT,SFT for --labels base,SFT,PPO,DPO")
    r.add_argument("--runs", type=Path, nargs="*", default=[],
                   help="training run directories whose curves to draw (PPO: reward, KL, probe refusal rates)")
    r.set_defaults(func=_report)


def _data(args: argparse.Namespace) -> int:
    from foresight.align.data import build

    directory = build(Path(args.root) if args.root else None, force=args.force)
    manifest = json.loads((directory / "manifest.json").read_text())
    print(json.dumps(manifest.get("counts", manifest), indent=1))
    print(f"wrote {directory}")
    return 0


def _train(args: argparse.Namespace, schema, train) -> int:
    from foresight.config import load_config
    from foresight.train.commands import check_out_dir

    cfg = load_config(args.config, schema, overrides=args.overrides)
    out = check_out_dir(args.out)
    summary = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "data"}, indent=1))
    return 0


def _sft(args: argparse.Namespace) -> int:
    from foresight.align.config import SFTConfig
    from foresight.align.sft import train_sft

    return _train(args, SFTConfig, train_sft)


def _rm(args: argparse.Namespace) -> int:
    from foresight.align.config import RMConfig
    from foresight.align.rm import train_rm

    return _train(args, RMConfig, train_rm)


def _dpo(args: argparse.Namespace) -> int:
    from foresight.align.config import DPOConfig
    from foresight.align.dpo import train_dpo

    return _train(args, DPOConfig, train_dpo)


def _ppo(args: argparse.Namespace) -> int:
    from foresight.align.config import PPOConfig
    from foresight.align.ppo import train_ppo

    return _train(args, PPOConfig, train_ppo)


def _score(args: argparse.Namespace) -> int:
    from foresight.align.rm import load_reward_model, score

    if any(not r.strip() for r in args.response):
        raise ForesightError("--response is empty: give the reply text to score")
    model, tokenizer = load_reward_model(args.rm)
    prompt = ([{"role": "system", "content": args.system}] if args.system else []) + \
        [{"role": "user", "content": args.prompt}]
    for response, reward in zip(args.response, score(model, tokenizer, prompt, args.response)):
        shown = response if len(response) <= 60 else response[:57] + "..."
        print(f"{reward:+.4f}  {shown!r}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from foresight.align.report import write_report

    split = lambda text: None if text is None else text.split(",")
    print(write_report(args.results, args.out, labels=split(args.labels), started_from=split(args.started_from),
                       runs=args.runs))
    return 0
