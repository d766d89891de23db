"""Derived quantities of the fixed-norm theory: local slope (Fig. 8) and the optimum (Eq. 3).

The slope d log eps / d log lam is exact up to quadrature error: the implicit function
theorem applied to Eq. 14a/14b gives d(log x, log tan theta)/d log lam from the same
analytic Jacobian Newton uses, and d log eps = (sin theta cos theta / theta) d log tan theta.
lam_opt is the root of that slope (Brent's method in log lam), not a grid minimum.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq

from theory._checks import check_positive
from theory.saddle import DEFAULT_QUAD, QuadratureSpec, Solution, solve_point, tangent


def _converged(sol: Solution) -> Solution:
    if not sol.converged:
        raise RuntimeError(
            f"saddle point did not converge at alpha={sol.alpha:g}, lam={sol.lam:g} "
            f"(residual {sol.residual:.2e})"
        )
    return sol


def slope_at(sol: Solution, quad: QuadratureSpec = DEFAULT_QUAD) -> float:
    """d log eps / d log lam at a converged Solution."""
    d_rho = tangent(_converged(sol), quad)[1]
    th = sol.theta
    return math.sin(th) * math.cos(th) / th * d_rho


def local_slope(alpha: float, lam: float, *, tol: float = 1e-10) -> float:
    """d log eps / d log lam at (alpha, lam) (Fig. 8; -> -1/2 for 1 << lam << alpha, Eq. 20)."""
    return slope_at(solve_point(alpha, lam, tol=tol))


def optimum(alpha: float, *, tol: float = 1e-10) -> tuple[float, float]:
    """(lam_opt, eps_opt): the minimum of eps(lam) at fixed alpha, by a root of the slope."""
    alpha = check_positive("alpha", alpha)
    cache: dict[str, Solution | None] = {"last": None}

    def slope(log_lam: float) -> float:
        sol = _converged(solve_point(alpha, math.exp(log_lam), tol=tol, guess=cache["last"]))
        cache["last"] = sol
        return slope_at(sol)

    # eps falls from the Hebb value at small lam and rises to max-stability at large lam;
    # lam_opt ~ alpha at large alpha, ~ 1 at small alpha: bracket outwards from there
    lo = hi = math.log(max(1.0, alpha))
    s_lo = s_hi = slope(lo)
    while s_lo > 0.0:
        hi, s_hi = lo, s_lo
        lo -= 1.0
        s_lo = slope(lo)
    while s_hi < 0.0:
        lo, s_lo = hi, s_hi
        hi += 1.0
        s_hi = slope(hi)
    if lo == hi:
        return math.exp(lo), solve_point(alpha, math.exp(lo), tol=tol).epsilon
    log_opt = brentq(slope, lo, hi, xtol=1e-10, rtol=1e-12)
    lam_opt = math.exp(log_opt)
    sol = _converged(solve_point(alpha, lam_opt, tol=tol, guess=cache["last"]))
    return lam_opt, sol.epsilon
