"""Classical learning rules of the teacher-student perceptron, as functions of alpha = P/N.

* Hebb (the lam -> 0 limit of Eq. 1, Sec. 2): R = sqrt(2 alpha / (2 alpha + pi)), i.e.
  tan(pi eps_0) = sqrt(pi / (2 alpha)); eps_0 ~ alpha^(-1/2) / sqrt(2 pi) at large alpha.
* Bayes-optimal (Opper & Haussler 1991): the centre of mass of the version space. Its
  overlap is sqrt(R_G), where R_G is the Gibbs-learning overlap (Engel & Van den Broeck,
  "Statistical Mechanics of Learning", Eq. 2.42 and Sec. 3.6):
      R_G / sqrt(1 - R_G) = (alpha / pi) int Dt exp(-R_G t^2 / 2) / H(-sqrt(R_G) t),
  eps_Bayes = arccos(sqrt(R_G)) / pi ~ 0.442 / alpha at large alpha.
* Maximally stable perceptron (Gardner 1987; Opper, Kinzel, Kleinz & Nehl 1990): the hard
  margin limit of the saddle point (theory/DERIVATION.md), Delta_0 = max(t, kappa):
      (A) 1 - R^2 = 2 alpha int Dt H(-R t / s) (kappa - t)_+^2,            s = sqrt(1 - R^2)
      (B) R = 2 alpha / sqrt(2 pi) [kappa Phi(kappa / s) + s phi(kappa / s)],
  two equations for (R, kappa); eps_maxstab ~ 0.5005 / alpha at large alpha.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import erfcx, ndtr

from theory._checks import check_positive, check_positive_array
from theory.quadrature import panel_rule

SQRT_2PI = math.sqrt(2.0 * math.pi)


def _vectorised(scalar_fn, name="alpha"):
    """Apply a scalar function of alpha elementwise; float in, float out; array in, array out."""

    def fn(alpha):
        if np.ndim(alpha) == 0:
            return scalar_fn(check_positive(name, alpha))
        arr = np.asarray(alpha, dtype=float)
        flat = check_positive_array(name, arr)
        return np.array([scalar_fn(a) for a in flat]).reshape(arr.shape)

    fn.__name__ = scalar_fn.__name__.lstrip("_")
    fn.__doc__ = scalar_fn.__doc__
    return fn


# --- Hebb ------------------------------------------------------------------------------------
def _eps_hebb(alpha: float) -> float:
    """Hebb rule: eps_0 = arctan(sqrt(pi / (2 alpha))) / pi (= arccos(R_Hebb) / pi)."""
    return math.atan(math.sqrt(math.pi / (2.0 * alpha))) / math.pi


# --- Bayes-optimal ---------------------------------------------------------------------------
_GH_T, _GH_W = np.polynomial.hermite_e.hermegauss(120)
_GH_W = _GH_W / SQRT_2PI  # probabilists' Gauss-Hermite: sum w f(t) = int Dt f(t)


def gibbs_integral(R: float) -> float:
    """int Dt exp(-R t^2/2) / H(-sqrt(R) t) = int Dt 2 / erfcx(-sqrt(R/2) t) (no overflow)."""
    return float(_GH_W @ (2.0 / erfcx(-math.sqrt(R / 2.0) * _GH_T)))


def gibbs_overlap_gap(alpha: float) -> float:
    """delta = 1 - R_G of Gibbs learning, solved in log(delta) (R_G -> 1 loses digits)."""

    def f(log_delta: float) -> float:
        delta = math.exp(log_delta)
        return math.log((1.0 - delta) / math.sqrt(delta)) - math.log(
            alpha / math.pi * gibbs_integral(1.0 - delta)
        )

    return math.exp(brentq(f, -200.0, -1e-15, xtol=1e-14, rtol=1e-15))


def _eps_bayes(alpha: float) -> float:
    """Bayes-optimal (Opper & Haussler 1991): eps = arccos(sqrt(R_G)) / pi."""
    return math.asin(math.sqrt(gibbs_overlap_gap(alpha))) / math.pi


# --- maximally stable ------------------------------------------------------------------------
def _maxstab_A(theta: float, kappa: float) -> float:
    """int Dt H(-R t/s) (kappa - t)_+^2 with t = s y, on panels of width <= 1 in y."""
    s, R = math.sin(theta), math.cos(theta)
    top = min(kappa / s, 14.0 / s)  # phi(s y) is negligible beyond |s y| = 14
    lo = -14.0  # phi(s y) H(R |y|) <= exp(-y^2 / 2) since s^2 + R^2 = 1
    if top <= lo:
        return 0.0
    edges = np.unique(np.concatenate([np.arange(lo, top, 1.0), [0.0, top]]))
    edges = edges[(edges >= lo) & (edges <= top)]
    y, w = panel_rule(edges, 12)
    f = np.exp(-0.5 * (s * y) ** 2) / SQRT_2PI * ndtr(R * y) * (kappa - s * y) ** 2
    return float(s * (w @ f))


def _maxstab_kappa(alpha: float, theta: float) -> float:
    """kappa solving (B) at given theta (its left side increases with kappa)."""
    s, R = math.sin(theta), math.cos(theta)

    def B(kappa: float) -> float:
        k = kappa / s
        return (
            2.0 * alpha / SQRT_2PI * (kappa * ndtr(k) + s * math.exp(-0.5 * k * k) / SQRT_2PI) - R
        )

    hi = 1.0
    while B(hi) < 0.0:
        hi *= 2.0
    lo = -1.0
    while B(lo) > 0.0:
        lo *= 2.0
    return brentq(B, lo, hi, xtol=1e-16 * hi, rtol=1e-15)


def maxstab_solution(alpha: float) -> tuple[float, float]:
    """(theta, kappa) of the maximally stable perceptron; eps = theta / pi."""

    def f(log_theta: float) -> float:
        theta = math.exp(log_theta)
        kappa = _maxstab_kappa(alpha, theta)
        return math.log(2.0 * alpha * _maxstab_A(theta, kappa)) - 2.0 * math.log(math.sin(theta))

    hi = math.log(min(1.5 * math.pi * _eps_hebb(alpha), math.pi / 2 - 1e-9))
    lo = hi - 2.0
    while f(lo) * f(hi) > 0.0 and lo > -60.0:
        lo -= 2.0
    log_theta = brentq(f, lo, hi, xtol=1e-14, rtol=1e-15)
    theta = math.exp(log_theta)
    return theta, _maxstab_kappa(alpha, theta)


def _eps_maxstab(alpha: float) -> float:
    """Maximally stable perceptron (Gardner 1987; Opper et al. 1990): eps = theta / pi."""
    return maxstab_solution(alpha)[0] / math.pi


eps_hebb = _vectorised(_eps_hebb)
eps_bayes = _vectorised(_eps_bayes)
eps_maxstab = _vectorised(_eps_maxstab)
