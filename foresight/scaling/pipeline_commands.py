"""`foresight ladder plan|run` and `foresight forecast` (the main job)."""

from __future__ import annotations

import argparse
from pathlib import Path

from foresight.cli_args import int_in


def register(sub: argparse._SubParsersAction) -> None:
    ladder = sub.add_parser("ladder", help="plan and train the small runs a forecast is fitted to")
    lsub = ladder.add_subparsers(dest="ladder_command", metavar="SUBCOMMAND")
    p = lsub.add_parser("plan", help="choose the ladder runs for a forecast config",
                        description="Write DIR/plan.json and DIR/configs/<run>.toml: runs spread evenly in "
                                    "log-compute below the target, sized on the width/depth dial.")
    p.add_argument("config", help="a forecast config, e.g. configs/forecast-cpu.toml")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--slurm", action="store_true",
                   help="also write DIR/slurm.sbatch, a Slurm array job with one task per run (a template: fill in "
                        "partition, account and time, then sbatch it)")
    _procs_argument(p)
    p.set_defaults(func=_plan)
    r = lsub.add_parser("run", help="train the ladder's pending runs (resumable)")
    r.add_argument("dir", type=Path, help="a directory written by `foresight ladder plan`")
    r.add_argument("--jobs", type=int_in(0, 4096), default=0,
                   help="runs trained at once, cores split between them (default: one per core; on GPUs, one per "
                        "GPU, each given its own)")
    _procs_argument(r)
    _ray_argument(r)
    r.set_defaults(func=_run)
    ladder.set_defaults(func=lambda args: ladder.print_help())

    f = sub.add_parser(
        "forecast", help="the main job: ladder -> fit -> register -> target -> verdict",
        description="Plan and train a ladder of small runs, fit L(C) = a*C^-b + c, register the predicted final "
                    "loss of the target run in an append-only ledger, train the target, and judge the prediction. "
                    "Writes DIR/forecast.json, DIR/loss_vs_compute.png and DIR/report.html. Resumable: re-run the "
                    "same command to continue.")
    f.add_argument("config", help="a forecast config, e.g. configs/forecast-cpu.toml")
    f.add_argument("--out", required=True, type=Path)
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    f.add_argument("--jobs", type=int_in(0, 4096), default=0,
                   help="ladder runs trained at once (default: one per core; one per GPU on GPUs)")
    _procs_argument(f)
    _ray_argument(f)
    f.add_argument("--sign-key", type=Path, metavar="KEY",
                   help="sign the ledger entries this forecast registers with an ed25519 key from `foresight "
                        "ledger keygen`; check them with `foresight ledger verify --public-key KEY.pub`")
    f.set_defaults(func=_forecast)


def _procs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--procs-per-run", type=int_in(1, 4096), default=1, metavar="K",
                        help="train each ladder run as one torchrun job of K data-parallel processes (one GPU each "
                             "on GPUs); K must divide every run's batch: plan with --set ladder.batch_multiple=K")


def _ray_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                        help="run each ladder run (and pass-rate measurement) as a task on the Ray cluster at "
                             "ADDRESS (default: auto, the cluster `ray start` began on this machine); a run whose "
                             "worker dies is retried and resumes from its checkpoint. Needs pip install -e '.[ray]'")


def _plan(args) -> int:
    from foresight.scaling.forecast import resolve_vocab
    from foresight.scaling.ladder import load_forecast_config, plan_ladder, write_plan

    fc = load_forecast_config(args.config, args.overrides)
    resolve_vocab(fc)  # before planning: the target's compute counts its output head
    plan = write_plan(plan_ladder(fc), args.out, fc.target)
    for r in plan["runs"]:
        print(f"{r['name']}: {r['compute']:.2e} FLOPs, {r['params']:,} params, {r['tokens']:,} tokens, "
              f"batch {r['batch_size']}, {r['steps']} steps")
    print(f"target {plan['target_compute']:.2e} FLOPs ({plan['extrapolation']:.0f}x the largest run); "
          f"wrote {args.out / 'plan.json'}")
    if args.slurm:
        from foresight.scaling.ladder import write_slurm_script

        print(f"wrote {write_slurm_script(args.out, args.procs_per_run)} (fill in its #SBATCH lines, then sbatch it)")
    return 0


def _run(args) -> int:
    from foresight.scaling.ladder import run_ladder

    run_ladder(args.dir, jobs=args.jobs, procs_per_run=args.procs_per_run, ray=args.ray)
    return 0


def _forecast(args) -> int:
    from foresight.scaling.forecast import forecast

    forecast(Path(args.config), args.out, args.overrides, jobs=args.jobs,
             procs_per_run=args.procs_per_run, sign_key=args.sign_key, ray=args.ray)
    return 0
