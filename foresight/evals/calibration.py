"""Calibration of multiple-choice answers, in the manner of the GPT-4 report's calibration figure (Figure 8).

The report bins "the model's confidence (logprob) in each of the A/B/C/D choices for each question" and plots, per
bin, the fraction of those choices that were right. So every choice of every question is one prediction: its
probability (a softmax over the choices' log-likelihoods) against whether it is the answer. A model that says 30%
should be right 30% of the time. We report that ECE ("ece", 15 equal-width bins, the figure's) and also the more
common one over each question's top choice only ("ece_top").
"""

from __future__ import annotations

from pathlib import Path

from foresight.evals.metrics import calibration_bins, expected_calibration_error

N_BINS = 15


def choice_predictions(records: list[dict]) -> tuple[list[float], list[bool]]:
    """(probability, is the answer) for every choice of every item."""
    conf, hit = [], []
    for r in records:
        for i, p in enumerate(r["probs"]):
            conf.append(p)
            hit.append(i == r["answer"])
    return conf, hit


def calibration(records: list[dict]) -> dict:
    conf, hit = choice_predictions(records)
    top = [max(r["probs"]) for r in records]
    top_hit = [r["correct"] for r in records]
    return {"ece": expected_calibration_error(conf, hit, N_BINS),
            "ece_top": expected_calibration_error(top, top_hit, N_BINS),
            "bins": calibration_bins(conf, hit, N_BINS)}


def draw_reliability(ax, summary: dict, title: str, ece_in_title: bool = False) -> None:
    """One reliability diagram on `ax`: per confidence bin, the fraction right (bars, with the bin's count above)
    against the diagonal of perfect calibration, and the ECE (in the corner, or on the title's second line)."""
    bins = [b for b in summary["bins"] if b["count"]]
    width = 1 / len(summary["bins"]) if summary["bins"] else 1 / N_BINS
    ax.bar([b["low"] + width / 2 for b in bins], [b["accuracy"] for b in bins], width=width * 0.92,
           color="#3b75af", edgecolor="white", label="fraction right")
    ax.plot([0, 1], [0, 1], "--", color="#9a9a9a", lw=1.2, label="perfect calibration")
    for b in bins:
        ax.text(b["low"] + width / 2, b["accuracy"] + 0.012, str(b["count"]), ha="center", va="bottom", fontsize=5.5,
                color="#555555")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("P(answer)")
    ax.set_ylabel("P(correct)")
    ece = f"ECE: {summary['ece'] * 100:.1f}%"
    if ece_in_title:
        ax.set_title(f"{title}\n{ece}", fontsize=10)
    else:
        ax.set_title(title, fontsize=10)
        ax.text(0.04, 0.93, ece, transform=ax.transAxes, fontsize=10)
    ax.legend(loc="upper left" if ece_in_title else "lower right", fontsize=7, frameon=False)
    ax.grid(alpha=0.25)


def reliability_diagrams(panels: list[tuple[dict, str]], path: Path, title: str | None = None,
                         columns: int | None = None) -> Path:
    """A PNG of reliability diagrams side by side (`columns` to a row; default all in one), one per (calibration
    summary, panel title), the ECE in each panel's title: the GPT-4 report's Figure 8 lays out the pre-trained and
    the post-trained model so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = columns or len(panels)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 4.9 * rows), dpi=150, sharey=True,
                             squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (summary, name) in zip(axes.flat, panels):
        draw_reliability(ax, summary, name, ece_in_title=True)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def reliability_diagram(summary: dict, path: Path, title: str) -> Path:
    """A PNG of one reliability diagram (`foresight eval` writes one per calibrated task)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.6), dpi=150)
    draw_reliability(ax, summary, title)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
