"""Where does the ladder's power law start? Train several model shapes at each of the ladder's compute levels (an
isoFLOP grid, Chinchilla's approach 1) and plot loss against compute per shape, with the best shape at each level
(the compute-efficient frontier) and, optionally, finished targets.

    python scripts/isoflop_grid.py configs/forecast-cpu.toml --shapes 32x1 32x2 48x2 64x2 80x2 \\
        --target forecasts/cpu --out forecasts/isoflop --plot docs/isoflop_grid.png

Each shape is WIDTHxLAYERS (heads of the ladder's head_dim). At each compute level of the config's ladder, a shape is
trained only if its tokens per parameter lie within --tpp-range (far from compute-optimal runs say little). Runs are
trained as `foresight forecast` trains ladder runs (same batch rule, schedule and data). Resumable: finished runs
are skipped; results accumulate in OUT/grid.json.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from foresight.errors import ForesightError  # noqa: E402
from foresight.scaling.forecast import finished_forecast, resolve_vocab  # noqa: E402
from foresight.scaling.ladder import (compute_levels, ladder_run, load_forecast_config, run_ladder,  # noqa: E402
                                      shaped, target_compute, write_plan)
from foresight.files import atomic_write_text  # noqa: E402
from foresight.train.flops import flops_per_token  # noqa: E402


def _shape(text: str) -> tuple[int, int]:
    width, _, layers = text.partition("x")
    if not (width.isdigit() and layers.isdigit() and int(width) > 0 and int(layers) > 0):
        raise ForesightError(f"--shapes: {text!r} is not WIDTHxLAYERS (for example 48x2)")
    return int(width), int(layers)


def plan_grid(fc, shapes: list[tuple[int, int]], tpp_range: tuple[float, float]) -> list[dict]:
    """Ladder-run dicts (plus their compute `level`) for every shape at every level of fc's ladder whose tokens per
    parameter fall in tpp_range. fc's target must have its vocab_size resolved."""
    target, lc = fc.target, fc.ladder
    for width, _ in shapes:
        if width % lc.head_dim:
            raise ForesightError(f"--shapes: width {width} is not a multiple of ladder.head_dim ({lc.head_dim})")
    runs = []
    for i, compute in enumerate(compute_levels(target_compute(target), lc)):
        for width, layers in shapes:
            model = shaped(width, layers, lc, target.model)
            tokens = int(compute / flops_per_token(model, target.train.seq_len))
            run = ladder_run(f"c{i}_d{width}_l{layers}", model, tokens, target, lc)
            if tpp_range[0] <= run["tokens_per_param"] <= tpp_range[1]:
                runs.append({**run, "level": i, "shape": f"{width}x{layers}"})
    return runs


def plot(rows: list[dict], targets: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=130)
    for shape in sorted({r["shape"] for r in rows}, key=lambda s: tuple(map(int, s.split("x")))):
        pts = sorted((r for r in rows if r["shape"] == shape), key=lambda r: r["compute"])
        ax.plot([r["compute"] for r in pts], [r["loss"] for r in pts], "o-", ms=3.5, lw=0.9, alpha=0.8,
                label=f"d{shape.replace('x', ', ')} layer{'s' if not shape.endswith('x1') else ''}")
    front = [min((r for r in rows if r["level"] == lv), key=lambda r: r["loss"])
             for lv in sorted({r["level"] for r in rows})]
    ax.plot([r["compute"] for r in front], [r["loss"] for r in front], "k--", lw=1.4, label="best at each compute")
    if targets:
        # the straight line (a pure power law) through the two best points at the top, carried out to the targets
        (c1, l1), (c2, l2) = [(r["compute"], r["loss"]) for r in front[-2:]]
        c_end = max(t["compute"] for t in targets)
        ax.plot([c2, c_end], [l2, l2 * (c_end / c2) ** (math.log(l2 / l1) / math.log(c2 / c1))], ":", color="gray",
                lw=1.2, label="top two best points, extended")
        ax.plot([t["compute"] for t in targets], [t["loss"] for t in targets], "*", ms=11, color="tab:red",
                label=f"target{'s' if len(targets) > 1 else ''} (actual)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel("final validation loss (nats/token, log scale)")
    ax.set_title("IsoFLOP grid at the ladder's compute levels")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--shapes", nargs="+", default=["32x1", "32x2", "48x2", "64x2", "80x2"])
    p.add_argument("--tpp-range", nargs=2, type=float, default=[3.0, 150.0], metavar=("LOW", "HIGH"),
                   help="train a shape at a level only if its tokens per parameter lie in this range")
    p.add_argument("--target", action="append", default=[], metavar="DIR",
                   help="a finished `foresight forecast` folder whose target to draw (repeatable)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--plot", type=Path)
    p.add_argument("--jobs", type=int, default=0)
    args = p.parse_args(argv)
    try:
        shapes = [_shape(s) for s in args.shapes]
        targets = []
        for folder in args.target:
            report = finished_forecast(Path(folder))
            targets.append({"name": Path(folder).name, "compute": float(report["target_compute"]),
                            "loss": float(report["actual_loss"])})
        fc = load_forecast_config(args.config, args.overrides)
        resolve_vocab(fc)
        runs = plan_grid(fc, shapes, tuple(args.tpp_range))
        if not runs:
            raise ForesightError("no shape falls inside --tpp-range at any compute level")
        write_plan(runs, args.out, fc.target)  # run_ladder trains what a plan lists, skipping finished runs
        summaries = run_ladder(args.out, jobs=args.jobs, say=print)
    except ForesightError as e:
        print(f"error: {e}")
        return 1
    rows = [{"name": r["name"], "level": r["level"], "shape": r["shape"],
             "compute": s["flops"], "tokens_per_param": r["tokens_per_param"], "steps": r["steps"],
             "loss": s["final_val_loss"]} for r, s in zip(runs, summaries)]
    atomic_write_text(args.out / "grid.json", json.dumps({"runs": rows, "targets": targets}, indent=1))
    for lv in sorted({r["level"] for r in rows}):
        at = sorted((r for r in rows if r["level"] == lv), key=lambda r: r["loss"])
        print(f"{at[0]['compute']:.3g} FLOPs: " + ", ".join(
            f"d{r['shape']} {r['loss']:.4f} ({r['tokens_per_param']:.0f} tok/param)" for r in at))
    if args.plot:
        plot(rows, targets, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
