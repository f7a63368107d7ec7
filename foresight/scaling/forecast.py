"""`foresight forecast`: plan -> ladder -> fit -> register -> target run -> verdict, resumable at every stage.

Each stage leaves a file in the forecast directory, written atomically; a re-run skips every stage whose file is
there. The prediction is registered in the ledger before the target run writes its first metric, and the fit uses
only the ladder's final losses — never a partial result of the target.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from foresight.config import dump_config, load_config
from foresight.data.sources import sha256_file
from foresight.errors import ForesightError
from foresight.scaling.ladder import (ForecastConfig, load_plan, plan_ladder, run_ladder, target_compute,
                                      write_plan)
from foresight.train.checkpoint import atomic_write_text

LEVEL = 0.9


def _say(msg: str) -> None:
    print(msg, flush=True)


def _write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def _stage(n: int, name: str, done: bool) -> None:
    _say(f"[{n}/6] {name}" + (" (done, skipped)" if done else ""))


def _vocab_size(fc: ForecastConfig) -> int:
    from foresight.data.shards import read_manifest
    from foresight.train.trainer import resolve_data_dir

    return read_manifest(resolve_data_dir(fc.target))["tokenizer"]["vocab_size"]


def _check_config(out: Path, fc: ForecastConfig) -> None:
    saved = out / "forecast_config.toml"
    text = dump_config(fc)
    if saved.is_file():
        if saved.read_text() != text:
            raise ForesightError(f"{out} holds a forecast made with a different config ({saved}); "
                                 f"choose another --out, or delete {out} to start over")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, text)


def _fit_ladder(out: Path, summaries: list[dict], c_target: float) -> dict:
    from foresight.scaling.fit import fit_power_law

    flops = [s["flops"] for s in summaries]
    losses = [s["final_val_loss"] for s in summaries]
    result = fit_power_law(flops, losses)
    low, high = result.interval(c_target, level=LEVEL)
    fit = {
        "law": "L(C) = a * C^(-b) + c",
        "params": result.params,
        "n_points": len(flops),
        "x": flops,
        "y": losses,
        "prediction": {"x": c_target, "y": float(result.predict(c_target)), "low": float(low), "high": float(high),
                       "level": LEVEL},
    }
    # The fitted curve and band on a grid, for the figure (so plotting needs no re-fit).
    import numpy as np

    grid = np.logspace(np.log10(min(flops)) - 0.2, np.log10(c_target) + 0.2, 60)
    low, high = result.interval(grid, level=LEVEL)
    fit["curve"] = {"x": grid.tolist(), "y": result.predict(grid).tolist(), "low": low.tolist(),
                    "high": high.tolist()}
    return fit


def forecast(config_path: Path, out: Path, overrides: list[str] = (), jobs: int = 0) -> dict:
    from foresight.scaling.ladder import load_forecast_config

    t0 = time.time()
    fc = load_forecast_config(config_path, overrides)
    out = Path(out)
    vocab = _vocab_size(fc)
    if fc.target.model.vocab_size == 0:
        fc.target.model.vocab_size = vocab
    _check_config(out, fc)
    c_target = target_compute(fc.target)
    target_dir = out / "target"
    target_cfg_path = out / "target_config.toml"

    # 1. Plan.
    _stage(1, "plan the ladder", (out / "plan.json").is_file())
    if not (out / "plan.json").is_file():
        plan = write_plan(plan_ladder(fc, vocab), out, fc.target)
        atomic_write_text(target_cfg_path, dump_config(fc.target))
        for r in plan["runs"]:
            _say(f"  {r['name']}: {r['compute']:.2e} FLOPs, {r['params']:,} params "
                 f"({r['non_embedding_params']:,} non-embedding), {r['tokens']:,} tokens, batch {r['batch_size']}, "
                 f"{r['steps']} steps")
        _say(f"  target: {c_target:.2e} FLOPs = {plan['extrapolation']:.0f}x the largest ladder run")
    plan = load_plan(out)

    # 2. Ladder.
    ladder_done = all((out / "runs" / r["name"] / "summary.json").is_file() for r in plan["runs"])
    _stage(2, "train the ladder", ladder_done)
    summaries = run_ladder(out, jobs=jobs, say=_say)

    # 3. Fit.
    _stage(3, "fit L(C) = a*C^-b + c", (out / "fit.json").is_file())
    if not (out / "fit.json").is_file():
        _write_json(out / "fit.json", _fit_ladder(out, summaries, c_target))
    fit = json.loads((out / "fit.json").read_text())
    p = fit["prediction"]
    _say(f"  predicted final loss at {c_target:.2e} FLOPs: {p['y']:.4f} "
         f"(90% interval {p['low']:.4f} - {p['high']:.4f})")

    # 4. Register the prediction before the target run starts.
    _stage(4, "register the prediction in the ledger", (out / "prediction.json").is_file())
    if not (out / "prediction.json").is_file():
        from foresight.scaling.ledger import register

        entry = {
            "target_config_sha256": sha256_file(target_cfg_path),
            "target_compute": c_target,
            "ladder_results": {r["name"]: sha256_file(out / "runs" / r["name"] / "summary.json") for r in plan["runs"]},
            "law": fit["law"],
            "params": fit["params"],
            "prediction": p,
        }
        registered = register(out / "ledger.jsonl", entry, target_run_dir=target_dir)
        _write_json(out / "prediction.json", registered)
        _say(f"  registered as entry {registered.get('sha256', '')[:16]}… in {out / 'ledger.jsonl'}")
    registered = json.loads((out / "prediction.json").read_text())

    # 5. The target run.
    target_done = (target_dir / "summary.json").is_file()
    _stage(5, f"train the target ({c_target:.2e} FLOPs)", target_done)
    if not target_done:
        from foresight.train.trainer import train

        train(load_config(target_cfg_path), target_dir, resume=True, progress=True)
    actual = json.loads((target_dir / "summary.json").read_text())

    # 6. Verdict, figure, report.
    _stage(6, "verdict and report", False)
    result = {
        "predicted_loss": p["y"],
        "interval": [p["low"], p["high"]],
        "interval_level": p["level"],
        "actual_loss": actual["final_val_loss"],
        "relative_error": (p["y"] - actual["final_val_loss"]) / actual["final_val_loss"],
        "inside_interval": p["low"] <= actual["final_val_loss"] <= p["high"],
        "target_compute": c_target,
        "extrapolation": c_target / max(s["flops"] for s in summaries),
        "ladder": [{"name": r["name"], "compute": s["flops"], "params": s["params"],
                    "non_embedding_params": s["non_embedding_params"], "tokens": s["tokens"],
                    "final_loss": s["final_val_loss"], "wall_seconds": s["wall_seconds"]}
                   for r, s in zip(plan["runs"], summaries)],
        "target": {"params": actual["params"], "non_embedding_params": actual["non_embedding_params"],
                   "tokens": actual["tokens"], "wall_seconds": actual["wall_seconds"]},
        "fit": {"law": fit["law"], "params": fit["params"]},
        "ledger_entry": registered,
        "seconds": time.time() - t0,
    }
    _write_json(out / "forecast.json", result)
    from foresight.scaling.report import write_figure, write_report

    write_figure(out / "loss_vs_compute.png", fit, result)
    write_report(out / "report.html", fit, result, out)
    _say(f"predicted {result['predicted_loss']:.4f} [{p['low']:.4f}, {p['high']:.4f}], actual "
         f"{result['actual_loss']:.4f}: error {100 * result['relative_error']:+.2f}% at "
         f"{result['extrapolation']:.0f}x extrapolation; "
         f"{'inside' if result['inside_interval'] else 'OUTSIDE'} the 90% interval")
    _say(f"wrote {out / 'forecast.json'}, {out / 'loss_vs_compute.png'}, {out / 'report.html'}")
    return result
