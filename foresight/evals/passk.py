"""The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language Models Trained on Code".

Draw n samples for a problem, c of them correct. pass@k, the chance that at least one of k samples is correct, is
estimated without bias by 1 - C(n-c, k) / C(n, k). The binomials overflow floats for n in the hundreds, so the ratio
is computed as the product prod_{i=n-c+1}^{n} (1 - k/i), which equals it term by term and stays in [0, 1].
"""

from __future__ import annotations

import numbers

import numpy as np

from foresight.errors import ForesightError


def pass_at_k(n, c, k: int):
    """Unbiased pass@k for one problem (n, c ints: returns a float) or many (arrays: returns an array).

    n: samples drawn per problem; c: how many of them passed; k: the budget. n and c broadcast against each other,
    so one n may serve every problem. Needs 1 <= k <= n and 0 <= c <= n for every problem.
    """
    k = _integer(k, "k")
    n_arr, c_arr = np.broadcast_arrays(_integers(n, "n"), _integers(c, "c"))
    if k < 1:
        raise ForesightError(f"pass@k needs k >= 1, got k={k}")
    for name, bad in (("n >= 1", n_arr < 1), ("c >= 0", c_arr < 0), ("c <= n", c_arr > n_arr),
                      (f"k <= n (k={k})", n_arr < k)):
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            at = f" at problem {where if len(where) > 1 else where[0]}" if n_arr.ndim else ""
            raise ForesightError(f"pass@k needs {name}; got n={n_arr[where]}, c={c_arr[where]}{at}")
    result = np.array([_estimate(int(ni), int(ci), k) for ni, ci in zip(n_arr.ravel(), c_arr.ravel())],
                      dtype=np.float64).reshape(n_arr.shape)
    return float(result) if result.ndim == 0 else result


def mean_pass_at_k(n, c, k: int) -> float:
    """pass@k averaged over problems, as benchmarks report it."""
    return float(np.mean(pass_at_k(n, c, k)))


def _estimate(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (i - k) / i
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def _integer(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ForesightError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _integers(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ForesightError(f"{name} must be integer counts, got {values!r}")
    return array.astype(np.int64)
