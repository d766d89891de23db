"""Least-squares laws, batched over rows of bootstrap weights (Eq. 2, 3 and eps_opt(P)).

Every function fits one law per row of (R, n) arrays X, Y under a boolean mask, all rows at
once: the bootstrap re-fits thousands of resamples and a Python loop per row would dominate
the report's run time. fit_law returns a LawFit, one typed record per law (exponent, prefactor,
offset, standard error, whether the offset was kept, number of points).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.stats import f as f_dist


@dataclass
class LawFit:
    """One law y = k x^-gamma + q fitted per row; every field has shape (R,)."""

    gamma: np.ndarray
    k: np.ndarray
    q: np.ndarray
    se: np.ndarray  # least-squares standard error of gamma
    offset: np.ndarray  # bool: q was fitted (not fixed at 0)
    npts: np.ndarray  # points in the fit
    dof: np.ndarray  # degrees of freedom behind se (points less parameters; curves less 1)

    def without_few(self, min_points: int = 3) -> LawFit:
        """NaN where the fit had fewer than min_points: a line through two points has no check
        and no error, so nothing is reported rather than it."""
        few = self.npts < min_points
        nan = lambda a: np.where(few, np.nan, a)  # noqa: E731
        return LawFit(
            nan(self.gamma),
            nan(self.k),
            nan(self.q),
            nan(self.se),
            self.offset,
            self.npts,
            nan(self.dof),
        )

    @staticmethod
    def concat(parts: list[LawFit]) -> LawFit:
        return LawFit(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(LawFit))
        )


def fit_line(X: np.ndarray, Y: np.ndarray, mask: np.ndarray):
    """Row-wise least-squares line Y = c + a X over masked points: (a, c, se_a, sse, n)."""
    w = mask.astype(float)
    X = np.where(mask, X, 0.0)
    Y = np.where(mask, Y, 0.0)
    n = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = (w * X).sum(1) / n, (w * Y).sum(1) / n
        sxx = (w * (X - mx[:, None]) ** 2).sum(1)
        a = (w * (X - mx[:, None]) * (Y - my[:, None])).sum(1) / sxx
        c = my - a * mx
        sse = (w * (Y - c[:, None] - a[:, None] * X) ** 2).sum(1)
        se = np.sqrt(sse / (n - 2) / sxx)
    bad = n < 2
    a[bad] = c[bad] = np.nan
    se = np.where(n > 2, se, np.nan)
    return a, c, se, sse, n


def _model(theta, X, qs):
    z = np.exp(np.clip(theta[:, 0:1] + theta[:, 1:2] * X, -700, 700))
    return z, z + theta[:, 2:3] * qs


def fit_offset(
    X: np.ndarray, Y: np.ndarray, mask: np.ndarray, iters: int = 80, q_floor: float = 0.0
):
    """Row-wise least squares of Y = log(k e^(aX) + q), q_floor min e^Y <= q < min e^Y
    (log-space Eq. 2/3; q_floor < 0 lets q go negative while the model stays positive).

    Levenberg-Marquardt on (log k, a, q / q_max) for all rows at once, started from the q = 0
    line; q / q_max is projected into [q_floor, 0.999]. Returns a, log k, q, sse, cov (R, 3, 3), n.
    """
    a0, c0, _, sse0, n = fit_line(X, Y, mask)
    qs = np.where(mask, np.exp(np.where(mask, Y, 0.0)), np.inf).min(axis=1)[:, None]
    qs = np.where(np.isfinite(qs), qs, 1.0)
    theta = np.stack([c0, a0, np.zeros_like(a0)], axis=1)
    theta = np.where(np.isfinite(theta), theta, 0.0)
    Xm, Ym = np.where(mask, X, 0.0), np.where(mask, Y, 0.0)

    def resid(th):
        z, m = _model(th, Xm, qs)
        r = np.where(mask, Ym - np.log(np.maximum(m, 1e-300)), 0.0)
        return r, z, m

    r, z, m = resid(theta)
    cost = (r**2).sum(1)
    damp = np.full(len(X), 1e-3)
    for _ in range(iters):
        J = -np.stack([z / m, Xm * z / m, qs / m], axis=2) * mask[:, :, None]
        JtJ = J.transpose(0, 2, 1) @ J  # batched BLAS, much faster than einsum here
        g = (J.transpose(0, 2, 1) @ r[:, :, None])[:, :, 0]
        D = np.einsum("rii->ri", JtJ) + 1e-12
        A = JtJ + damp[:, None, None] * (D[:, :, None] * np.eye(3))
        try:
            step = -np.linalg.solve(A, g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            # a rank-deficient row (e.g. q collinear with k on noiseless curves) once the
            # damping has shrunk: the pseudo-inverse takes the minimum-norm step instead
            step = -(np.linalg.pinv(A) @ g[:, :, None])[:, :, 0]
        new = theta + np.where(np.isfinite(step), step, 0.0)
        new[:, 2] = np.clip(new[:, 2], q_floor, 0.999)
        r2, z2, m2 = resid(new)
        cost2 = (r2**2).sum(1)
        better = cost2 < cost
        rel = np.where(better, (cost - cost2) / np.maximum(cost, 1e-300), 0.0)
        theta = np.where(better[:, None], new, theta)
        r = np.where(better[:, None], r2, r)
        z = np.where(better[:, None], z2, z)
        m = np.where(better[:, None], m2, m)
        cost = np.where(better, cost2, cost)
        damp = np.where(better, np.maximum(damp / 3, 1e-12), damp * 4)
        if np.all((rel < 1e-12) & (damp > 1e6) | better & (rel < 1e-14)):
            break
    J = -np.stack([z / m, Xm * z / m, qs / m], axis=2) * mask[:, :, None]
    JtJ = J.transpose(0, 2, 1) @ J
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = cost / (n - 3)
        cov = np.linalg.pinv(JtJ) * s2[:, None, None]
    q = theta[:, 2] * qs[:, 0]
    cov[:, 2, :] *= qs
    cov[:, :, 2] *= qs
    bad = n < 3
    theta[bad] = np.nan
    return theta[:, 1], theta[:, 0], np.where(bad, np.nan, q), cost, cov, n, theta[:, 2], sse0


def fit_law(X, Y, mask, sign: float, select: bool = True, offset: bool = True) -> LawFit:
    """Eq. 2/3 fit per row, with the offset q when there are >= 4 points (offset=False: a
    pure power law, the least-squares line in log-log).

    select=True keeps a positive offset only if an F-test says the data determine it (Eq. 2:
    hundreds of points in the window, so the test has power). select=False always keeps it,
    of either sign (the laws in P: 4 to 13 points, where an F-test at 5% drops a real offset
    most of the time and the q = 0 fit it falls back to is biased; on synthetic sweeps with a
    true offset that bias took 95% intervals of gamma_meas down to 68% coverage).
    sign is -1 for a decreasing law (gamma = -slope, Eq. 2 and eps_opt(P)), +1 for Eq. 3.
    """
    keep = mask.any(axis=0)  # drop columns no row uses (most of the grid is outside the window)
    X, Y, mask = X[:, keep], Y[:, keep], mask[:, keep]
    if not keep.any():  # no row has points (e.g. no window found anywhere): nothing to fit
        nan, none = np.full(len(X), np.nan), np.zeros(len(X))  # n = 0 points, not NaN points
        return LawFit(nan, nan, nan, nan, nan > 0, none, nan)
    a0, c0, se0, sse0, n = fit_line(X, Y, mask)
    # a selected offset must be positive (the test keeps it only then); an always-fitted one
    # may go negative, or a true q = 0 would sit on the bound in half the resamples and bias
    # gamma up (synthetic, q2 = q3 = 0: +0.009 in gamma2, coverage 89% -> 96%)
    floor = 0.0 if select else -1e6
    a1, c1, q1, sse1, cov, _, frac, _ = fit_offset(X, Y, mask, q_floor=floor)
    with np.errstate(invalid="ignore", divide="ignore"):
        F = (sse0 - sse1) / (sse1 / (n - 3))
    crit = f_dist.ppf(0.95, 1, np.maximum(n - 3, 1))
    gain = (sse0 - sse1) > 1e-12 * (1.0 + sse0)
    offset = (n >= 4) & np.isfinite(a1) & offset
    if select:
        offset &= gain & ((F > crit) | (sse1 <= 1e-300)) & (frac < 0.99) & (q1 > 0)
    se1 = np.sqrt(np.abs(cov[:, 1, 1]))
    return LawFit(
        gamma=sign * np.where(offset, a1, a0),
        k=np.exp(np.where(offset, c1, c0)),
        q=np.where(offset, q1, 0.0),
        se=np.where(offset, se1, se0),
        offset=offset,
        npts=n,
        dof=n - np.where(offset, 3, 2),
    )


def fit_slope_within(X: np.ndarray, Y: np.ndarray, mask: np.ndarray, sign: float) -> LawFit:
    """Eq. 2 as a pure power law with one exponent and a prefactor per curve, per row.

    X, Y, mask (R, nP, B): log x, log y of nP curves. The common slope is the least-squares
    slope within the curves (each curve's own mean taken out), so an error in a curve's
    optimum, which shifts its log y by a constant (log eps_opt; through a power law also log
    lambda_opt), does not move it: the authors' per-curve lines (App. F) pooled. Its standard
    error is cluster-robust over the curves (CR1): residuals along one smooth curve are not
    independent, the curves are (each P has its own runs), so the spread between curves sets
    it. k is the prefactor of the mean curve, q = 0."""
    w = mask.astype(float)
    nc = w.sum(axis=2, keepdims=True)  # points per curve
    with np.errstate(invalid="ignore", divide="ignore"):
        Xm = np.where(mask, X, 0.0)
        Ym = np.where(mask, Y, 0.0)
        mx = np.where(nc > 0, Xm.sum(axis=2, keepdims=True) / nc, 0.0)
        my = np.where(nc > 0, Ym.sum(axis=2, keepdims=True) / nc, 0.0)
        dx, dy = w * (Xm - mx), w * (Ym - my)
        sxx = (dx * dx).sum(axis=(1, 2))
        a = (dx * dy).sum(axis=(1, 2)) / sxx
        e = dy - a[:, None, None] * dx  # within residuals
        score = (dx * e).sum(axis=2)  # (R, nP) each curve's share of the normal equation
        G = (nc[:, :, 0] >= 2).sum(axis=1)  # curves that carry the slope
        se = np.sqrt((score**2).sum(axis=1) * G / (G - 1)) / sxx
        n = w.sum(axis=(1, 2))
        c = (Ym.sum(axis=(1, 2)) - a * Xm.sum(axis=(1, 2))) / n
    ok = (G >= 1) & (sxx > 0)
    return LawFit(
        gamma=np.where(ok, sign * a, np.nan),
        k=np.where(ok, np.exp(c), np.nan),
        q=np.zeros(len(a)),
        se=np.where(G >= 2, se, np.nan),  # one curve: no spread between curves to measure
        offset=np.zeros(len(a), dtype=bool),
        npts=n,
        dof=(G - 1).astype(float),  # CR1: as many independent scores as curves, less the mean
    )
