"""The before/after report (`foresight align report BEFORE AFTER --out DIR`): what a post-training stage changed.

Two results files written by `foresight eval --out` (the model before a stage and after it) are compared metric by
metric: every (task, metric) and (task, metric, group) present in both, with the value before, after, the change
(after - before) and whether the change is for the better, which depends on the metric's direction: a higher
refusal rate on disallowed requests is better, a higher one on allowed requests (over-refusal) is worse. Rows present
in one file only are listed too. `write_report` writes:

    report.md        the table in Markdown, with the figures
    report.json      the rows, the files compared and the calibration numbers
    behaviour.png    grouped bars of every rate metric before and after, one panel per task, "↓" on the metrics
                     where lower is better, and the change written above each pair
    calibration.png  the GPT-4 report's Figure 8 at our scale: reliability diagrams of each calibrated task (MMLU)
                     before and after, side by side, from the per-item choice probabilities in the files

and returns a plain-text table (fixed width) for the terminal.

The direction of a metric comes from the results file (`better`, which the task spec sets) and, for metrics the
file does not orient (older files, ece_top, counts), from DIRECTIONS below; anything unnamed is higher-is-better.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from foresight.errors import ForesightError
from foresight.evals.results import COUNTS, _fmt, _is_pct

# (task, metric) -> "higher" | "lower"; task None means every task. Only the lower-is-better ones need naming.
DIRECTIONS: dict[tuple[str | None, str], str] = {
    (None, "ece"): "lower",
    (None, "ece_top"): "lower",
    (None, "bits_per_byte"): "lower",
    (None, "nats_per_token"): "lower",
    (None, "empty_replies"): "lower",
    ("over_refusal", "refusal_rate"): "lower",
}
SKIPPED = ("bytes", "tokens")  # the size of the text scored, not a behaviour
MAX_GROUPS_SHOWN = 12  # tasks with more groups (MMLU's 57 subjects) keep their group rows in report.json only
NOISE_SIGMAS = 2.0  # a change is "beyond noise" when |delta| > 2 * sqrt(stderr_before^2 + stderr_after^2)


def direction(task: str, metric: str, declared: dict | None = None) -> str:
    """"higher" or "lower": the results file's own word if it has one, else DIRECTIONS, else higher."""
    if declared and declared.get(metric) in ("higher", "lower"):
        return declared[metric]
    return DIRECTIONS.get((task, metric)) or DIRECTIONS.get((None, metric)) or "higher"


@dataclass
class Row:
    task: str
    metric: str
    group: str | None  # None: the task's overall value
    before: float | int | None  # None: not in the before file
    after: float | int | None
    delta: float | int | None  # after - before, where both exist
    better: str  # "higher" or "lower": which way is an improvement
    improved: bool | None  # None: unchanged, or in one file only
    verdict: str  # "better", "worse", "same", "before only" or "after only"
    beyond_noise: bool | None  # None: no standard errors to judge by
    before_stderr: float | None = None
    after_stderr: float | None = None
    n_before: int | None = None
    n_after: int | None = None


def _metrics(table: dict) -> dict:
    return {m: v for m, v in table.items()
            if m != "n" and not m.endswith("_stderr") and m not in SKIPPED and isinstance(v, (int, float))
            and not isinstance(v, bool)}


def _row(task: str, metric: str, group: str | None, b: dict | None, a: dict | None, declared: dict,
         n_b: int | None, n_a: int | None) -> Row:
    vb = b.get(metric) if b is not None else None
    va = a.get(metric) if a is not None else None
    better = direction(task, metric, declared)
    seb = b.get(f"{metric}_stderr") if b is not None else None
    sea = a.get(f"{metric}_stderr") if a is not None else None
    if vb is None or va is None or any(isinstance(v, float) and math.isnan(v) for v in (vb, va)):
        delta, improved, noise = None, None, None
        verdict = "before only" if va is None and vb is not None else "after only" if vb is None else "n/a"
    else:
        delta = va - vb
        if isinstance(delta, float):
            delta = round(delta, 12)  # 0.3 - 0.1 is not 0.2 in floating point; keep the table's zeroes zero
        improved = None if delta == 0 else (delta > 0) == (better == "higher")
        verdict = "same" if improved is None else "better" if improved else "worse"
        noise = None
        if seb is not None and sea is not None and not (math.isnan(seb) or math.isnan(sea)):
            noise = abs(delta) > NOISE_SIGMAS * math.hypot(seb, sea)
    return Row(task, metric, group, vb, va, delta, better, improved, verdict, noise, seb, sea, n_b, n_a)


def compare(before: dict, after: dict) -> list[Row]:
    """Every (task, metric) and (task, metric, group) in either results file, compared: tasks in the before file's
    order, then the after file's own; each task's overall metrics first, then its groups in sorted order."""
    rows = []
    names = list(before["tasks"]) + [t for t in after["tasks"] if t not in before["tasks"]]
    for name in names:
        tb, ta = before["tasks"].get(name), after["tasks"].get(name)
        declared = {**(tb or {}).get("better", {}), **(ta or {}).get("better", {})}
        mb = _metrics(tb["metrics"]) if tb else {}
        ma = _metrics(ta["metrics"]) if ta else {}
        for metric in list(mb) + [m for m in ma if m not in mb]:
            rows.append(_row(name, metric, None, tb["metrics"] if tb else None, ta["metrics"] if ta else None,
                             declared, tb.get("n") if tb else None, ta.get("n") if ta else None))
        gb, ga = (tb or {}).get("groups") or {}, (ta or {}).get("groups") or {}
        for group in sorted(set(gb) | set(ga), key=str):
            b, a = gb.get(group), ga.get(group)
            for metric in list(_metrics(b or {})) + [m for m in _metrics(a or {}) if m not in _metrics(b or {})]:
                rows.append(_row(name, metric, str(group), b, a, declared, (b or {}).get("n"), (a or {}).get("n")))
    return rows


# ----- reading --------------------------------------------------------------------------------------------------------


def _read(path) -> dict:
    from foresight.evals.results import read_results

    path = Path(path)
    if path.is_dir():
        raise ForesightError(f"{path} is a directory: give the results file `foresight eval --out` wrote "
                             f"(e.g. {path / 'results.json'})")
    try:
        results = read_results(path)
    except UnicodeDecodeError:
        raise ForesightError(f"{path}: not a results.json written by `foresight eval` (not text)") from None
    if not results["tasks"]:
        raise ForesightError(f"{path}: holds no task results (its 'tasks' table is empty)")
    for name, task in results["tasks"].items():
        if not isinstance(task, dict) or not isinstance(task.get("metrics"), dict):
            raise ForesightError(f"{path}: task {name!r} has no 'metrics' table: not a results.json written by "
                                 f"`foresight eval`")
    return results


# ----- text and Markdown ----------------------------------------------------------------------------------------------


def _show(value, metric: str) -> str:
    if value is None:
        return "-"
    return _fmt(value, _is_pct(metric) and metric not in COUNTS)


def _show_delta(row: Row) -> str:
    if row.delta is None:
        return "-"
    if isinstance(row.delta, int) and not isinstance(row.delta, bool):
        return f"{row.delta:+d}"
    return f"{row.delta * 100:+.2f}" if _is_pct(row.metric) else f"{row.delta:+.4f}"


def _metric_label(row: Row) -> str:
    return row.metric + (" (%)" if _is_pct(row.metric) and row.metric not in COUNTS else "")


def _verdict_label(row: Row) -> str:
    if row.verdict in ("better", "worse") and row.beyond_noise is False:
        return f"{row.verdict} (within noise)"
    return row.verdict


def _shown_rows(rows: list[Row]) -> tuple[list[Row], dict[str, int]]:
    """The rows of the tables, and {task: its number of groups} for tasks whose groups are left to report.json."""
    groups: dict[str, set] = {}
    for r in rows:
        if r.group is not None:
            groups.setdefault(r.task, set()).add(r.group)
    hidden = {t: len(g) for t, g in groups.items() if len(g) > MAX_GROUPS_SHOWN}
    return [r for r in rows if r.group is None or r.task not in hidden], hidden


def _cells(rows: list[Row], labels: tuple[str, str]) -> tuple[tuple, list[tuple]]:
    header = ("task", "group", "metric", labels[0], labels[1], f"{labels[1]} - {labels[0]}", "better", "change")
    body = []
    for r in rows:
        n = f"  (n {r.n_before} vs {r.n_after})" if r.n_before is not None and r.n_after is not None and \
            r.group is None and r.n_before != r.n_after else ""
        body.append((r.task, r.group or "", _metric_label(r), _show(r.before, r.metric), _show(r.after, r.metric),
                     _show_delta(r), r.better, _verdict_label(r) + n))
    return header, body


def _text_table(header: tuple, body: list[tuple]) -> str:
    widths = [max(len(str(c[i])) for c in [header, *body]) for i in range(len(header))]
    numeric = {3, 4, 5}
    line = lambda cells: "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(c) for c in body])


def _md_table(header: tuple, body: list[tuple]) -> str:
    esc = lambda c: str(c).replace("|", "\\|") or " "
    align = ["---" if i not in (3, 4, 5) else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(esc(c) for c in header) + " |", "| " + " | ".join(align) + " |"]
    return "\n".join(lines + ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in body])


def _tally(rows: list[Row]) -> str:
    both = [r for r in rows if r.verdict in ("better", "worse", "same")]
    count = lambda v: sum(r.verdict == v for r in both)
    clear = lambda v: sum(r.verdict == v and bool(r.beyond_noise) for r in both)
    return (f"{len(both)} compared: {count('better')} better ({clear('better')} beyond noise), {count('worse')} worse "
            f"({clear('worse')} beyond noise), {count('same')} unchanged")


# ----- figures --------------------------------------------------------------------------------------------------------


def _behaviour_figure(rows: list[Row], labels: tuple[str, str], path: Path, title: str) -> Path | None:
    """Grouped bars, one panel per task (a rate panel in %, another for any other scale), of the rows shown in the
    table that both files have; counts are left to the table. None when there is nothing to draw."""
    panels: dict[tuple[str, bool], list[Row]] = {}
    for r in rows:
        if r.delta is None or r.metric in COUNTS:  # in one file only (or NaN), or a count
            continue
        panels.setdefault((r.task, _is_pct(r.metric)), []).append(r)
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [len(p) for p in panels.values()]
    fig, axes = plt.subplots(1, len(panels), figsize=(min(2.2 + 0.75 * sum(sizes) + 0.6 * len(panels), 40), 4.6),
                             dpi=130, gridspec_kw={"width_ratios": [s + 0.8 for s in sizes]}, squeeze=False)
    colours = ("#9a9a9a", "#3b75af")
    width = 0.38
    for ax, ((task, pct), members) in zip(axes[0], panels.items()):
        scale = 100 if pct else 1
        xs = range(len(members))
        for k, (label, colour) in enumerate(zip(labels, colours)):
            values = [(r.before if k == 0 else r.after) * scale for r in members]
            ax.bar([x + (k - 0.5) * width for x in xs], values, width=width, color=colour, label=label)
        top = max(max(r.before, r.after) * scale for r in members)
        for x, r in zip(xs, members):
            colour = "#2e8b57" if r.improved else "#c0392b" if r.improved is False else "#555555"
            text = _show_delta(r) + ("" if r.beyond_noise is not False or r.improved is None else "?")
            ax.text(x, max(r.before, r.after) * scale + 0.02 * (top or 1), text, ha="center", va="bottom",
                    fontsize=7, color=colour)
        # group bars are named by their group, and by their metric too where the task's groups have several
        group_metrics = sorted({r.metric for r in members if r.group is not None})
        names = [(r.metric if r.group is None else r.group if len(group_metrics) == 1 else f"{r.group}: {r.metric}")
                 + (" ↓" if r.better == "lower" else "") for r in members]
        ax.set_xticks(list(xs))
        long = max(len(n) for n in names) > 8 and len(names) > 1
        ax.set_xticklabels(names, rotation=30 if long else 0, ha="right" if long else "center", fontsize=8)
        first_group = next((x for x, r in zip(xs, members) if r.group is not None), None)
        if first_group:
            ax.axvline(first_group - 0.5, color="#bbbbbb", lw=0.8)
        ax.set_title(task + (f" (by group: {', '.join(group_metrics)})" if group_metrics else ""), fontsize=9)
        if pct:
            ax.set_ylim(0, max(110, top * 1.15))
            ax.set_ylabel("%")
        else:
            ax.set_ylim(0, (top or 1) * 1.18)
        ax.grid(axis="y", alpha=0.25)
        ax.set_axisbelow(True)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, frameon=False, loc="upper left", ncol=1)
    fig.suptitle(f"{title}\n↓: lower is better (others: higher); above each pair: {labels[1]} - {labels[0]}, "
                 f"green better, red worse, ? within noise (2 s.e.)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _calibrated(task: dict) -> list[dict] | None:
    """The per-item records of a task with choice probabilities and calibration (MMLU), else None."""
    if "calibration" not in task and "ece" not in task.get("metrics", {}):
        return None
    items = task.get("items")
    if not isinstance(items, list) or not items or not all(
            isinstance(r, dict) and isinstance(r.get("probs"), list) and isinstance(r.get("answer"), int)
            and "correct" in r for r in items):
        return None
    return items


# ----- the report -----------------------------------------------------------------------------------------------------


def write_report(before_path, after_path, out_dir, labels: tuple[str, str] = ("before", "after")) -> str:
    """Compare two `foresight eval` results files; write OUT_DIR/report.md, report.json, behaviour.png and (when
    both files have a calibrated task with per-item records) calibration.png. Returns the terminal summary: the
    table, what is in one file only, a tally, the ECE before and after, and the files written."""
    from foresight.evals.calibration import calibration, reliability_diagrams

    labels = tuple(str(x).strip() for x in labels)
    if len(labels) != 2 or not all(labels) or labels[0] == labels[1]:
        raise ForesightError(f"labels must be two different names, not {labels!r}")
    before_path, after_path, out = Path(before_path), Path(after_path), Path(out_dir)
    before, after = _read(before_path), _read(after_path)
    common = [t for t in before["tasks"] if t in after["tasks"]]
    if not common:
        raise ForesightError(f"{before_path} and {after_path} have no task in common ({before_path}: "
                             f"{', '.join(before['tasks'])}; {after_path}: {', '.join(after['tasks'])})")
    if out.exists() and not out.is_dir():
        raise ForesightError(f"--out {out} is a file: give a directory to write the report in")
    out.mkdir(parents=True, exist_ok=True)

    rows = compare(before, after)
    shown, hidden = _shown_rows(rows)
    model = lambda r: r.get("model", {}).get("spec") or "?"
    heads = [f"{labels[0]}: {before_path} ({model(before)})", f"{labels[1]}: {after_path} ({model(after)})"]
    notes = []
    only_b = [t for t in before["tasks"] if t not in after["tasks"]]
    only_a = [t for t in after["tasks"] if t not in before["tasks"]]
    if only_b:
        notes.append(f"in {labels[0]} only: {', '.join(only_b)}")
    if only_a:
        notes.append(f"in {labels[1]} only: {', '.join(only_a)}")
    for task in common:
        tb, ta = before["tasks"][task], after["tasks"][task]
        differ = [f"{key} {tb.get(key)} vs {ta.get(key)}" for key in ("n", "shots") if tb.get(key) != ta.get(key)]
        if differ:
            notes.append(f"{task}: {', '.join(differ)}: not the same evaluation, compare with care")
    for task, n in hidden.items():
        notes.append(f"{task}: {n} groups, in report.json (not shown)")
    notes.append(_tally(rows))
    notes.append("rates in %, changes in points; \"within noise\": |change| <= 2 x the combined standard error "
                 "(independent errors assumed; the same items make it conservative)")

    # Figure 8: every calibrated task in both files, recomputed from the per-item records.
    panels, cal_json = [], {}
    for task in common:
        rb, ra = _calibrated(before["tasks"][task]), _calibrated(after["tasks"][task])
        if rb is None or ra is None:
            if (rb is None) != (ra is None):
                which = before_path if rb is None else after_path
                notes.append(f"{task}: no per-item choice probabilities in {which}: no calibration figure")
            continue
        cb, ca = calibration(rb), calibration(ra)
        cal_json[task] = {labels[0]: {"ece": cb["ece"], "ece_top": cb["ece_top"], "n": len(rb), "bins": cb["bins"]},
                          labels[1]: {"ece": ca["ece"], "ece_top": ca["ece_top"], "n": len(ra), "bins": ca["bins"]}}
        if {r.get("id") for r in rb} != {r.get("id") for r in ra}:
            notes.append(f"{task}: the two files scored different questions; the calibration panels are not on "
                         f"the same items")
        notes.append(f"calibration ({task}, every choice of every question, {len(cb['bins'])} bins): ECE "
                     f"{cb['ece'] * 100:.2f}% -> {ca['ece'] * 100:.2f}%")
        panels += [(cb, f"{labels[0]}: {task}, {len(rb)} questions"), (ca, f"{labels[1]}: {task}, {len(ra)} questions")]

    files = {}
    title = f"{labels[0]}: {model(before)}   vs   {labels[1]}: {model(after)}"
    if _behaviour_figure(shown, labels, out / "behaviour.png", title):
        files["behaviour"] = "behaviour.png"
    else:
        notes.append("no metric to draw in both files: behaviour.png not written")
    if panels:
        reliability_diagrams(panels, out / "calibration.png",
                             f"Calibration before and after (GPT-4 report, Figure 8, at our scale)\n{title}",
                             columns=2)
        files["calibration"] = "calibration.png"
    else:
        notes.append("no calibrated task with per-item records in both files: calibration.png not written")

    header, body = _cells(shown, labels)
    text = "\n".join(heads + ["", _text_table(header, body), ""] + notes)
    md = [f"# Before/after report: {labels[0]} vs {labels[1]}", "", *[f"- {h}" for h in heads], "",
          _md_table(header, body), "", *[f"- {n}" for n in notes], ""]
    if "behaviour" in files:
        md += ["![behaviour metrics before and after](behaviour.png)", ""]
    if "calibration" in files:
        md += ["![calibration before and after (Figure 8)](calibration.png)", ""]
    (out / "report.md").write_text("\n".join(md))
    files["markdown"] = "report.md"
    files["json"] = "report.json"
    report = {"labels": list(labels),
              "before": {"path": str(before_path), "model": before.get("model"), "created": before.get("created")},
              "after": {"path": str(after_path), "model": after.get("model"), "created": after.get("created")},
              "only_before": only_b, "only_after": only_a, "rows": [asdict(r) for r in rows],
              "calibration": cal_json, "notes": notes, "files": files}
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    written = ", ".join(str(out / f) for f in ("report.md", "report.json", *(files[k] for k in ("behaviour",
                                                                                                "calibration")
                                                                           if k in files)))
    return f"{text}\nwrote {written}"

