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


def reliability_diagram(summary: dict, path: Path, title: str) -> Path:
    """A PNG: per confidence bin, the fraction right (bars) against the diagonal of perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in summary["bins"] if b["count"]]
    fig, ax = plt.subplots(figsize=(4.8, 4.6), dpi=150)
    width = 1 / N_BINS
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
    ax.set_title(title, fontsize=10)
    ax.text(0.04, 0.93, f"ECE: {summary['ece'] * 100:.1f}%", transform=ax.transAxes, fontsize=10)
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
