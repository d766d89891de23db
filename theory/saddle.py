"""Zero-temperature replica saddle point of the fixed-norm logistic perceptron (Eq. 13-14).

The stationarity conditions of e(x, R) (Eq. 13), derived in theory/DERIVATION.md, are

    (14a)  1 - R^2 = 2 alpha  int Dt H(-R t / s) g(t)^2,                s = sqrt(1 - R^2)
    (14b)  R       = 2 alpha / sqrt(2 pi)  int Dz g(s z)       (= the paper's 14b with its
                                                               1/(1-R^2) read as 1/s)

with the prox shift g(t) = Delta_0(t, x) - t = 2 x sigma(-2 lam Delta_0) (theory.potential).
Unknowns: xi = log x and rho = log tan(theta), R = cos(theta), eps = theta / pi, which map
(0, inf) x (0, 1) onto the plane, so Newton steps can never leave the domain, and keep
eps = theta / pi exact when R -> 1 (no cancellation in arccos).

Quadrature: both integrals are taken over Delta = Delta_0 instead of t. The inverse map
t(Delta) = Delta - 2 x sigma(-2 lam Delta) is explicit and increasing with dt/dDelta =
1 + 2 lam g sigma(2 lam Delta) = J, so no prox solve is needed at the nodes. Panels are
graded towards Delta_0(0, x) (the H-step of width s at t = 0) and towards Delta = 0 (the
1/lam kink of V), see theory.quadrature. Residuals are logarithmic (relative) and the
Jacobian is analytic (derivatives at fixed t: dg/dxi = g/J, dg/dt = -(J - 1)/J,
dg/dlog(lam) = -(J - 1) Delta_0 / J).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, ndtr

from theory._checks import check_positive
from theory.potential import prox_log_x, prox_u
from theory.quadrature import graded_edges, panel_rule

SQRT_2PI = math.sqrt(2.0 * math.pi)
LOG2 = math.log(2.0)


@dataclass(frozen=True)
class QuadratureSpec:
    """Resolution of the panel rule: nodes per panel, grading ratio, cut-off |t| <= L."""

    n: int = 8  # with ratio 2: eps within 5e-11 (rel.) of the refined rule, App. tests
    ratio: float = 2.0
    L: float = 10.0  # Dt mass beyond |t| = 10 is 1.5e-23
    fraction: float = 0.5  # first panel width, in units of the feature scale

    def refined(self) -> QuadratureSpec:
        """Twice the nodes per panel and a finer grading (for convergence checks)."""
        return QuadratureSpec(2 * self.n, math.sqrt(self.ratio), self.L + 2.0, self.fraction / 2)


DEFAULT_QUAD = QuadratureSpec()


@dataclass(frozen=True)
class Solution:
    """One saddle point (alpha, lam) -> (R, x, eps = arccos(R) / pi).

    converged is False when Newton did not reach |residual| <= tol; residual is the largest
    relative residual of Eq. 14a/14b at the returned point. log_x is kept because x itself
    can overflow (x ~ exp(2 lam kappa) for lam >> alpha, the max-stability regime).
    """

    alpha: float
    lam: float
    R: float
    x: float
    epsilon: float
    converged: bool
    residual: float
    log_x: float = math.nan
    theta: float = math.nan
    iterations: int = 0


@dataclass
class _Eval:
    """Residual F, Jacobian dF/d(xi, rho) and dF/dlog(lam) at one point."""

    F: np.ndarray
    jac: np.ndarray
    F_lam: np.ndarray


def _evaluate(alpha: float, lam: float, xi: float, rho: float, quad: QuadratureSpec) -> _Eval:
    theta = math.atan(math.exp(rho))
    s, R = math.sin(theta), math.cos(theta)
    L = quad.L
    d_lo = prox_log_x(-L, xi, lam)
    d_hi = prox_log_x(L, xi, lam)
    d_star = prox_log_x(0.0, xi, lam)  # Delta_0(0, x); there g = d_star
    j_star = 1.0 + 2.0 * lam * d_star * float(expit(2.0 * lam * d_star))
    kink = min(1.0 / lam, 1.0)
    centres = [(d_star, quad.fraction * min(s / j_star, kink)), (0.0, quad.fraction * kink)]
    edges = graded_edges(d_lo, d_hi, centres, quad.ratio)
    if j_star > 1.5:
        # dt/dDelta varies strongly near Delta_0(0, x) (lam x >> 1): add the images of
        # t-panels graded towards t = 0 on the scale s, where H and phi(t / s) live
        t_edges = graded_edges(-L, L, [(0.0, quad.fraction * s)], quad.ratio)[1:-1]
        mapped = prox_u(lam * t_edges, math.log(2.0 * lam) + xi) / lam
        edges = np.unique(np.concatenate([edges, mapped]))
    D, w = panel_rule(edges, quad.n)

    g = np.exp(LOG2 + xi - np.logaddexp(0.0, 2.0 * lam * D))  # bounded by L + |D| here
    jm1 = 2.0 * lam * g * expit(2.0 * lam * D)
    J = 1.0 + jm1
    t = D - g
    wt = w * J  # dt = J dDelta
    cot = R / s
    gauss_t = np.exp(-0.5 * t * t) / SQRT_2PI
    z = t / s
    gauss_z = np.exp(-0.5 * z * z) / SQRT_2PI
    Hw = ndtr(cot * t)  # H(-R t / s)

    a_w = wt * gauss_t  # Dt
    b_w = wt * gauss_z / s  # Dz with t = s z
    g2 = g * g
    A = a_w @ (Hw * g2)
    B = b_w @ g
    dA_dxi = a_w @ (Hw * 2.0 * g2 / J)
    dB_dxi = b_w @ (g / J)
    dA_dth = a_w @ (-np.exp(-0.5 * (cot * t) ** 2) / SQRT_2PI * t / (s * s) * g2)
    dB_dth = R * (b_w @ (z * (-jm1 / J)))  # dB/ds = int Dz z g'(s z)
    dg_dll = -jm1 * D / J
    dA_dll = a_w @ (Hw * 2.0 * g * dg_dll)
    dB_dll = b_w @ dg_dll

    with np.errstate(divide="ignore", invalid="ignore"):
        F = np.array(
            [
                math.log(2.0 * alpha * A) - 2.0 * math.log(s) if A > 0 else -np.inf,
                math.log(2.0 * alpha * B / SQRT_2PI) - math.log(R) if B > 0 else -np.inf,
            ]
        )
    sc = s * R  # dtheta/drho
    jac = np.array(
        [
            [dA_dxi / A, sc * dA_dth / A - 2.0 * R * R],
            [dB_dxi / B, sc * dB_dth / B + s * s],
        ]
    )
    return _Eval(F, jac, np.array([dA_dll / A, dB_dll / B]))


def _newton(alpha, lam, y0, tol, quad, max_iter=60):
    """Damped Newton on (xi, rho). Returns (y, eval, converged, iterations)."""
    y = np.array(y0, dtype=float)
    ev = _evaluate(alpha, lam, y[0], y[1], quad)
    norm = float(np.max(np.abs(ev.F)))
    for it in range(max_iter):
        if norm <= tol:
            return y, ev, True, it
        try:
            step = np.linalg.solve(ev.jac, -ev.F)
        except np.linalg.LinAlgError:
            return y, ev, False, it
        if not np.all(np.isfinite(step)):
            return y, ev, False, it
        # trust region in log units: tan(theta) changes by <= e^2, x by <= e^2 or, when
        # log x is large (lam >> alpha, log x ~ 2 lam kappa), log x by at most a factor 2
        shrink = max(abs(step[0]) / max(2.0, abs(y[0])), abs(step[1]) / 2.0)
        if shrink > 1.0:
            step /= shrink
        a = 1.0
        while a > 1e-6:
            y_new = y + a * step
            ev_new = _evaluate(alpha, lam, y_new[0], y_new[1], quad)
            n_new = float(np.max(np.abs(ev_new.F)))
            if np.isfinite(n_new) and n_new < (1.0 - 1e-4 * a) * norm:
                break
            a *= 0.5
        else:
            return y, ev, False, it
        y, ev, norm = y_new, ev_new, n_new
    return y, ev, norm <= tol, max_iter


def sigma0(lam: float, quad: QuadratureSpec = DEFAULT_QUAD) -> float:
    """Sigma_0(lam) = int_{t>0} Dt [V'_lam(t)]^2 = int_{t>0} Dt (1 - tanh lam t)^2 (App. D)."""
    kink = min(1.0 / lam, 1.0)
    t, w = panel_rule(graded_edges(0.0, quad.L, [(0.0, quad.fraction * kink)]), quad.n)
    return float(w @ (np.exp(-0.5 * t * t) / SQRT_2PI * (2.0 * expit(-2.0 * lam * t)) ** 2))


def asymptotic_guess(alpha: float, lam: float) -> tuple[float, float]:
    """(xi, rho) from Appendix D: x ~ sqrt(pi/2) R / alpha, tan(theta)^2 ~ pi Sigma_0 / alpha.

    Exact (Hebb) for lam -> 0 at every alpha; good for lam << alpha at large alpha.
    """
    tan_theta = math.sqrt(math.pi * sigma0(lam) / alpha)
    R = 1.0 / math.sqrt(1.0 + tan_theta**2)
    return math.log(math.sqrt(math.pi / 2.0) * R / alpha), math.log(tan_theta)


def _solution(alpha, lam, y, ev, converged, iterations) -> Solution:
    theta = math.atan(math.exp(y[1]))
    return Solution(
        alpha=alpha,
        lam=lam,
        R=math.cos(theta),
        x=math.exp(y[0]) if y[0] < 709.0 else math.inf,
        epsilon=theta / math.pi,
        converged=bool(converged),
        residual=float(np.max(np.abs(ev.F))),
        log_x=float(y[0]),
        theta=theta,
        iterations=iterations,
    )


def tangent(sol: Solution, quad: QuadratureSpec = DEFAULT_QUAD) -> np.ndarray:
    """d(xi, rho)/dlog(lam) at a solution (implicit function theorem on Eq. 14)."""
    ev = _evaluate(sol.alpha, sol.lam, sol.log_x, math.log(math.tan(sol.theta)), quad)
    return np.linalg.solve(ev.jac, -ev.F_lam)


def predict(y: np.ndarray, dy: np.ndarray, h: float) -> np.ndarray:
    """Tangent predictor over a step h in log(lam); log x is extrapolated in log-log when
    large, because log x ~ 2 lam kappa grows like lam (not like log lam) for lam >> alpha."""
    out = y + h * dy
    if y[0] > 1.0 and dy[0] > 0.0:
        out[0] = y[0] * math.exp(min(h * dy[0] / y[0], 5.0))
    return out


def _continuation(alpha, lam, tol, quad):
    """Follow the branch in lam, from where the App. D / Hebb guess holds, with a tangent
    predictor."""
    for lam_start in (max(1e-3, min(lam, 0.1 * alpha, 1.0)), 1e-3):
        y, ev, ok, _ = _newton(alpha, lam_start, asymptotic_guess(alpha, lam_start), tol, quad)
        if ok:
            break
    else:
        return None
    ll, ll_end = math.log(lam_start), math.log(lam)
    h, total = 0.5, 0
    while ll < ll_end:
        dy = np.linalg.solve(ev.jac, -ev.F_lam)
        h_try = min(h, ll_end - ll)
        y_new, ev_new, ok, it = _newton(
            alpha, math.exp(ll + h_try), predict(y, dy, h_try), tol, quad
        )
        total += it
        if ok:
            y, ev, ll = y_new, ev_new, ll + h_try
            h = min(2.0 * h, 2.0) if it <= 3 else h
        else:
            h *= 0.5
            if h < 1e-4:
                return None  # stuck short of lam: no point *at lam* to report from here
    return y, ev, True, total


def solve_point(
    alpha: float,
    lam: float,
    *,
    tol: float = 1e-9,
    guess: Solution | tuple[float, float] | None = None,
    quad: QuadratureSpec = DEFAULT_QUAD,
) -> Solution:
    """Solve Eq. 14a/14b at (alpha, lam); eps = arccos(R) / pi.

    guess: a nearby Solution (used with a tangent predictor in lam) or (x, R). Without one,
    the Appendix-D asymptotics are tried first, then continuation from the Hebb limit.
    Never returns a silent number: converged=False and the residual when Newton fails.
    """
    alpha = check_positive("alpha", alpha)
    lam = check_positive("lam", lam)
    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    if isinstance(guess, Solution):
        y0 = np.array([guess.log_x, math.log(math.tan(guess.theta))])
        if guess.alpha == alpha and guess.lam != lam:
            y0 = predict(y0, tangent(guess, quad), math.log(lam / guess.lam))
    elif guess is not None:
        x0, R0 = guess
        y0 = np.array([math.log(x0), math.log(math.sqrt(1.0 - R0 * R0) / R0)])
    else:
        y0 = np.array(asymptotic_guess(alpha, lam))
    y, ev, ok, it = _newton(alpha, lam, y0, tol, quad)
    if not ok:
        path = _continuation(alpha, lam, tol, quad)
        if path is not None:
            y, ev, ok, it2 = path
            it += it2
    return _solution(alpha, lam, y, ev, ok, it)
