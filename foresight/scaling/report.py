"""The forecast's figure (in the manner of the GPT-4 report's Figure 1) and a self-contained HTML report."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path


# What the loss is, by the target's modality (forecast.json's "modality"; absent before it existed: text).
LOSS_LABELS = {"text": "validation loss (nats/token)",
               "image-text": "held-out image-text loss (nats per assistant token)"}


def _image_text(result: dict) -> bool:
    return result.get("modality", "text") == "image-text"


def write_figure(path: Path, fit: dict, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c_target = result["target_compute"]
    norm = lambda xs: [x / c_target for x in xs]  # compute as a fraction of the target's, as the report does
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=130)
    curve = fit["curve"]
    ax.fill_between(norm(curve["x"]), curve["low"], curve["high"], color="tab:blue", alpha=0.15,
                    label="90% interval")
    ax.plot(norm(curve["x"]), curve["y"], "--", color="tab:blue", label="fit: " + fit["law"])
    # a fit.json written before [fit] existed has no ladder_x: every run was fitted
    unfitted = [(x, y) for x, y in zip(fit.get("ladder_x", []), fit.get("ladder_y", [])) if x not in fit["x"]]
    ax.scatter(norm(fit["x"]), fit["y"], color="0.25", zorder=3,
               label="ladder runs (fitted)" if unfitted else "ladder runs")
    if unfitted:
        ax.scatter(norm([x for x, _ in unfitted]), [y for _, y in unfitted], facecolors="none", edgecolors="0.25",
                   zorder=3, label="ladder runs (not fitted; their scatter sets the interval's floor)")
    p = fit["prediction"]
    ax.errorbar([1.0], [p["y"]], yerr=[[p["y"] - p["low"]], [p["high"] - p["y"]]], fmt="o", color="tab:blue",
                capsize=4, zorder=4, label=f"registered prediction {p['y']:.3f}")
    ax.scatter([1.0], [result["actual_loss"]], marker="*", s=180, color="tab:green", zorder=5,
               label=f"actual {result['actual_loss']:.3f} ({100 * result['relative_error']:+.2f}%)")
    ax.set_xscale("log")
    # The interval flares where the curve is extrapolated backwards, below the smallest run; the y range follows
    # the runs, the prediction's interval and the actual loss instead, so that a flare cannot flatten them.
    seen = [*fit.get("ladder_y", fit["y"]), *fit["y"], p["low"], p["high"], result["actual_loss"]]
    pad = 0.1 * (max(seen) - min(seen))
    ax.set_ylim(min(seen) - pad, max(seen) + pad)
    ax.set_xlabel("compute (fraction of the target run's)")
    ax.set_ylabel(LOSS_LABELS[result.get("modality", "text")])
    what = "Image-text loss" if _image_text(result) else "Loss"
    ax.set_title(f"{what} forecast across {result['extrapolation']:.0f}x extrapolation")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_fit(path: Path, result, summary: dict, title: str = "") -> None:
    """`foresight fit --plot`: the points, the fitted law with its interval band, and the requested predictions.
    Two-variable fits are drawn against N·D (proportional to compute)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = np.prod(result.inputs, axis=1)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=130)
    ax.scatter(scale, result.y, color="0.25", zorder=3, label=f"data ({len(scale)} points)")
    if result.law.n_inputs == 1:
        top = max([float(scale.max())] + [float(r["x"]) for r in summary["predictions"]])
        grid = np.logspace(np.log10(scale.min()) - 0.1, np.log10(top) + 0.1, 80)
        low, high = result.interval(grid, level=summary["level"])
        ax.fill_between(grid, low, high, color="tab:blue", alpha=0.15, label=f"{summary['level']:.0%} interval")
        ax.plot(grid, result.predict(grid), "--", color="tab:blue", label=summary["formula"])
    for row in summary["predictions"]:
        x = float(np.prod(row["x"]))
        ax.errorbar([x], [row["y"]], yerr=[[row["y"] - row["low"]], [row["high"] - row["y"]]], fmt="o",
                    color="tab:red", capsize=4, zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel(" x ".join(result.input_names))
    ax.set_ylabel(result.y_name)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fitted_runs(fit: dict) -> str:
    total = len(fit.get("ladder_x", fit["x"]))
    if fit["n_points"] == total:
        return f"{total} ladder runs"
    return (f"fitted to the top {fit['n_points']} of {total} ladder runs; the interval is never narrower than the "
            f"scatter of all {total} about a smooth curve, {100 * fit['noise_floor']:.2f}% per run")


def write_report(path: Path, fit: dict, result: dict, out: Path) -> None:
    figure = base64.b64encode((out / "loss_vs_compute.png").read_bytes()).decode()
    rows = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td>{r['compute']:.3g}</td><td>{r['params']:,}</td>"
        f"<td>{r['non_embedding_params']:,}</td><td>{r['tokens']:,}</td><td>{r['final_loss']:.4f}</td>"
        f"<td>{r['wall_seconds']:.0f}</td></tr>"
        for r in result["ladder"])
    t = result["target"]
    verdict = "inside" if result["inside_interval"] else "outside"
    params = ", ".join(f"{k} = {v:.4g}" for k, v in fit["params"].items())
    ledger = html.escape(json.dumps(result["ledger_entry"], indent=1))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Foresight forecast</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 900px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f4f4f4; }} .big {{ font-size: 1.3em; }} pre {{ background: #f7f7f7; padding: 1em; overflow: auto; }}
</style></head><body>
<h1>{"Image-text loss" if _image_text(result) else "Loss"} forecast</h1>
{_modality_note(result)}<p class="big">Predicted <b>{result['predicted_loss']:.4f}</b>
(90% interval {result['interval'][0]:.4f} – {result['interval'][1]:.4f}); actual <b>{result['actual_loss']:.4f}</b>:
error <b>{100 * result['relative_error']:+.2f}%</b>, {verdict} the interval, at
<b>{result['extrapolation']:.0f}×</b> extrapolation.</p>
<img src="data:image/png;base64,{figure}" alt="loss vs compute" style="max-width:100%">
<h2>Fit</h2><p>{html.escape(fit['law'])}: {html.escape(params)} ({_fitted_runs(fit)}).</p>
<h2>Ladder</h2>
<table><tr><th>run</th><th>FLOPs</th><th>params</th><th>non-embedding</th><th>tokens</th><th>final loss</th>
<th>seconds</th></tr>{rows}
<tr><td><b>target</b></td><td>{result['target_compute']:.3g}</td><td>{t['params']:,}</td>
<td>{t['non_embedding_params']:,}</td><td>{t['tokens']:,}</td><td>{result['actual_loss']:.4f}</td>
<td>{t['wall_seconds']:.0f}</td></tr></table>
{_capabilities_section(result, out)}
<h2>Registered prediction (ledger entry)</h2>
<p>Written to the append-only ledger before the target run began; <code>foresight ledger verify</code> checks it.</p>
<pre>{ledger}</pre>
</body></html>
"""
    from foresight.files import atomic_write_text

    atomic_write_text(path, page)


def _modality_note(result: dict) -> str:
    if not _image_text(result):
        return ""
    return ("<p>The target is an image-text model (a ViT encoder and a projector feeding a language model, trained "
            "together from scratch on captions and questions about synthetic scenes). The ladder reshapes the "
            "language model and keeps the encoder; the loss is the mean cross-entropy on the assistant's tokens of "
            "held-out scenes' conversations, and compute counts the encoder, the projector and the language model "
            "over every input position, image tokens included (<code>foresight/train/flops.py</code>).</p>\n")


def _capabilities_section(result: dict, out: Path) -> str:
    """The capability forecast (the report's Figure 2) and the place for Hindsight Neglect (its Figure 3)."""
    caps = result.get("capabilities")
    if caps is None:
        return ""
    rates = ", ".join(f"{k} {100 * v:.1f}%" for k, v in caps["target_pass_rates"].items())
    head = (f"<h2>Capability forecast</h2><p>Held-out Python exercises ({caps['problems']} problems, "
            f"{caps['samples']} samples each at temperature {caps['temperature']:g}; none of them in the training "
            f"corpus). The target's mean pass rate: {html.escape(rates)}.</p>")
    hindsight = _hindsight_section(caps, out)
    if "error" in caps:
        return head + f"<p>No capability forecast: {html.escape(caps['error'])}</p>" + hindsight
    figure = out / "capabilities_vs_compute.png"
    img = (f'<img src="data:image/png;base64,{base64.b64encode(figure.read_bytes()).decode()}" '
           f'alt="mean log pass rate vs compute" style="max-width:100%">') if figure.is_file() else ""
    rows = "".join(_capability_row(r) for r in caps["buckets"])
    fits = "".join(f"<li>{html.escape(k)}: {html.escape(_fit_text(v))}</li>" for k, v in caps["fits"].items())
    return (head + f"<p>Fitted {html.escape(caps['law'])} per difficulty level on the problems every ladder model "
            f"solved at least once, then predicted at {caps['extrapolation']:.0f}× the largest ladder run's compute "
            f"and registered in the ledger before the target run began (entry "
            f"{html.escape(caps['ledger_entry'].get('sha256', '')[:16])}…).</p>{img}"
            "<table><tr><th>bucket</th><th>problems</th><th>predicted −E[log pass rate] (90%)</th><th>actual</th>"
            "<th>error (nats)</th><th>inside</th><th>geometric-mean pass rate, predicted / actual</th></tr>"
            f"{rows}</table><ul>{fits}</ul>" + hindsight)


def _hindsight_section(caps: dict, out: Path) -> str:
    rows = caps.get("hindsight_neglect") or []
    figure = out / "hindsight_vs_compute.png"
    if not rows or not figure.is_file():
        return ""
    img = base64.b64encode(figure.read_bytes()).decode()
    accs = ", ".join(f"{html.escape(r['model'])} {100 * r['acc']:.1f}%" for r in rows)
    return ("<h3>Hindsight Neglect accuracy against compute (the report's Figure 3)</h3>"
            f"<p>The evaluation harness's task ({rows[0]['n']} items, answers balanced: chance is 50%), measured on "
            f"every model. Contexts are cut to the model's {rows[0]['context_tokens']} tokens from the left, so "
            f"models this size see the question but none of its solved examples. {accs}.</p>"
            f'<img src="data:image/png;base64,{img}" alt="Hindsight Neglect accuracy vs compute" '
            'style="max-width:100%">')


def _capability_row(r: dict) -> str:
    # in nats, not relative: an actual −E[log pass rate] near 0 (everything passes) makes a relative error meaningless
    error = f"{r['error']:+.3f}"
    return (f"<tr><td>{html.escape(r['bucket'])}</td><td>{r['problems']}</td><td>{r['predicted']:.3f} "
            f"({r['interval'][0]:.3f} – {r['interval'][1]:.3f})</td><td>{r['actual'] + 0.0:.3f}</td><td>{error}</td>"
            f"<td>{'yes' if r['inside_interval'] else 'no'}</td><td>{100 * r['predicted_pass_rate']:.1f}% / "
            f"{100 * r['actual_pass_rate']:.1f}%</td></tr>")


def _fit_text(fit) -> str:
    if isinstance(fit, dict):
        return f"alpha = {fit['alpha']:.4g}, k = {fit['k']:.4f}"
    return str(fit)
