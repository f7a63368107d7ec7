"""Loss against compute for every finished run under the given directories (ladders, forecasts, single runs).

    python scripts/plot_runs.py forecasts/cpu forecasts/cpu-seed1 --out docs/small_runs_loss_vs_compute.png

Each point is one run's summary.json (final validation loss, training FLOPs), coloured by model width; runs with
the same width are joined, so data scaling at fixed size and size scaling at fixed tokens-per-parameter can be told
apart. Used to see where small runs start to follow a power law (docs/LOG.md).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    by_width: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    seen = set()
    for folder in args.dirs:
        for path in sorted(folder.rglob("summary.json")):
            s = json.loads(path.read_text())
            cfg = (path.parent / "config.toml").read_text() if (path.parent / "config.toml").is_file() else ""
            width = next((int(line.split("=")[1]) for line in cfg.splitlines()
                          if line.strip().startswith("d_model")), 0)
            key = (round(s["flops"]), round(s["final_val_loss"], 6))
            if key in seen:  # the same run copied into several folders
                continue
            seen.add(key)
            by_width[width].append((s["flops"], s["final_val_loss"], str(path.parent)))
    if not by_width:
        raise SystemExit("no summary.json found under " + ", ".join(map(str, args.dirs)))
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=130)
    for width in sorted(by_width):
        pts = sorted(by_width[width])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=4, lw=0.8, label=f"d_model {width}")
    ax.set_xscale("log")
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel("final validation loss (nats/token)")
    ax.set_title(f"{sum(len(v) for v in by_width.values())} runs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
