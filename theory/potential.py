"""The logistic potential of Eq. 1 and its proximal operator Delta_0 (Eq. 13, 15).

Eq. 1 writes V_lam(D) = -(1/lam) (lam D - log 2cosh(lam D)) = log(1 + exp(-2 lam D)) / lam:
it *decreases* with the margin D (Appendix D prints the opposite sign, a typo). Hence

    V'(D) = tanh(lam D) - 1 = -2 sigma(-2 lam D) in (-2, 0),     V''(D) = lam sech^2(lam D) > 0.

The proximal operator Delta_0(t, x) = argmin_D [V(D) + (D - t)^2 / (2x)] solves
D + x V'(D) = t, i.e. D - g = t with the shift g = D - t = 2 x sigma(-2 lam D) in (0, 2x).
In the scaled variable u = lam D this reads

    u - exp(c - softplus(2u)) = tau,      tau = lam t,  c = log(2 lam x),

whose left side is strictly increasing (derivative >= 1), so the root is unique; Newton on
the log of the shift converges monotonically for every lam and x, including lam -> 0,
lam -> 1e6 and x = exp(1e4) (x enters only through c = log 2 + log lam + log x, so huge x
never overflows).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

LOG2 = math.log(2.0)


def V(delta, lam: float):
    """Logistic potential of Eq. 1, V_lam(D) = log(1 + exp(-2 lam D)) / lam (stable form)."""
    return np.logaddexp(0.0, -2.0 * lam * np.asarray(delta, dtype=float)) / lam


def dV(delta, lam: float):
    """V'_lam(D) = tanh(lam D) - 1 = -2 sigma(-2 lam D)."""
    return -2.0 * expit(-2.0 * lam * np.asarray(delta, dtype=float))


def _log_shift_guess(tau, c):
    """An upper bound (tight in both asymptotic regimes) for v = log(u - tau) at the root.

    The root obeys log d + softplus(2 tau + 2 d) = c with d = u - tau > 0. Since softplus
    is positive and decreasing-in-d terms bound it, d <= e^(c - softplus(2 tau)) (tight when
    the shift is small) and, as softplus(w) >= w, log d + 2 d <= c - 2 tau, i.e.
    d <= W(2 e^(c - 2 tau)) / 2 (Lambert W, tight when 2u >> 1).
    """
    log_da = c - np.logaddexp(0.0, 2.0 * tau)
    ly = LOG2 + c - 2.0 * tau  # log of the Lambert-W argument
    with np.errstate(invalid="ignore", divide="ignore"):
        l2 = np.log(np.maximum(ly, 1.0))
        w = ly - l2 + l2 / np.maximum(ly, 1.0)  # W(e^ly) for ly >= 1, within a few percent
        log_db = np.where(ly > 1.0, np.log(np.maximum(w, 1e-300) / 2.0), np.inf)
    return np.minimum(log_da, log_db)


def prox_u(tau, c, *, max_iter: int = 100):
    """Solve u - exp(c - softplus(2u)) = tau for u (vectorised Newton).

    Newton runs on v = log(u - tau) for k(v) = v + softplus(2 tau + 2 e^v) - c, which is
    increasing and convex in v; from the upper bound of `_log_shift_guess` (or from any
    point, after one step) its iterates decrease monotonically to the root, quadratically
    near it, and the guess is tight in both asymptotic regimes, so a handful of steps
    suffice for every lam and x. Returns u = lam * Delta_0.
    """
    tau, c = np.broadcast_arrays(np.asarray(tau, float), np.asarray(c, float))
    v = _log_shift_guess(tau, c)
    for _ in range(max_iter):
        d = np.exp(v)
        w = 2.0 * tau + 2.0 * d
        sp = np.logaddexp(0.0, w)
        dv = (v + sp - c) / (1.0 + 2.0 * d * expit(w))
        v = v - dv
        # quadratic: the error after this step is ~dv^2; the second term is the rounding
        # floor of k when its terms are huge (then the shift e^v underflows anyway)
        if np.all(np.abs(dv) <= 1e-11 + 1e-15 * (np.abs(v) + sp + np.abs(c))):
            return tau + np.exp(v)
    raise RuntimeError("prox: Newton did not converge (please report)")


def prox(t, x, lam: float):
    """Delta_0(t, x) of Eq. 13/15 for the potential of Eq. 1 (vectorised in t and x)."""
    log_x = np.log(np.asarray(x, dtype=float))
    return prox_u(lam * np.asarray(t, float), math.log(2.0 * lam) + log_x) / lam


def _softplus1(z: float) -> float:
    return z + math.log1p(math.exp(-z)) if z > 0.0 else math.log1p(math.exp(z))


def prox_log_x(t: float, log_x: float, lam: float) -> float:
    """Scalar Delta_0(t, x = exp(log_x)) in pure Python (fast for the few breakpoints).

    Same algorithm as `prox_u`, written with `math` because numpy's per-call overhead
    dominates for a single point.
    """
    tau = lam * t
    c = math.log(2.0 * lam) + log_x
    v = c - _softplus1(2.0 * tau)
    ly = LOG2 + c - 2.0 * tau
    if ly > 1.0:
        l2 = math.log(ly)
        v = min(v, math.log((ly - l2 + l2 / ly) / 2.0))
    for _ in range(100):
        d = math.exp(v)
        w = 2.0 * tau + 2.0 * d
        sig = 1.0 / (1.0 + math.exp(-w)) if w > -700.0 else 0.0
        sp = _softplus1(w)
        dv = (v + sp - c) / (1.0 + 2.0 * d * sig)
        v -= dv
        if abs(dv) <= 1e-11 + 1e-15 * (abs(v) + sp + abs(c)):
            return (tau + math.exp(v)) / lam
    raise RuntimeError("prox: Newton did not converge (please report)")
