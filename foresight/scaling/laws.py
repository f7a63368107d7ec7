"""Scaling-law forms, written for fitting in log space with analytic gradients.

Every law is evaluated as log L(x; theta), because the fitter minimises a Huber loss on log residuals
(log y - log L). The sums inside the laws are written as a log-sum-exp of log-terms (as Hoffmann et al. 2022 do), so
the scale parameters live in log space: they stay positive without bounds and the gradient is a softmax weight times
the term's own derivative.

Inputs are normalised by a reference value (the geometric mean of the data) before fitting: a power of 1e19 FLOPs
is not something L-BFGS should have to represent. `params(theta, ref)` converts back to the familiar units, so
L(C) = a·C^(-b) + c is reported with C in the user's units.

Laws:
  power            L(C)    = a·C^(-b) + c              (GPT-4 report's form; the default)
  power_no_offset  L(C)    = a·C^(-b)                  (e.g. -E[log pass_rate] = α·C^(-k) for capabilities)
  chinchilla       L(N, D) = E + A/N^α + B/D^β          (Hoffmann et al. 2022)
  log_linear       L(C)    = α − β·ln C                (a local law: a straight line in log-compute)

Why log_linear: on 2-core CPU ladders (5e11–1.5e14 FLOPs) the loss falls a steady ~0.17 nats per doubling of
compute, and its local exponent rises, which no a·C^(-b) + c with c ≥ 0 can follow (docs/fitting.md, last section).
A line goes negative far enough out, so it is only ever a local law: never the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _log_sum_exp(terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise log Σ exp(terms[:, k]) and the softmax weights (each term's share of the sum)."""
    top = terms.max(axis=1, keepdims=True)
    e = np.exp(terms - top)
    total = e.sum(axis=1, keepdims=True)
    return (top + np.log(total))[:, 0], e / total


@dataclass(frozen=True)
class Law:
    """A parametric law. Subclasses define the log-space evaluation, its Jacobian and a grid of starting points."""

    name: str = ""
    formula: str = ""
    n_inputs: int = 1  # 1: x; 2: (N, D)
    theta_names: tuple[str, ...] = ()

    @property
    def n_params(self) -> int:
        return len(self.theta_names)

    def log_value_and_jacobian(self, theta: np.ndarray, logx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log L at each point (shape [n]) and d log L / d theta (shape [n, p]); logx is [n, n_inputs], normalised."""
        raise NotImplementedError

    def log_value(self, theta: np.ndarray, logx: np.ndarray) -> np.ndarray:
        return self.log_value_and_jacobian(theta, logx)[0]

    def starts(self, logx: np.ndarray, logy: np.ndarray) -> np.ndarray:
        """Starting points [k, p] for the multi-start search, spread over plausible exponents and offsets."""
        raise NotImplementedError

    def bounds(self) -> list[tuple[float | None, float | None]]:
        raise NotImplementedError

    def params(self, theta: np.ndarray, log_ref: np.ndarray) -> dict[str, float]:
        """Human-readable parameters in the data's own units (undoing the normalisation by the reference)."""
        raise NotImplementedError

    def decay_exponents(self, theta: np.ndarray) -> np.ndarray:
        """The exponents that must be positive for the law to fall with its inputs."""
        raise NotImplementedError

    def domain_end(self, theta: np.ndarray, log_ref: np.ndarray) -> float | None:
        """The input (in the data's units) at and beyond which the law has no value; None where it has one
        everywhere. Only a law that can reach zero has an end."""
        return None


# Scale parameters are exp(theta_k); a floor on log c keeps "no irreducible term" reachable without -inf.
_LOG_FLOOR = -30.0


class PowerLaw(Law):
    """L(C) = a·C^(-b) + c, as log L = logsumexp(log a' - b·u, log c) with u = log(C / C_ref), a' = a·C_ref^(-b)."""

    def __init__(self) -> None:
        super().__init__(name="power", formula="L(C) = a*C^(-b) + c", n_inputs=1,
                         theta_names=("log_a_ref", "b", "log_c"))

    def log_value_and_jacobian(self, theta, logx):
        log_a, b, log_c = theta
        u = logx[:, 0]
        terms = np.stack([log_a - b * u, np.full_like(u, log_c)], axis=1)
        value, w = _log_sum_exp(terms)
        jac = np.stack([w[:, 0], -u * w[:, 0], w[:, 1]], axis=1)
        return value, jac

    def starts(self, logx, logy):
        u = logx[:, 0]
        y = np.exp(logy)
        mid = np.argsort(u)[len(u) // 2]
        out = []
        for b in (0.03, 0.1, 0.2, 0.35, 0.6, 1.0):
            for c_share in (0.0, 0.3, 0.6, 0.85, 0.95):
                c = c_share * y.min()
                reducible = max(y[mid] - c, 1e-3 * y[mid])
                # a' chosen so the curve passes through the middle point
                out.append([np.log(reducible) + b * u[mid], b, np.log(c) if c > 0 else _LOG_FLOOR + 10])
        return np.array(out)

    def bounds(self):
        return [(None, None), (-5.0, 5.0), (_LOG_FLOOR, None)]

    def params(self, theta, log_ref):
        log_a, b, log_c = theta
        # a'·(C/C_ref)^(-b) = a·C^(-b)  =>  a = a'·C_ref^b
        return {"a": float(np.exp(log_a + b * log_ref[0])), "b": float(b), "c": float(np.exp(log_c))}

    def decay_exponents(self, theta):
        return np.array([theta[1]])


class PowerLawNoOffset(Law):
    """L(C) = a·C^(-b): a straight line in log-log space (no irreducible term)."""

    def __init__(self) -> None:
        super().__init__(name="power_no_offset", formula="L(C) = a*C^(-b)", n_inputs=1,
                         theta_names=("log_a_ref", "b"))

    def log_value_and_jacobian(self, theta, logx):
        log_a, b = theta
        u = logx[:, 0]
        return log_a - b * u, np.stack([np.ones_like(u), -u], axis=1)

    def starts(self, logx, logy):
        u = logx[:, 0]
        return np.array([[np.median(logy) + b * np.median(u), b] for b in (0.05, 0.2, 0.5, 1.0)])

    def bounds(self):
        return [(None, None), (-10.0, 10.0)]

    def params(self, theta, log_ref):
        log_a, b = theta
        return {"a": float(np.exp(log_a + b * log_ref[0])), "b": float(b)}

    def decay_exponents(self, theta):
        return np.array([theta[1]])


class ChinchillaLaw(Law):
    """L(N, D) = E + A/N^α + B/D^β, as log L = logsumexp(log A' - α·u, log B' - β·v, log E), u, v normalised logs."""

    def __init__(self) -> None:
        super().__init__(name="chinchilla", formula="L(N, D) = E + A/N^alpha + B/D^beta", n_inputs=2,
                         theta_names=("log_A_ref", "alpha", "log_B_ref", "beta", "log_E"))

    def log_value_and_jacobian(self, theta, logx):
        log_a, alpha, log_b, beta, log_e = theta
        u, v = logx[:, 0], logx[:, 1]
        terms = np.stack([log_a - alpha * u, log_b - beta * v, np.full_like(u, log_e)], axis=1)
        value, w = _log_sum_exp(terms)
        jac = np.stack([w[:, 0], -u * w[:, 0], w[:, 1], -v * w[:, 1], w[:, 2]], axis=1)
        return value, jac

    def starts(self, logx, logy):
        y_min = float(np.exp(logy).min())
        y_mid = float(np.exp(np.median(logy)))
        out = []
        for alpha in (0.15, 0.35, 0.7):
            for beta in (0.15, 0.35, 0.7):
                for e_share in (0.0, 0.5, 0.85):
                    e = e_share * y_min
                    half = max(y_mid - e, 1e-3 * y_mid) / 2  # the two reducible terms share the middle's excess
                    out.append([np.log(half), alpha, np.log(half), beta, np.log(e) if e > 0 else _LOG_FLOOR + 10])
        return np.array(out)

    def bounds(self):
        return [(None, None), (-5.0, 5.0), (None, None), (-5.0, 5.0), (_LOG_FLOOR, None)]

    def params(self, theta, log_ref):
        log_a, alpha, log_b, beta, log_e = theta
        return {"E": float(np.exp(log_e)), "A": float(np.exp(log_a + alpha * log_ref[0])), "alpha": float(alpha),
                "B": float(np.exp(log_b + beta * log_ref[1])), "beta": float(beta)}

    def decay_exponents(self, theta):
        return np.array([theta[1], theta[3]])


class LogLinearLaw(Law):
    """L(C) = α − β·ln C, as log L = log(L_ref − β·u) with u = log(C / C_ref) and L_ref the line's value at C_ref."""

    def __init__(self) -> None:
        super().__init__(name="log_linear", formula="L(C) = alpha - beta*ln(C)", n_inputs=1,
                         theta_names=("L_ref", "beta"))

    def log_value_and_jacobian(self, theta, logx):
        l_ref, beta = theta
        u = logx[:, 0]
        # where the line has reached zero there is no log: a tiny floor keeps the optimiser's objective finite (and
        # enormous); predictions there are refused (`domain_end`, `FitResult.check_in_domain`)
        value = np.maximum(l_ref - beta * u, 1e-300)
        return np.log(value), np.stack([1.0 / value, -u / value], axis=1)

    def starts(self, logx, logy):
        u, y = logx[:, 0], np.exp(logy)
        slope, intercept = np.polyfit(u, y, 1) if len(np.unique(u)) > 1 else (0.0, float(np.mean(y)))
        return np.array([[intercept, -slope], [intercept, -0.5 * slope], [float(np.mean(y)), 0.01]])

    def bounds(self):
        return [(1e-9, None), (None, None)]

    def params(self, theta, log_ref):
        l_ref, beta = theta
        # L_ref − β·(ln C − ln C_ref) = (L_ref + β·ln C_ref) − β·ln C
        return {"alpha": float(l_ref + beta * log_ref[0]), "beta": float(beta)}

    def decay_exponents(self, theta):
        return np.array([theta[1]])

    def domain_end(self, theta, log_ref):
        l_ref, beta = theta
        # the line L_ref − β·u reaches zero at u = L_ref / β
        return float(np.exp(log_ref[0] + l_ref / beta)) if beta > 0 else None


LAWS: dict[str, Law] = {law.name: law for law in (PowerLaw(), PowerLawNoOffset(), ChinchillaLaw(), LogLinearLaw())}


def get_law(name: str) -> Law:
    from foresight.errors import ForesightError

    if name not in LAWS:
        raise ForesightError(f"unknown law {name!r}; choose one of: {', '.join(LAWS)}")
    return LAWS[name]
