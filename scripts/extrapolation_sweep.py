"""How far can a forecast config extrapolate? Plan and train its ladder at several extrapolation factors and seeds,
fit each, and compare the prediction with targets that were already trained.

    python scripts/extrapolation_sweep.py configs/forecast-cpu.toml --factors 10 20 30 50 100 \\
        --target 0=forecasts/cpu --target 1=forecasts/cpu-seed1 --target 2=forecasts/cpu-seed2 \\
        --out forecasts/sweep-extrapolation --plot docs/extrapolation_sweep.png

Each `--target SEED=DIR` names a finished `foresight forecast` of the same config with `target.train.seed=SEED`;
its actual final loss is what the ladders of that seed are judged against (the target run does not depend on the
extrapolation factor, only the ladder does, so one target serves every factor). This is an exploration tool: the
predictions are not registered, and nothing here replaces a full `foresight forecast` at the factor finally chosen.
Resumable: finished ladder runs are skipped, and results accumulate in OUT/sweep.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from foresight.errors import ForesightError  # noqa: E402
from foresight.scaling.forecast import _fit_ladder, finished_forecast, resolve_vocab  # noqa: E402
from foresight.scaling.ladder import load_forecast_config, plan_ladder, run_ladder, write_plan  # noqa: E402
from foresight.files import atomic_write_text  # noqa: E402

ERROR_GOAL = 0.02  # the issue's |relative error| bound for the CPU forecast


def _targets(specs: list[str]) -> dict[int, float]:
    out = {}
    for spec in specs:
        seed, _, folder = spec.partition("=")
        if not seed.strip().isdigit() or not folder:
            raise ForesightError(f"--target {spec!r}: expected SEED=DIR with DIR/forecast.json")
        out[int(seed)] = float(finished_forecast(Path(folder))["actual_loss"])
    return out


def sweep_one(config: Path, factor: float, seed: int, folder: Path, jobs: int, overrides: list[str] = ()) -> dict:
    overrides = [*overrides, f"ladder.extrapolation={factor:g}", f"target.train.seed={seed}"]
    fc = load_forecast_config(config, overrides)
    resolve_vocab(fc)  # before planning: the target's compute counts its output head
    plan = write_plan(plan_ladder(fc), folder, fc.target)
    summaries = run_ladder(folder, jobs=jobs, say=lambda msg: print(f"  [{factor:g}x seed {seed}] {msg}"))
    prediction = _fit_ladder(summaries, plan["target_compute"], fc.fit)["prediction"]  # as `foresight forecast` fits
    return {"factor": factor, "seed": seed, "extrapolation": plan["extrapolation"], "predicted": prediction["y"],
            "low": prediction["low"], "high": prediction["high"],
            "ladder": [{"compute": s["flops"], "loss": s["final_val_loss"], "steps": r["steps"],
                        "tokens_per_param": r["tokens_per_param"], "name": r["name"]}
                       for s, r in zip(summaries, plan["runs"])]}


def plot(rows: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.3), dpi=130)
    seeds = sorted({r["seed"] for r in rows})
    for k, seed in enumerate(seeds):
        pts = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["factor"])
        x = [r["extrapolation"] * (1 + 0.04 * (k - (len(seeds) - 1) / 2)) for r in pts]  # small offset per seed
        y = [100 * r["error"] for r in pts]
        lo = [100 * (r["predicted"] - r["low"]) / r["actual"] for r in pts]
        hi = [100 * (r["high"] - r["predicted"]) / r["actual"] for r in pts]
        ax.errorbar(x, y, yerr=[lo, hi], fmt="o-", ms=4, lw=0.8, capsize=2, label=f"seed {seed}")
    ax.axhspan(-100 * ERROR_GOAL, 100 * ERROR_GOAL, color="tab:green", alpha=0.15, label="±2% (the goal)")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("extrapolation (target compute / largest ladder run)")
    ax.set_ylabel("relative error of the predicted loss (%)")
    ax.set_ylim(-40, 40)
    ax.set_title("Same target, smaller ladders: error and 90% interval")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--factors", type=float, nargs="+", required=True)
    parser.add_argument("--target", action="append", required=True, metavar="SEED=DIR")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides, as for `foresight forecast` (the targets must match them)")
    args = parser.parse_args()
    try:
        run(args)
    except ForesightError as e:
        raise SystemExit(f"error: {e}")


def run(args) -> None:
    actual = _targets(args.target)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "sweep.json"
    rows = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["factor"], r["seed"]) for r in rows}
    for factor in args.factors:
        for seed in sorted(actual):
            if (factor, seed) in done:
                continue
            row = sweep_one(args.config, factor, seed, args.out / f"x{factor:g}_seed{seed}", args.jobs,
                            args.set)
            row["actual"] = actual[seed]
            row["error"] = row["predicted"] / row["actual"] - 1
            row["inside"] = row["low"] <= row["actual"] <= row["high"]
            rows.append(row)
            atomic_write_text(results_path, json.dumps(rows, indent=1) + "\n")
    print(f"{'factor':>7} {'seed':>4} {'predicted':>9} {'actual':>7} {'error':>8}  90% interval")
    for r in sorted(rows, key=lambda r: (r["factor"], r["seed"])):
        print(f"{r['extrapolation']:7.1f} {r['seed']:4d} {r['predicted']:9.4f} {r['actual']:7.4f} "
              f"{100 * r['error']:+7.2f}%  {r['low']:.3f}-{r['high']:.3f}{'' if r['inside'] else '  (outside)'}")
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
