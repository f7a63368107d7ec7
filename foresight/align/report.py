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
from foresight.files import jsonl_objects
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


def _cells(table: list[tuple], stages: list["Stage"], edges: list[tuple[int, int]]) -> tuple[tuple, list[tuple]]:
    """The table's header and rows: each stage's value, then each comparison's change and verdict. `table` holds
    (key, {edge: Row}) for every shown key, in order."""
    labels = [s.label for s in stages]
    deltas = [f"{labels[c]} - {labels[p]}" for p, c in edges]
    verdicts = ["change"] if len(edges) == 1 else [f"{labels[c]} vs {labels[p]}" for p, c in edges]
    header = ("task", "group", "metric", *labels, *deltas, "better", *verdicts)
    body = []
    for (task, metric, group), by_edge in table:
        first = next(iter(by_edge.values()))
        values = [_show(_value(s.results, task, metric, group), metric) for s in stages]
        shown_deltas, shown_verdicts = [], []
        for edge in edges:
            r = by_edge[edge]
            n = f"  (n {r.n_before} vs {r.n_after})" if r.n_before is not None and r.n_after is not None and \
                r.group is None and r.n_before != r.n_after else ""
            shown_deltas.append(_show_delta(r))
            shown_verdicts.append(_verdict_label(r) + n)
        body.append((task, group or "", _metric_label(first), *values, *shown_deltas, first.better, *shown_verdicts))
    return header, body


def _text_table(header: tuple, body: list[tuple], numeric: set[int]) -> str:
    widths = [max(len(str(c[i])) for c in [header, *body]) for i in range(len(header))]
    line = lambda cells: "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(c) for c in body])


def _md_table(header: tuple, body: list[tuple], numeric: set[int]) -> str:
    esc = lambda c: str(c).replace("|", "\\|") or " "
    align = ["---" if i not in numeric else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(esc(c) for c in header) + " |", "| " + " | ".join(align) + " |"]
    return "\n".join(lines + ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in body])


def _tally(rows: list[Row]) -> str:
    both = [r for r in rows if r.verdict in ("better", "worse", "same")]
    count = lambda v: sum(r.verdict == v for r in both)
    clear = lambda v: sum(r.verdict == v and bool(r.beyond_noise) for r in both)
    return (f"{len(both)} compared: {count('better')} better ({clear('better')} beyond noise), {count('worse')} worse "
            f"({clear('worse')} beyond noise), {count('same')} unchanged")


# ----- figures --------------------------------------------------------------------------------------------------------


COLOURS = ("#9a9a9a", "#3b75af", "#e08a2c", "#4f9a5a", "#8e5ea2", "#c0504d")


def _behaviour_figure(table: list[tuple], stages: list["Stage"], edges: list[tuple[int, int]], path: Path,
                      title: str) -> Path | None:
    """Grouped bars, one bar per stage and one panel per task (a rate panel in %, another for any other scale), of
    the table's rows every stage has; above each compared stage's bar its change from the stage it started from.
    Counts are left to the table. None when there is nothing to draw."""
    panels: dict[tuple[str, bool], list[tuple]] = {}
    for key, by_edge in table:
        task, metric, group = key
        values = [_value(s.results, task, metric, group) for s in stages]
        if metric in COUNTS or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            continue
        panels.setdefault((task, _is_pct(metric)), []).append((key, values, by_edge))
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(stages)
    sizes = [len(p) for p in panels.values()]
    fig, axes = plt.subplots(1, len(panels), figsize=(min(2.2 + (0.375 * k) * sum(sizes) + 0.6 * len(panels), 40),
                                                      4.6), dpi=130,
                             gridspec_kw={"width_ratios": [s + 0.8 for s in sizes]}, squeeze=False)
    width = 0.76 / k
    offset = lambda j: (j - (k - 1) / 2) * width
    for ax, ((task, pct), members) in zip(axes[0], panels.items()):
        scale = 100 if pct else 1
        xs = range(len(members))
        for j, stage in enumerate(stages):
            ax.bar([x + offset(j) for x in xs], [values[j] * scale for _, values, _ in members], width=width,
                   color=COLOURS[j % len(COLOURS)], label=stage.label)
        top = max(max(values) * scale for _, values, _ in members)
        for x, (_, values, by_edge) in zip(xs, members):
            for parent, child in edges:
                r = by_edge[(parent, child)]
                colour = "#2e8b57" if r.improved else "#c0392b" if r.improved is False else "#555555"
                text = _show_delta(r) + ("" if r.beyond_noise is not False or r.improved is None else "?")
                where = x + (offset(child) if k > 2 else 0.0)
                ax.text(where, values[child] * scale + 0.02 * (top or 1), text, ha="center", va="bottom",
                        fontsize=7 if k == 2 else 5.5, color=colour, rotation=0 if k == 2 else 90)
        # group bars are named by their group, and by their metric too where the task's groups have several
        group_metrics = sorted({key[1] for key, _, _ in members if key[2] is not None})
        names = [(metric if group is None else group if len(group_metrics) == 1 else f"{group}: {metric}")
                 + (" ↓" if by_edge[edges[0]].better == "lower" else "")
                 for (_, metric, group), _, by_edge in members]
        ax.set_xticks(list(xs))
        long = max(len(n) for n in names) > 8 and len(names) > 1
        ax.set_xticklabels(names, rotation=30 if long else 0, ha="right" if long else "center", fontsize=8)
        first_group = next((x for x, (key, _, _) in zip(xs, members) if key[2] is not None), None)
        if first_group:
            ax.axvline(first_group - 0.5, color="#bbbbbb", lw=0.8)
        ax.set_title(task + (f" (by group: {', '.join(group_metrics)})" if group_metrics else ""), fontsize=9)
        if pct:
            ax.set_ylim(0, max(110 if k == 2 else 120, top * (1.15 if k == 2 else 1.3)))
            ax.set_ylabel("%")
        else:
            ax.set_ylim(0, (top or 1) * (1.18 if k == 2 else 1.35))
        ax.grid(axis="y", alpha=0.25)
        ax.set_axisbelow(True)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, frameon=False, loc="upper left", ncol=1)
    changes = ", ".join(f"{stages[c].label} - {stages[p].label}" for p, c in edges)
    fig.suptitle(f"{title}\n↓: lower is better (others: higher); above each bar: {changes}, "
                 f"green better, red worse, ? within noise (2 s.e.)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# What the training curves figure draws from a run's metrics.jsonl: (panel title, does a key belong in it).
CURVE_PANELS = (
    ("training loss", lambda key: key == "train_loss"),
    ("reward per reply (mean; each source)", lambda key: key == "score" or key.startswith("score/")),
    ("KL to the reference (nats per reply)", lambda key: key == "kl"),
    ("refusal rate of the held-out probe", lambda key: key.startswith("probe_refusal_rate/")),
    ("held-out preference accuracy", lambda key: key == "acc"),
    ("held-out loss", lambda key: key == "val_loss"),
)


def _read_curves(run: Path) -> list[dict]:
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise ForesightError(f"--runs {run}: no metrics.jsonl (give a run directory written by foresight align)")
    rows = [row for _, row in jsonl_objects(path, 'a metrics row with "step"') if isinstance(row.get("step"), int)]
    if not rows:
        raise ForesightError(f"{path}: no metrics rows")
    return rows


def _curves_figure(curves: list[tuple[str, list[dict]]], path: Path) -> dict[str, list[str]] | None:
    """Training curves of the runs, one panel per CURVE_PANELS entry any run has (loss; PPO's reward by source, KL
    and probe refusal rates; DPO's and the reward model's held-out accuracy and loss) against the optimizer step.
    `curves` holds (run name, its metrics rows). Returns {panel: the series drawn}, or None when no run has any."""
    drawn: dict[str, list[tuple[str, list[int], list[float]]]] = {}
    for title, wanted in CURVE_PANELS:
        for name, rows in curves:
            keys = sorted({k for r in rows for k in r if wanted(k)})
            for key in keys:
                points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
                if points:
                    label = f"{name}: {key}" if len(keys) > 1 or len(curves) > 1 else name
                    drawn.setdefault(title, []).append((label, [p[0] for p in points], [p[1] for p in points]))
    if not drawn:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(drawn))
    rows_n = -(-len(drawn) // columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(5.2 * columns, 3.6 * rows_n), dpi=130, squeeze=False)
    for ax in axes.flat[len(drawn):]:
        ax.set_visible(False)
    for ax, (title, series) in zip(axes.flat, drawn.items()):
        for label, steps, values in series:
            ax.plot(steps, values, marker="o" if len(steps) < 40 else None, ms=2.5, lw=1.2, label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=6.5, frameon=False)
    fig.suptitle("Training curves: " + ", ".join(name for name, _ in curves), fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return {title: [label for label, _, _ in series] for title, series in drawn.items()}


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


@dataclass
class Stage:
    label: str
    path: Path
    results: dict
    started_from: int | None  # the index of the stage it is compared with (None: the first)


def _value(results: dict, task: str, metric: str, group: str | None):
    table = results["tasks"].get(task)
    if table is None:
        return None
    if group is not None:
        table = (table.get("groups") or {}).get(group)
        return None if table is None else table.get(metric)
    return table["metrics"].get(metric)


def _stages(paths: list, labels, started_from) -> list[Stage]:
    """The stages in order, each with its results and the stage it started from: the previous one, unless
    `started_from` names (by label) the stage each one after the first started from."""
    if len(paths) < 2:
        raise ForesightError("give at least two results files (the model before a stage and after it)")
    labels = [str(x).strip() for x in (labels or (("before", "after") if len(paths) == 2 else
                                                  [f"stage {i + 1}" for i in range(len(paths))]))]
    if len(labels) != len(paths) or not all(labels) or len(set(labels)) != len(labels):
        raise ForesightError(f"labels must be {len(paths)} different names, one per results file, not {labels!r}")
    parents = [None] + list(range(len(paths) - 1))
    if started_from is not None:
        started_from = [str(x).strip() for x in started_from]
        if len(started_from) != len(paths) - 1:
            raise ForesightError(f"--started-from needs {len(paths) - 1} labels, the stage each results file after "
                                 f"the first started from, not {len(started_from)}")
        parents = [None]
        for i, name in enumerate(started_from, 1):
            if name not in labels[:i]:
                raise ForesightError(f"--started-from: stage {labels[i]!r} cannot start from {name!r}: name an "
                                     f"earlier stage ({', '.join(labels[:i])})")
            parents.append(labels.index(name))
    return [Stage(label, Path(path), _read(path), parent) for label, path, parent in zip(labels, paths, parents)]


def write_report(paths: list, out_dir, labels=None, started_from=None, runs=()) -> str:
    """Compare `foresight eval` results files of successive stages (base -> SFT -> PPO ...; each with the stage it
    started from: the previous one, or the one `started_from` names); write OUT_DIR/report.md, report.json,
    behaviour.png, calibration.png (when every stage has a calibrated task with per-item records) and, for
    `runs` (training run directories), curves.png. Returns the terminal summary: the table, what some files lack,
    a tally per comparison, the ECE of each stage, and the files written."""
    from foresight.evals.calibration import calibration, reliability_diagrams

    stages = _stages(list(paths), labels, started_from)
    out = Path(out_dir)
    curves = [(Path(run).name, _read_curves(run)) for run in runs]  # refused before anything is written
    common = [t for t in stages[0].results["tasks"] if all(t in s.results["tasks"] for s in stages[1:])]
    if not common:
        listing = "; ".join(f"{s.path}: {', '.join(s.results['tasks'])}" for s in stages)
        raise ForesightError(f"{' and '.join(str(s.path) for s in stages)} have no task in common ({listing})")
    if out.exists() and not out.is_dir():
        raise ForesightError(f"--out {out} is a file: give a directory to write the report in")
    out.mkdir(parents=True, exist_ok=True)

    edges = [(s.started_from, i) for i, s in enumerate(stages) if s.started_from is not None]
    compared = {edge: compare(stages[edge[0]].results, stages[edge[1]].results) for edge in edges}
    keys: dict[tuple, dict] = {}
    for edge, rows in compared.items():
        for r in rows:
            keys.setdefault((r.task, r.metric, r.group), {})[edge] = r
    table = [(key, by_edge) for key, by_edge in keys.items() if len(by_edge) == len(edges)]
    shown_rows, hidden = _shown_rows([by_edge[edges[0]] for _, by_edge in table])
    shown_keys = {(r.task, r.metric, r.group) for r in shown_rows}
    table = [(key, by_edge) for key, by_edge in table if key in shown_keys]
    labels = [s.label for s in stages]
    model = lambda r: r.get("model", {}).get("spec") or "?"
    heads = [f"{s.label}: {s.path} ({model(s.results)})" +
             (f", from {labels[s.started_from]}" if len(stages) > 2 and s.started_from is not None else "")
             for s in stages]
    notes = []
    if len(stages) == 2:
        for s in stages:
            missing = [t for t in s.results["tasks"] if t not in common]
            if missing:
                notes.append(f"in {s.label} only: {', '.join(missing)}")
    else:
        for task in dict.fromkeys(t for s in stages for t in s.results["tasks"] if t not in common):
            lacking = [s.label for s in stages if task not in s.results["tasks"]]
            notes.append(f"{task}: not in {', '.join(lacking)}")
    for task in common:
        for p, c in edges:
            tb, ta = stages[p].results["tasks"][task], stages[c].results["tasks"][task]
            differ = [f"{key} {tb.get(key)} vs {ta.get(key)}" for key in ("n", "shots") if tb.get(key) != ta.get(key)]
            if differ:
                notes.append(f"{task} ({labels[p]} vs {labels[c]}): {', '.join(differ)}: not the same evaluation, "
                             f"compare with care")
    for task, n in hidden.items():
        notes.append(f"{task}: {n} groups, in report.json (not shown)")
    for edge in edges:
        rows = [r for r in compared[edge] if (r.task, r.metric, r.group) in keys]
        prefix = "" if len(edges) == 1 else f"{labels[edge[1]]} vs {labels[edge[0]]}: "
        notes.append(prefix + _tally(rows))
    notes.append("rates in %, changes in points; \"within noise\": |change| <= 2 x the combined standard error "
                 "(independent errors assumed; the same items make it conservative)")

    # Figure 8: every calibrated task in every file, recomputed from the per-item records.
    panels, cal_json = [], {}
    for task in common:
        records = [_calibrated(s.results["tasks"][task]) for s in stages]
        if any(r is None for r in records):
            if not all(r is None for r in records):
                lacking = ", ".join(str(s.path) for s, r in zip(stages, records) if r is None)
                notes.append(f"{task}: no per-item choice probabilities in {lacking}: no calibration figure")
            continue
        cals = [calibration(r) for r in records]
        cal_json[task] = {s.label: {"ece": c["ece"], "ece_top": c["ece_top"], "n": len(r), "bins": c["bins"]}
                          for s, c, r in zip(stages, cals, records)}
        if any({x.get("id") for x in r} != {x.get("id") for x in records[0]} for r in records[1:]):
            notes.append(f"{task}: the files scored different questions; the calibration panels are not on "
                         f"the same items")
        notes.append(f"calibration ({task}, every choice of every question, {len(cals[0]['bins'])} bins): ECE "
                     + " -> ".join(f"{c['ece'] * 100:.2f}%" for c in cals)
                     + (f" ({', '.join(labels)})" if len(stages) > 2 else ""))
        panels += [(c, f"{s.label}: {task}, {len(r)} questions") for s, c, r in zip(stages, cals, records)]

    files = {}
    title = "   vs   ".join(f"{s.label}: {model(s.results)}" for s in stages)
    if _behaviour_figure(table, stages, edges, out / "behaviour.png", title):
        files["behaviour"] = "behaviour.png"
    else:
        notes.append("no metric to draw in every file: behaviour.png not written")
    if panels:
        reliability_diagrams(panels, out / "calibration.png",
                             f"Calibration before and after (GPT-4 report, Figure 8, at our scale)\n{title}",
                             columns=len(stages))
        files["calibration"] = "calibration.png"
    else:
        notes.append("no calibrated task with per-item records in every file: calibration.png not written")
    drawn = _curves_figure(curves, out / "curves.png") if curves else None
    if drawn:
        files["curves"] = "curves.png"
    elif runs:
        notes.append("no training curve in the runs' metrics: curves.png not written")

    header, body = _cells(table, stages, edges)
    numeric = set(range(3, 3 + len(stages) + len(edges)))
    text = "\n".join(heads + ["", _text_table(header, body, numeric), ""] + notes)
    md = [f"# Before/after report: {' vs '.join(labels)}", "", *[f"- {h}" for h in heads], "",
          _md_table(header, body, numeric), "", *[f"- {n}" for n in notes], ""]
    for key, what in (("behaviour", "behaviour metrics of each stage"), ("calibration", "calibration of each stage "
                      "(Figure 8)"), ("curves", "training curves")):
        if key in files:
            md += [f"![{what}]({files[key]})", ""]
    (out / "report.md").write_text("\n".join(md))
    files["markdown"] = "report.md"
    files["json"] = "report.json"
    stage_json = lambda s: {"path": str(s.path), "model": s.results.get("model"), "created": s.results.get("created")}
    report = {"labels": labels,
              "stages": [{"label": s.label, **stage_json(s),
                          "started_from": None if s.started_from is None else labels[s.started_from]}
                         for s in stages],
              "comparisons": [{"stage": labels[c], "from": labels[p], "rows": [asdict(r) for r in compared[(p, c)]]}
                              for p, c in edges],
              "calibration": cal_json, "runs": [str(r) for r in runs], "curves": drawn, "notes": notes,
              "files": files}
    if len(stages) == 2:  # the two-file report's own keys
        report |= {"before": stage_json(stages[0]), "after": stage_json(stages[1]),
                   "only_before": [t for t in stages[0].results["tasks"] if t not in common],
                   "only_after": [t for t in stages[1].results["tasks"] if t not in common],
                   "rows": report["comparisons"][0]["rows"]}
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    written = ", ".join(str(out / f) for f in ("report.md", "report.json", *(files[k] for k in (
        "behaviour", "calibration", "curves") if k in files)))
    return f"{text}\nwrote {written}"
