"""Metrics over per-item results: accuracy with its standard error, expected calibration error, bits per byte.

Plain numpy on lists; nothing here knows about models or tasks.
"""

from __future__ import annotations

import math

import numpy as np


def mean_stderr(values) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n); 0 for fewer than two values)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    err = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0
    return float(x.mean()), err


def softmax(logprobs) -> list[float]:
    """Probabilities over the choices from their log-likelihoods (the model's belief among these answers only)."""
    x = np.asarray(logprobs, dtype=float)
    p = np.exp(x - x.max())
    return (p / p.sum()).tolist()


def calibration_bins(confidence, correct, n_bins: int = 15) -> list[dict]:
    """Equal-width bins of [0, 1] by confidence: for each, how many predictions, their mean confidence and the
    fraction that were right. A confidence of exactly 1 falls in the last bin."""
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    index = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    bins = []
    for b in range(n_bins):
        inside = index == b
        n = int(inside.sum())
        bins.append({"low": b / n_bins, "high": (b + 1) / n_bins, "count": n,
                     "confidence": float(conf[inside].mean()) if n else None,
                     "accuracy": float(hit[inside].mean()) if n else None})
    return bins


def expected_calibration_error(confidence, correct, n_bins: int = 15) -> float:
    """ECE = sum over bins of (bin share of predictions) * |accuracy - mean confidence| (Guo et al., 2017)."""
    total = len(confidence)
    if total == 0:
        return float("nan")
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
                     for b in calibration_bins(confidence, correct, n_bins) if b["count"]))


def bits_per_byte(total_logprob_nats: float, total_bytes: int) -> float:
    """Negative log-likelihood in bits per UTF-8 byte: comparable across tokenizers, unlike loss per token."""
    return -total_logprob_nats / (math.log(2) * total_bytes)
