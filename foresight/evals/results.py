"""results.json: what `foresight eval` writes, prints and compares.

    {"model": {"spec", "identity"}, "created", "settings": {...},
     "tasks": {NAME: {"task", "request", "shots", "n", "description", "better": {METRIC: "higher" | "lower"},
                      "metrics": {...}, "groups": {GROUP: {...}}, "items": [per-item records],
                      "calibration": {...}, "seconds", ...}},
     "files": {"calibration_mmlu": "calibration_mmlu.png"}}

Per-item records carry the item id, a hash of the exact prompt, the answer, the prediction, the log-likelihoods and
probabilities of every choice (multiple choice), the completions (generation) or the log-likelihood, tokens and
bytes (bits per byte), and whether it was right. Chat tasks record the conversation ("messages"), the prompt as the
model's chat template rendered it ("prompt"), the replies ("completions"), the scorer's verdicts ("passed": obeys
the rule, or is a refusal), which replies were empty, and the refusal judge's labels ("labels"). A reliability
diagram is written next to results.json for every task with calibration.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from foresight.errors import ForesightError

# The metric each task is summarised by in tables (the first of these its summary has).
HEADLINE = ("acc", "bits_per_byte", "pass@1", "exact_match", "compliance", "refusal_rate")
COUNTS = ("bytes", "tokens", "empty_replies")  # whole numbers, shown as they are, never compared as rates


def write_results(results: dict, out: Path) -> Path:
    """results.json (atomically: a reader never sees half a file) and its calibration figures."""
    from foresight.evals.calibration import reliability_diagram

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, task in results["tasks"].items():
        if "calibration" in task:
            png = out.parent / f"calibration_{name}.png"
            shots = f"{task['shots']}-shot" if task["shots"] else "0-shot"
            reliability_diagram(task["calibration"], png,
                                f"{results['model']['spec']}: {name} {shots}, {task['n']} questions")
            files[f"calibration_{name}"] = png.name
    results["files"] = files
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    os.replace(tmp, out)
    return out


def read_results(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ForesightError(f"cannot read {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise ForesightError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise ForesightError(f"{path}: not a results.json written by `foresight eval` (no 'tasks' table)")
    return data


def _fmt(value, pct: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value * 100:.2f}" if pct else f"{value:.4f}"


def _is_pct(metric: str) -> bool:
    return metric.startswith(("acc", "pass@", "exact_match", "ece", "compliance", "refusal_rate"))


def _label(task: dict, metric: str) -> str:
    """The metric's name in a table: "(%)" for rates, and "lower is better" where the task says so (an
    over-refusal rate, say); results without a "better" table (older files) show the name alone."""
    notes = ["%"] if _is_pct(metric) else []
    if task.get("better", {}).get(metric) == "lower":
        notes.append("lower is better")
    return metric + (f" ({', '.join(notes)})" if notes else "")


def summary_rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    """(task, shots, n, metric, value ± stderr) for every reported metric."""
    rows = []
    for name, task in results["tasks"].items():
        for metric, value in task["metrics"].items():
            if metric.endswith("_stderr") or metric in ("bytes", "tokens"):
                continue
            err = task["metrics"].get(f"{metric}_stderr")
            pct = _is_pct(metric)
            shown = _fmt(value, pct) + (f" ± {_fmt(err, pct)}" if err is not None else "")
            rows.append((name, str(task["shots"]), str(task["n"]), _label(task, metric), shown))
    return rows


def _table(header: tuple, rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in
                               enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def image_rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    """(task or task/group, n, with the image, image removed, majority) for every image task, each group (a
    question type) first: the comparison an image task exists for, which the long table spreads over three rows."""
    rows = []
    for name, task in results["tasks"].items():
        if "exact_match_no_image" not in task["metrics"]:
            continue
        groups = [(f"{name}/{group}", m) for group, m in sorted((task.get("groups") or {}).items())]
        for label, m in [*groups, (name, {**task["metrics"], "n": task["n"]})]:
            rows.append((label, str(m.get("n", "")), *(_fmt(m.get(k), True) for k in
                                                        ("exact_match", "exact_match_no_image",
                                                         "exact_match_majority"))))
    return rows


def format_summary(results: dict) -> str:
    text = _table(("task", "shots", "n", "metric", "value"), summary_rows(results))
    images = image_rows(results)
    if images:
        text += "\n\n" + _table(("image task", "n", "image (%)", "image removed (%)", "majority (%)"), images)
    return text


def compare(a: dict, b: dict) -> str:
    """A table of every metric the two results share, per task (and per group), with B - A."""
    rows = []
    for name in [t for t in a["tasks"] if t in b["tasks"]]:
        ta, tb = a["tasks"][name], b["tasks"][name]
        for metric in [m for m in ta["metrics"] if m in tb["metrics"] and not m.endswith("_stderr")
                       and m not in ("bytes", "tokens")]:
            va, vb = ta["metrics"][metric], tb["metrics"][metric]
            pct = _is_pct(metric)
            if metric in COUNTS:
                delta = f"{vb - va:+d}" if isinstance(va, int) and isinstance(vb, int) else f"{vb - va:+.4f}"
            else:
                delta = f"{(vb - va) * 100:+.2f}" if pct else f"{vb - va:+.4f}"
            notes = [f"{key} {ta[key]} vs {tb[key]}" for key in ("n", "shots") if ta[key] != tb[key]]
            rows.append((name, _label(tb, metric), _fmt(va, pct), _fmt(vb, pct),
                         delta + (f"  ({', '.join(notes)})" if notes else "")))
    only = sorted(set(a["tasks"]) ^ set(b["tasks"]))
    text = _table(("task", "metric", "A", "B", "B - A"), rows) if rows else "no task in common"
    if only:
        text += f"\nin one file only: {', '.join(only)}"
    return text


def default_out(model_spec: str) -> Path:
    name = Path(model_spec).name if os.sep in model_spec or Path(model_spec).exists() else model_spec
    return Path("eval_results") / (Path(name).stem if name.endswith(".gguf") else name) / "results.json"
