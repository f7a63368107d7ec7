"""µP transfer check: sweep the learning rate at several widths; under µP the best rate should be the same grid
point at every width (and under standard parametrization it drifts down as width grows).

    .venv/bin/python scripts/lr_sweep.py --out runs/lr_sweep_long --tokens 1600000 --widths 32 64 128 256 \
        --lrs 0.0025 0.005 0.01 --threads 1                                 # the figure in docs/mup_lr_sweep.png
    .venv/bin/python scripts/lr_sweep.py --out runs/lr_sweep_sp --parametrization sp

Writes OUT/results.json and docs/mup_lr_sweep[_sp].png. Finished runs are skipped on a re-run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from foresight.config import load_config
from foresight.train.trainer import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/lr_sweep"))
    ap.add_argument("--config", default="configs/forecast-cpu.toml", help="forecast config whose [target] supplies "
                    "data and training settings")
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.0025, 0.005, 0.01, 0.02, 0.04])
    ap.add_argument("--tokens", type=int, default=400_000)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--parametrization", choices=["mup", "sp"], default="mup")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads per run (0: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default=None, help="figure path (default docs/mup_lr_sweep[_sp].png)")
    args = ap.parse_args()

    from foresight.scaling.ladder import ForecastConfig

    base = load_config(args.config, ForecastConfig).target
    results = []
    for width in args.widths:
        for lr in args.lrs:
            run = args.out / (f"{args.parametrization}_d{width}_lr{lr:g}" + (f"_s{args.seed}" if args.seed else ""))
            if not (run / "summary.json").exists():
                cfg = load_config(args.config, ForecastConfig, [
                    f"target.model.d_model={width}", f"target.model.n_heads={width // 16}",
                    f"target.model.n_layers={args.layers}", f'target.model.parametrization="{args.parametrization}"',
                    f"target.train.lr={lr}", "target.train.flops=0", f"target.train.tokens={args.tokens}",
                    "target.train.batch_size=16", "target.train.checkpoint_every=0",
                    "target.data.val_tokens=65536", f"target.train.threads={args.threads}",
                    f"target.train.seed={args.seed}"]).target
                train(cfg, run, resume=True, progress=False)
            loss = json.loads((run / "summary.json").read_text())["final_val_loss"]
            results.append({"width": width, "lr": lr, "val_loss": loss})
            print(f"width {width:4d}  lr {lr:<7g} val loss {loss:.4f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    best = {w: min((r for r in results if r["width"] == w), key=lambda r: r["val_loss"])["lr"] for w in args.widths}
    (args.out / f"results{'_s%d' % args.seed if args.seed else ''}.json").write_text(json.dumps({"results": results, "best_lr": best}, indent=1))
    print("best learning rate per width:", best)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for w in args.widths:
        pts = [(r["lr"], r["val_loss"]) for r in results if r["width"] == w]
        ax.plot(*zip(*pts), "o-", label=f"d_model {w}")
        ax.plot([best[w]], [min(p[1] for p in pts)], "k*", ms=12)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final validation loss")
    ax.set_title(f"learning-rate sweep, {args.parametrization.upper()} ({args.tokens:,} tokens; ★ = best)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    suffix = "" if args.parametrization == "mup" else "_sp"
    fig.savefig(args.plot or f"docs/mup_lr_sweep{suffix}.png")


if __name__ == "__main__":
    main()
