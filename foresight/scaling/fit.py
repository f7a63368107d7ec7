"""Fit a scaling law, and say honestly how far to trust its extrapolation.

The method (decided on back-tests that exclude the published targets; see docs/fitting.md):

1. Point fit. Minimise Σ Huber_δ(log y_i − log L(x_i; θ)) with scipy's L-BFGS-B and the law's analytic gradient, from
   a grid of starting points (the loss surface of a power law with an offset has several local minima), keep the best.
2. Bootstrap over runs. Resample the runs with replacement, refit (warm-started from the best full-data optima), and
   take the spread of the predictions in log space. This measures how much the fit depends on which runs happened
   to be in the ladder — but not how wrong the law's *form* is far outside the data, which is why a plain bootstrap
   is over-confident at 100× extrapolation.
3. Back-test calibration. Order the runs by compute; for every cut that leaves at least max(#params, ⌈n/2⌉) runs
   below it, fit on the runs below the cut and predict each run above it. Each held-out run gives a relative error
   e (in log space). How far off a prediction can be depends on how hard it is for the law to reach that point from
   the runs it was fitted on, which the fit itself measures: the leverage h = gᵀ(JᵀJ)⁻¹g, with J the Jacobian of
   log L at the fitted runs and g at the query (the delta method: a prediction's variance from noise s² in the runs
   is s²·h, plus s² for the held-out run's own noise). So each back-test error is scaled to a noise estimate,
   s² = mean(e² / (1 + h)), and a prediction at x gets the log-space half-width z·s·√(1 + h(x)). The leverage grows
   with the extrapolation distance and shrinks with more and wider-spread runs — an exact fit through three runs
   has large leverage, so its back-test error is not read as the error of a fit on four.
4. The back-test is the interval, not an addition to the bootstrap: a held-out prediction already carries the
   sampling noise of the runs it was fitted on, so adding the bootstrap in quadrature counts that noise twice. The
   bootstrap's spread acts as a floor, together with the fit's residual RMS (the error inside the data), and only
   when there are at least twice as many runs as parameters — with fewer, nearly every resample is an exact fit
   through p runs and its spread says more about the resampling than about the law.
5. A noise floor known from outside the fitted points (`noise_floor`, e.g. `ladder_noise` of a whole ladder when
   only its top runs are fitted, as `foresight forecast` does with [fit] top_runs): the half-width is never below
   z·σ·√(1 + h), the delta method of point 3 with σ given instead of back-tested.

Choices made on data that excludes the published targets (Gadre's 1B runs as holdouts for fits on the four smaller
compute-optimal runs; the OLMo 1B and 3B runs as holdouts for fits on the smaller sizes): HUBER_DELTA = 1e-2 beat
Hoffmann et al.'s 1e-3, whose near-L1 loss throws away information when a ladder has only four to six runs; and the
leverage-scaled interval of point 3 replaced an earlier error model σ(r) = k·√(decades), which on those holdouts
gave intervals about five times wider than the errors (|error|/σ ≈ 0.2) while the leverage model gives |error|/σ of
0.0–1.05 (RMS 0.55) — see docs/fitting.md.

Everything returned is a `FitResult`: `predict(x)`, `interval(x, level=0.9)`, `params`, `to_dict()`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm, spearmanr

from foresight.errors import ForesightError
from foresight.scaling.laws import Law, get_law

def _single_threaded_blas():
    """These fits are tiny (3-5 parameters, tens of points): BLAS threads only add contention. On a busy 2-core
    machine OpenBLAS's thread hand-offs made each L-BFGS-B step ~20x slower, so hold BLAS to one thread while
    fitting (threadpoolctl; a no-op if it is not installed)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


HUBER_DELTA = 1e-2  # log-space residuals under 1% are squared, larger ones count linearly (see the module notes)
DEFAULT_BOOTSTRAP = 200
DEFAULT_LEVEL = 0.9


# ----------------------------------------------------------------------------------------------------------------
# The objective
# ----------------------------------------------------------------------------------------------------------------

def huber_objective(theta: np.ndarray, law: Law, logx: np.ndarray, logy: np.ndarray, delta: float,
                    weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Σ w_i·Huber_δ(log y_i − log L(x_i; θ)) / δ and its gradient. Dividing by δ keeps the value of order 1,
    so L-BFGS-B's relative stopping rule does not fire on a loss that is small only because δ is."""
    log_pred, jac = law.log_value_and_jacobian(theta, logx)
    r = logy - log_pred
    small = np.abs(r) <= delta
    loss = np.where(small, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    psi = np.where(small, r, delta * np.sign(r))  # d loss / d r
    if weights is not None:
        loss = loss * weights
        psi = psi * weights
    return float(loss.sum() / delta), -(psi @ jac) / delta


def _minimise(law: Law, logx: np.ndarray, logy: np.ndarray, starts: np.ndarray, delta: float,
              weights: np.ndarray | None = None, objective=huber_objective) -> list[tuple[float, np.ndarray]]:
    """L-BFGS-B from each start; returns (value, theta) for every start that converged to a finite value, best first."""
    found = []
    bounds = law.bounds()
    for start in starts:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            res = minimize(objective, start, args=(law, logx, logy, delta, weights), jac=True, method="L-BFGS-B",
                           bounds=bounds, options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9})
        if np.isfinite(res.fun) and np.all(np.isfinite(res.x)):
            found.append((float(res.fun), res.x))
    found.sort(key=lambda item: item[0])
    return found


def _distinct_optima(found: list[tuple[float, np.ndarray]], keep: int) -> np.ndarray:
    """The best `keep` optima that differ from each other (starting points for the bootstrap refits)."""
    chosen: list[np.ndarray] = []
    for _, theta in found:
        if all(np.max(np.abs(theta - other)) > 1e-3 for other in chosen):
            chosen.append(theta)
        if len(chosen) == keep:
            break
    return np.array(chosen)


# ----------------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------------

def _as_inputs(law: Law, x) -> np.ndarray:
    """User inputs as a float array [m, n_inputs]: a scalar or a list for one-input laws; (N, D) pairs or two
    arrays (N, D) of equal length for the two-input law."""
    arr = np.asarray(x, dtype=float)
    if law.n_inputs == 1:
        return arr.reshape(-1, 1)
    if arr.ndim == 1 and arr.size == 2:
        return arr.reshape(1, 2)
    if arr.ndim == 2 and arr.shape[1] == 2:
        return arr
    if arr.ndim == 2 and arr.shape[0] == 2:
        return arr.T
    raise ForesightError(f"the {law.name} law needs (N, D) pairs; got an array of shape {arr.shape}")


def _point_name(labels, i: int) -> str:
    return repr(labels[i]) if labels is not None else f"point {i + 1}"


def validate_points(law: Law, inputs: np.ndarray, y: np.ndarray, labels=None,
                    input_names: tuple[str, ...] = ("x",), y_name: str = "y") -> None:
    """Refuse to fit data that cannot give a meaningful law; every message names what is wrong."""
    n = len(y)
    minimum = max(3, law.n_params)
    if n < minimum:
        raise ForesightError(f"need at least {minimum} points to fit the {law.name} law ({law.formula}); got {n}")
    for i in range(n):
        if not np.isfinite(y[i]):
            raise ForesightError(f"{_point_name(labels, i)} has {y_name} = {y[i]} (a diverged or broken run); "
                                 "remove it or fix it before fitting")
        for j, name in enumerate(input_names):
            if not np.isfinite(inputs[i, j]):
                raise ForesightError(f"{_point_name(labels, i)} has {name} = {inputs[i, j]}")
            if inputs[i, j] <= 0:
                raise ForesightError(f"{_point_name(labels, i)} has {name} = {inputs[i, j]:g}; "
                                     f"{name} must be positive (the law is a power of it)")
        if y[i] <= 0:
            raise ForesightError(f"{_point_name(labels, i)} has {y_name} = {y[i]:g}; losses must be positive")
    scale = np.prod(inputs, axis=1)  # compute ∝ x, or ∝ N·D for the two-input law
    if np.ptp(np.log(scale)) == 0:
        raise ForesightError(f"all points have the same {' * '.join(input_names)}; a law needs a range of scales")
    rho = spearmanr(scale, y).statistic
    if not rho < 0:
        raise ForesightError(f"{y_name} does not fall as {' * '.join(input_names)} grows (rank correlation "
                             f"{rho:+.2f}); a scaling law needs losses that improve with scale")


# ----------------------------------------------------------------------------------------------------------------
# The result
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Calibration:
    """The back-test error model: a prediction with leverage h has log-space error spread noise·√(1 + h)."""

    noise: float | None  # s, the back-tested noise scale; None when the data allowed no back-test
    n_cuts: int
    n_pairs: int
    # (r = log10 extrapolation distance, e = log error, h = leverage) for each held-out prediction
    pairs: list[tuple[float, float, float]] = field(default_factory=list)

    def sigma(self, leverage: np.ndarray) -> np.ndarray:
        return (self.noise or 0.0) * np.sqrt(1.0 + np.asarray(leverage))


def leverage(law: Law, theta: np.ndarray, logx_fitted: np.ndarray, logx_query: np.ndarray) -> np.ndarray:
    """gᵀ(JᵀJ)⁻¹g at each query point: the variance of the fitted log L there per unit of noise in the runs."""
    _, jac = law.log_value_and_jacobian(theta, logx_fitted)
    _, g = law.log_value_and_jacobian(theta, logx_query)
    return np.einsum("ip,pq,iq->i", g, np.linalg.pinv(jac.T @ jac), g)


@dataclass
class FitResult:
    law: Law
    theta: np.ndarray
    log_ref: np.ndarray  # normalisation of the inputs: log of their geometric mean
    inputs: np.ndarray  # [n, n_inputs] as fitted
    y: np.ndarray
    loss_value: float
    boot_thetas: np.ndarray  # [B, p]
    calibration: Calibration
    input_names: tuple[str, ...] = ("x",)
    y_name: str = "y"
    labels: list | None = None
    # A log-space noise scale known from outside the fitted points (e.g. `ladder_noise` of a whole ladder when only
    # its top runs are fitted): the interval is never narrower than it, carried to the query by the leverage.
    noise_floor: float = 0.0

    # --- parameters ---------------------------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, float]:
        return self.law.params(self.theta, self.log_ref)

    @property
    def n_points(self) -> int:
        return len(self.y)

    # --- evaluation ---------------------------------------------------------------------------------------------
    def _log_inputs(self, x) -> np.ndarray:
        arr = _as_inputs(self.law, x)
        if np.any(~np.isfinite(arr)) or np.any(arr <= 0):
            raise ForesightError(f"prediction inputs must be positive and finite; got {arr.tolist()}")
        return np.log(arr) - self.log_ref

    def predict(self, x) -> np.ndarray | float:
        """The fitted law at x (a scalar gives a float; for the two-input law, an (N, D) pair gives a float)."""
        out = np.exp(self.law.log_value(self.theta, self._log_inputs(x)))
        return float(out[0]) if _is_single(self.law, x) else out

    def check_in_domain(self, x) -> None:
        """Refuse a prediction where the fitted law has no value (a line in log-compute that has reached zero),
        rather than report a loss of ~0 with an undefined interval."""
        end = self.law.domain_end(self.theta, self.log_ref)
        if end is None:
            return
        scale = np.prod(_as_inputs(self.law, x), axis=1)
        if np.any(scale >= end):
            raise ForesightError(f"the fitted {self.law.name} law ({self.law.formula}) reaches zero at "
                                 f"{' * '.join(self.input_names)} = {end:.4g}, so it cannot predict at "
                                 f"{float(np.max(scale)):.4g}: a local law does not extrapolate that far "
                                 f"(the power law does)")

    def extrapolation_decades(self, x) -> np.ndarray:
        """log10 of how far past the largest fitted run x lies (0 inside the data), by compute (x, or N·D)."""
        query = np.sum(np.log(_as_inputs(self.law, x)), axis=1)
        largest = np.max(np.sum(np.log(self.inputs), axis=1))
        return np.maximum(query - largest, 0.0) / math.log(10)

    def interval(self, x, level: float = DEFAULT_LEVEL) -> tuple:
        """(low, high) of the calibrated `level` interval at x (see the module notes, points 3 and 4)."""
        if not 0 < level < 1:
            raise ForesightError(f"interval level must be between 0 and 1; got {level}")
        logx = self._log_inputs(x)
        center = self.law.log_value(self.theta, logx)
        z = norm.ppf(0.5 + level / 2)
        # the back-tested error at this point's leverage (zero where no back-test was possible), never below the
        # misfit inside the data
        h = leverage(self.law, self.theta, np.log(self.inputs) - self.log_ref, logx)
        half = np.maximum(z * self.calibration.sigma(h), z * self.residual_rms)
        half = np.maximum(half, z * self.noise_floor * np.sqrt(1.0 + h))
        if self.n_points >= 2 * self.law.n_params:
            boot_low, boot_high = self._bootstrap_offsets(logx, center, level)
            half_low, half_high = np.maximum(boot_low, half), np.maximum(boot_high, half)
        else:
            half_low = half_high = half
        low, high = np.exp(center - half_low), np.exp(center + half_high)
        if _is_single(self.law, x):
            return float(low[0]), float(high[0])
        return low, high

    @property
    def residual_rms(self) -> float:
        """RMS of the log residuals of the fitted runs: how far the law misses inside the data."""
        logx = np.log(self.inputs) - self.log_ref
        r = np.log(self.y) - self.law.log_value(self.theta, logx)
        return float(np.sqrt(np.mean(r * r)))

    def _bootstrap_offsets(self, logx: np.ndarray, center: np.ndarray, level: float):
        """Distances (≥ 0, log space) from the point prediction down to the lower and up to the upper percentile."""
        if len(self.boot_thetas) == 0:
            return np.zeros_like(center), np.zeros_like(center)
        preds = np.stack([self.law.log_value(t, logx) for t in self.boot_thetas])  # [B, m]
        tail = (1 - level) / 2 * 100
        lo, hi = np.percentile(preds, [tail, 100 - tail], axis=0)
        return np.maximum(center - lo, 0.0), np.maximum(hi - center, 0.0)

    # --- reporting ----------------------------------------------------------------------------------------------
    def prediction_rows(self, xs, level: float = DEFAULT_LEVEL) -> list[dict]:
        rows = []
        for x in xs:
            self.check_in_domain(x)
            low, high = self.interval(x, level)
            rows.append({"x": _jsonable_x(x), "y": self.predict(x), "low": low, "high": high,
                         "extrapolation": float(10 ** self.extrapolation_decades(x)[0])})
        return rows

    def to_dict(self, predictions=(), level: float = DEFAULT_LEVEL) -> dict:
        cal = self.calibration
        return {
            "law": self.law.name,
            "formula": self.law.formula,
            "params": self.params,
            "n_points": self.n_points,
            "inputs": list(self.input_names),
            "y": self.y_name,
            "level": level,
            "predictions": self.prediction_rows(predictions, level),
            "calibration": {"noise": cal.noise, "backtest_cuts": cal.n_cuts, "backtest_predictions": cal.n_pairs,
                            "noise_floor": self.noise_floor},
            "bootstrap_samples": int(len(self.boot_thetas)),
        }


def _is_single(law: Law, x) -> bool:
    arr = np.asarray(x, dtype=float)
    return arr.ndim == 0 if law.n_inputs == 1 else (arr.ndim == 1 and arr.size == 2)


def _jsonable_x(x):
    arr = np.asarray(x, dtype=float)
    return float(arr) if arr.ndim == 0 else [float(v) for v in arr.ravel()]


# ----------------------------------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------------------------------

def _fit_theta(law: Law, logx: np.ndarray, logy: np.ndarray, delta: float, objective) -> list:
    found = _minimise(law, logx, logy, law.starts(logx, logy), delta, objective=objective)
    if not found:
        raise ForesightError(f"the {law.name} fit did not converge from any starting point")
    return found


def _bootstrap(law: Law, logx: np.ndarray, logy: np.ndarray, starts: np.ndarray, delta: float, n_boot: int,
               rng: np.random.Generator, objective) -> np.ndarray:
    """Refit on runs resampled with replacement; a resample with fewer distinct runs than parameters is redrawn."""
    n = len(logy)
    thetas = []
    for _ in range(n_boot):
        for _attempt in range(50):
            idx = rng.integers(0, n, n)
            if len(np.unique(idx)) >= law.n_params:
                break
        else:
            continue
        # duplicated runs enter as weights, so the refit sees each distinct run once with its multiplicity
        uniq, counts = np.unique(idx, return_counts=True)
        found = _minimise(law, logx[uniq], logy[uniq], starts, delta, weights=counts.astype(float),
                          objective=objective)
        if found:
            thetas.append(found[0][1])
    return np.array(thetas).reshape(-1, law.n_params)


def backtest(law: Law, logx: np.ndarray, logy: np.ndarray, delta: float = HUBER_DELTA,
             objective=huber_objective, min_train: int | None = None) -> Calibration:
    """Fit on the runs below each compute cut, predict the runs above it; estimate the noise scale s (point 3)."""
    n = len(logy)
    scale = logx.sum(axis=1)  # log compute (up to a constant): log x, or log N + log D
    order = np.argsort(scale, kind="stable")
    min_train = min_train or max(law.n_params, math.ceil(n / 2))
    pairs: list[tuple[float, float, float]] = []
    cuts = 0
    for m in range(min_train, n):
        below, above = order[:m], order[m:]
        if scale[order[m - 1]] == scale[order[m]]:
            continue  # never split runs of equal compute
        if len(np.unique(scale[below])) < 2:
            continue
        found = _minimise(law, logx[below], logy[below], law.starts(logx[below], logy[below]), delta,
                          objective=objective)
        if not found:
            continue
        theta = found[0][1]
        cuts += 1
        errors = law.log_value(theta, logx[above]) - logy[above]
        decades = (scale[above] - scale[order[m - 1]]) / math.log(10)
        h = leverage(law, theta, logx[below], logx[above])
        pairs.extend((float(r), float(e), float(hi)) for r, e, hi in zip(decades, errors, h))
    if not pairs:
        return Calibration(None, cuts, 0, pairs)
    e = np.array([p[1] for p in pairs])
    h = np.array([p[2] for p in pairs])
    return Calibration(float(np.sqrt(np.mean(e * e / (1.0 + h)))), cuts, len(pairs), pairs)


def fit_law(*args, **kwargs) -> FitResult:
    """Fit `law` to (inputs, y) with validation, bootstrap and back-test calibration (see `_fit_law`)."""
    with _single_threaded_blas():
        return _fit_law(*args, **kwargs)


def _fit_law(law: Law | str, inputs, y, *, labels=None, input_names=("x",), y_name="y",
            n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0, delta: float = HUBER_DELTA,
            calibrate: bool = True, objective=huber_objective, noise_floor: float = 0.0) -> FitResult:
    law = get_law(law) if isinstance(law, str) else law
    inputs = _as_inputs(law, inputs)
    y = np.asarray(y, dtype=float).ravel()
    if len(inputs) != len(y):
        raise ForesightError(f"got {len(inputs)} inputs but {len(y)} losses")
    validate_points(law, inputs, y, labels, input_names, y_name)

    log_inputs = np.log(inputs)
    log_ref = log_inputs.mean(axis=0)
    logx, logy = log_inputs - log_ref, np.log(y)
    found = _fit_theta(law, logx, logy, delta, objective)
    theta = found[0][1]
    exponents = law.decay_exponents(theta)
    if np.any(exponents <= 0):
        raise ForesightError(f"the fitted {law.name} law has a non-positive exponent ({law.params(theta, log_ref)}): "
                             f"{y_name} does not fall with {' and '.join(input_names)} the way a scaling law needs")
    rng = np.random.default_rng(seed)
    starts = _distinct_optima(found, keep=3)
    boot = _bootstrap(law, logx, logy, starts, delta, n_bootstrap, rng, objective) if n_bootstrap else \
        np.empty((0, law.n_params))
    calibration = backtest(law, logx, logy, delta, objective) if calibrate else Calibration(None, 0, 0)
    return FitResult(law=law, theta=theta, log_ref=log_ref, inputs=inputs, y=y, loss_value=found[0][0],
                     boot_thetas=boot, calibration=calibration, input_names=tuple(input_names), y_name=y_name,
                     labels=list(labels) if labels is not None else None, noise_floor=float(noise_floor))


def fit_top_runs(law: Law | str, x, y, top_runs: int = 0, *, labels=None, **kwargs) -> FitResult:
    """Fit a one-variable `law` to the `top_runs` points of largest x (0: all of them). When some are left out,
    the scatter of all of them (`ladder_noise`) is the interval's floor: the few fitted points cannot measure their
    own noise, the whole ladder can. `foresight forecast` ([fit] top_runs) and `foresight fit --top-runs` use it."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if top_runs and not 3 <= top_runs <= len(x):
        raise ForesightError(f"top_runs must be 0 (every point) or between 3 and the number of points ({len(x)}); "
                             f"got {top_runs}")
    order = np.argsort(x, kind="stable")
    keep = order[-top_runs:] if top_runs else order
    noise = ladder_noise(x, y) if len(keep) < len(x) else 0.0
    if labels is not None:
        labels = [labels[i] for i in keep]
    return fit_law(law, x[keep], y[keep], labels=labels, noise_floor=noise, **kwargs)


def ladder_noise(x, y) -> float:
    """The run-to-run noise of a ladder, in log space: the scatter of its log losses about a quadratic in log
    compute, σ = √(Σ r² / (n − 3)). A quadratic follows any smooth bend a ladder has (a power law with an offset
    across this range, or a change of regime low in the ladder), so what is left is mostly noise, and where it is
    not (a curve a quadratic cannot follow) σ comes out larger, which errs on the side of a wider interval. Used as
    the noise floor of a fit to the ladder's top runs, whose own few points cannot measure their noise."""
    logx, logy = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if len(logy) < 4:
        raise ForesightError(f"estimating a ladder's noise needs at least 4 runs; got {len(logy)}")
    residuals = logy - np.polyval(np.polyfit(logx, logy, 2), logx)
    return float(np.sqrt(np.sum(residuals ** 2) / (len(logy) - 3)))


def fit_power_law(x, y, *, offset: bool = True, **kwargs) -> FitResult:
    """L(C) = a·C^(-b) + c (or a·C^(-b) with offset=False) fitted to compute x and loss y."""
    kwargs.setdefault("input_names", ("x",))
    return fit_law("power" if offset else "power_no_offset", np.asarray(x, dtype=float), y, **kwargs)


def fit_chinchilla(n, d, y, **kwargs) -> FitResult:
    """L(N, D) = E + A/N^α + B/D^β fitted to parameter counts n, token counts d and loss y."""
    kwargs.setdefault("input_names", ("N", "D"))
    inputs = np.stack([np.asarray(n, dtype=float).ravel(), np.asarray(d, dtype=float).ravel()], axis=1)
    return fit_law("chinchilla", inputs, y, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# The baseline this module is measured against
# ----------------------------------------------------------------------------------------------------------------

def least_squares_baseline(*args, **kwargs) -> FitResult:
    """A plain fit for comparison (see `_least_squares_baseline`)."""
    with _single_threaded_blas():
        return _least_squares_baseline(*args, **kwargs)


def _least_squares_baseline(law: Law | str, inputs, y, n_bootstrap: int = DEFAULT_BOOTSTRAP,
                            seed: int = 0) -> FitResult:
    """A plain fit: least squares on the losses themselves (not their logs), no robust loss, a plain bootstrap
    interval and no calibration. Same multi-start search, so it differs from `fit_law` only in method."""
    law = get_law(law) if isinstance(law, str) else law
    inputs = _as_inputs(law, inputs)
    y = np.asarray(y, dtype=float).ravel()
    validate_points(law, inputs, y)
    log_inputs = np.log(inputs)
    log_ref = log_inputs.mean(axis=0)
    logx, logy = log_inputs - log_ref, np.log(y)
    found = _fit_theta(law, logx, logy, 0.0, linear_squared_objective)
    boot = _bootstrap(law, logx, logy, _distinct_optima(found, 3), 0.0, n_bootstrap, np.random.default_rng(seed),
                      linear_squared_objective)
    return FitResult(law=law, theta=found[0][1], log_ref=log_ref, inputs=inputs, y=y, loss_value=found[0][0],
                     boot_thetas=boot, calibration=Calibration(None, 0, 0))


def linear_squared_objective(theta, law, logx, logy, delta=0.0, weights=None):
    """½Σ w_i·(y_i − L(x_i))², the plain least-squares objective, with its gradient through log L."""
    log_pred, jac = law.log_value_and_jacobian(theta, logx)
    pred, y = np.exp(log_pred), np.exp(logy)
    r = y - pred
    w = np.ones_like(r) if weights is None else weights
    return float(0.5 * np.sum(w * r * r) * 1e4), -((w * r * pred) @ jac) * 1e4
