"""Collapse of learning curves onto the master curve (Eq. 4) and its quality measure.

All curves of a group live on one common grid in u = log(lambda) with step h (see fit.py). In the
collapsed variable log x = u - log lambda_opt(P), curve P' seen at the points of curve P is curve
P' shifted by the fractional index d = (log lambda_opt(P') - log lambda_opt(P)) / h. That turns
every cross-curve interpolation into one vectorised shifted read, for all bootstrap resamples at
once (arrays have a leading resample axis R).

Quality measure: Houdayer & Hartmann, Phys. Rev. B 70, 014418 (2004), in log space:

    S = 1/N sum_{P, b} (y_Pb - Y_Pb)^2 / (dy_Pb^2 + dY_Pb^2),

where y = log(eps / eps_opt(P)) is curve P at its bin b, dy its standard error over seeds, Y the
mean of the other curves interpolated at the same x and dY the standard error of that mean; only
points where at least one other curve overlaps count (N of them). S ~ 1 means the curves agree
within their seed noise (a good collapse); S >> 1 means systematic departures. With one seed per
P there are no errors: S is undefined and the root-mean-square log deviation |y - Y| is given.
"""

from __future__ import annotations

import numpy as np


def shifted(curve: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """curve[r, b + shift[r]] by linear interpolation; NaN outside the curve or next to a hole.

    curve: (R, B); shift: (R,) fractional index offsets.
    """
    R, B = curve.shape
    shift = np.where(np.isfinite(shift), shift, np.inf)[:, None]
    pos = np.arange(B)[None, :] + shift
    ok = (pos >= 0) & (pos <= B - 1)
    i0 = np.clip(np.floor(np.where(ok, pos, 0)).astype(int), 0, B - 1)
    i1 = np.clip(i0 + 1, 0, B - 1)
    f = np.where(ok, pos, 0) - i0
    v0 = np.take_along_axis(curve, i0, axis=1)
    v1 = np.take_along_axis(curve, i1, axis=1)
    # at an exact grid point the right neighbour may be a hole: do not let it poison the value
    v1 = np.where(f == 0, v0, v1)
    out = (1 - f) * v0 + f * v1
    return np.where(ok, out, np.nan)


def houdayer_hartmann(
    y: np.ndarray, dy2: np.ndarray | None, L: np.ndarray, h: float, used: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S, rms log deviation and number of compared points, one per resample row.

    y, dy2: (R, nP, B) collapsed log curves and their squared standard errors (None: unknown);
    L: (R, nP) log lambda_opt; used: (R, nP) bool, the curves that take part.
    """
    R, nP, B = y.shape
    num = np.zeros(R)
    dev2 = np.zeros(R)
    n = np.zeros(R)
    for p in range(nP):
        # every row may use a different set of curves: mask the others row by row
        ys = np.stack(
            [shifted(y[:, q], (L[:, q] - L[:, p]) / h) for q in range(nP)], axis=1
        )  # (R, nP, B)
        use_q = used.copy()
        use_q[:, p] = False
        ys = np.where(use_q[:, :, None], ys, np.nan)
        m = np.sum(np.isfinite(ys), axis=1)
        Y = np.nansum(ys, axis=1) / np.maximum(m, 1)
        ok = (m > 0) & np.isfinite(y[:, p]) & used[:, p][:, None]
        d2 = np.where(ok, (y[:, p] - Y) ** 2, 0.0)
        dev2 += d2.sum(axis=1)
        n += ok.sum(axis=1)
        if dy2 is not None:
            e2 = np.stack([shifted(dy2[:, q], (L[:, q] - L[:, p]) / h) for q in range(nP)], axis=1)
            e2 = np.where(use_q[:, :, None], e2, np.nan)
            dY2 = np.nansum(e2, axis=1) / np.maximum(m, 1) ** 2
            den = dy2[:, p] + dY2
            ok2 = ok & (den > 0) & np.isfinite(den)
            num += np.where(ok2, d2 / np.where(ok2, den, 1.0), 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        S = np.where(n > 0, num / n, np.nan) if dy2 is not None else np.full(R, np.nan)
        rms = np.where(n > 0, np.sqrt(dev2 / n), np.nan)
    return S, rms, n


def deviation_from_reference(
    y: np.ndarray, L: np.ndarray, h: float, reference: np.ndarray
) -> np.ndarray:
    """Per curve, the rms log distance to the mean of the reference curves, for x <= x_max.

    Used by the automatic P_min rule (fit.py): small-P curves that have not joined the master
    curve stand out. The caller blanks y where x is outside the range to compare.
    y: (R, nP, B); L: (R, nP); reference: (R, nP) bool. Returns (R, nP).
    """
    R, nP, B = y.shape
    out = np.full((R, nP), np.nan)
    for p in range(nP):
        ys = np.stack([shifted(y[:, q], (L[:, q] - L[:, p]) / h) for q in range(nP)], axis=1)
        ref = reference.copy()
        ref[:, p] = False
        ys = np.where(ref[:, :, None], ys, np.nan)
        m = np.sum(np.isfinite(ys), axis=1)
        Y = np.nansum(ys, axis=1) / np.maximum(m, 1)
        ok = (m > 0) & np.isfinite(y[:, p])
        d2 = np.where(ok, (y[:, p] - Y) ** 2, 0.0)
        k = ok.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, p] = np.where(k > 0, np.sqrt(d2.sum(axis=1) / np.maximum(k, 1)), np.nan)
    return out
