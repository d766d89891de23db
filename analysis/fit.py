"""Scaling exponents of learning curves with bootstrap intervals (Eq. 2-5, Appendix F).

The pipeline (analyse); its pieces live in small modules: results (Choices, Estimate,
GroupResult, JSON), optimum (per-seed optimum and the common grid), laws (batched least
squares), collapse, bootstrap. The pipeline for one group, in the order it runs:

1. Per seed curve, once (no grid quantisation): sort by lambda, smooth log eps over +-0.05
   decades, find the minimum, and fit a parabola to log eps vs log lambda over the points
   within delta of it (delta = max(0.02, 2 x the point noise)); its vertex is (lambda_opt,
   eps_opt) of the seed. A curve that falls and then saturates (stays within delta of its
   lowest level over at least half a decade of lambda up to its end) has its optimum at the
   start of that plateau (lambda_opt) with eps_opt the plateau's mean level. Otherwise, if the
   curve does not rise by delta after (or before) its minimum, the minimum is at the edge:
   flagged and left out of every optimum-based step, except under rule 1b.
1b. End of training (rule "flat end"; real curves, e.g. the authors' ResNet runs, often stop
   near their optimum, still falling slowly): when at least half of a group's curves end at
   their minimum or on a plateau, the plateau curves, too, take their lowest point as the
   optimum (one convention per group), and every curve that has flattened (its final slope,
   over the last fifth of its log-lambda span, is at most a third of its steepest slope;
   scale-free, so a ViT curve over 30 decades reads like a CNN curve over one) keeps its
   last-point optimum, as the paper's hand analysis does; flagged. A lone curve cut short
   still counts as at the edge (it is more likely a run stopped early than a saturated one).
   The curve is also put on a common grid in u = log lambda (step 0.05 decades): bin means of
   log eps, holes inside the curve filled by linear interpolation; a non-monotone norm (weight
   decay) is handled here because bins average all visits of a lambda range.
2. Per P: log lambda_opt(P) and log eps_opt(P) are the means over seeds of the seed values
   (geometric means; the seed is the unit of independence); the seed-averaged curve is the
   mean of the seeds' binned log eps.
3. P_min (rule "auto:collapse"): each curve's rms log distance, for x = lambda/lambda_opt <= 1,
   to the mean of the upper half of the P values (the reference master curve); a P passes if
   it is within max(0.05, 3 x the median distance among the reference curves); P_min is the
   smallest P from which on every P passes and reaches its minimum.
4. Window (rule "auto:slope", the paper's "pure power-law region", App. F): on each used P's
   collapsed curve, the local log-log slope by least squares over +-h bins, h = 1/16 of the
   median seed's descent from its first point to lambda_opt (at least 4 bins; scale-free, so
   a ViT curve over 30 decades of norm reads like a CNN curve over one); then the mean of
   these slopes over the used P at each x < 1, where at least half of them (and two) have
   one. One profile, not one run per curve: a single noisy or short curve neither shrinks
   nor moves the window. The window is the contiguous run, around the profile's steepest
   point, whose slope is at least 0.8 of the steepest: with Eq. 2, s/s_max = k1 x^-gamma1 /
   (k1 x^-gamma1 + q1), so it holds the points where the power law carries at least 4 times
   the offset. A run that starts at x < 0.3 ends there at the latest (Eq. 2 is the early
   regime; nearer the minimum its bend tilts the offset fit: on synthetic sweeps of 10 P x
   10 seeds a window to x = 0.42 biased gamma1 by +0.0006, a bootstrap sd, and the 95%
   intervals covered the truth in 88.5%); a run wholly beyond 0.3 is kept where the curves
   fall (the authors' CNN under L1, Frobenius and (2,1) norms fall only at 0.5 <= x <= 0.8,
   where they fitted them). A lower fraction widens the window into the regimes where the local
   exponent is still growing (the perceptron's small-lambda Hebbian regime, App. D, Eq. 21)
   and biases gamma1 low (0.7: free-norm perceptron 0.456 [0.438, 0.470], against 0.464
   [0.447, 0.482] at 0.8 and the paper's 0.4901, Fig. 9).
5. gamma1, k1, q1: least squares of log(eps/eps_opt) against log(k1 x^-gamma1 + q1) (Eq. 2)
   over every used curve's binned points in the window; gamma2, k2, q2 from log lambda_opt(P)
   against log(k2 P^gamma2 + q2) (Eq. 3); gamma_meas from eps_opt(P) = k P^-gamma + q. These
   two laws in P take every P with an optimum, not only P >= the automatic P_min: Eq. 3 and
   eps_opt(P) hold over the whole range with their offsets (Sec. 3), the collapse rule only
   says where the curves collapse (Eq. 4), which gamma1 needs; the authors, too, fitted
   lambda_0(P) over all P in most groups (groups.json, gamma2_P_range). A P_min the user
   gives (or the perceptron's alpha > 25, Fig. 9) says where scaling starts and holds for
   every law.
   Offsets need >= 4 points and stay below the smallest value. q1 is kept only if it is
   significant (F-test at 5%), positive and not at its upper bound; q2 and the offset of
   eps_opt(P) are always fitted, of either sign (laws.fit_law says why: the bootstrap
   intervals need it). With one seed per P (rule "pure laws"; e.g. the authors' published
   seed-averaged curves) every law is a pure power law, the paper's own fits: there is no
   bootstrap to measure what an offset costs, and the F-test that could decide is not valid
   there. Eq. 2's binned points of one smooth averaged curve per P have systematic, not
   independent, residuals, so it keeps any offset (on the authors' CNN/SGD curves q1 = 1.3
   took gamma1 to 2.4, the paper's 0.47); on ~10 points of lambda_opt(P) a kept q2 took
   ViT/L1's gamma2 to 1.13 +- 0.24 (pure: 0.615 +- 0.083, the paper's 0.617 +- 0.056), and a
   free offset of eps_opt(P) absorbs the power law (gamma_meas ~0.2 to ~0.05). The window
   (step 4) is where the power law carries at least 4 times the offset. A q fixed at 0 is
   flagged. With one seed per P, Eq. 2 is fitted with one exponent and a prefactor per
   curve (laws.fit_slope_within, the authors' per-P lines pooled): an error in a curve's
   optimum shifts its log y by a constant and no longer tilts the fit (pooled with one
   prefactor, the authors' ViT/L1 curves gave 0.367 +- 0.085; within the curves 0.385 +-
   0.007, the paper 0.409; given the authors' P_min and window, gamma1 within 15% of the
   paper's in 21 of 21 groups, 20 with one prefactor). The errors are then fit-based
   (flagged): gamma1's cluster-robust over the curves (each P is its own runs, the points
   along one smooth curve are not independent), the laws in P their least-squares ones; each
   with its degrees of freedom (curves - 1, points - 2; Welch-Satterthwaite for gamma_pred
   and gamma_diff), for the verdict's Student t threshold (analysis.verdict).
6. gamma_pred = gamma1 gamma2 (Eq. 5), gamma_diff = gamma_pred - gamma_meas; collapse S
   (collapse.py).

Every step runs on a matrix of seed weights (bootstrap.py), so the bootstrap re-runs all of it,
automatic choices included, in every resample. Choices.paper_mode runs the authors' own
procedure instead (analysis.paper).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis import bootstrap as bs
from analysis import collapse as cl
from analysis import paper
from analysis.laws import LawFit, fit_law, fit_slope_within
from analysis.optimum import BIN, FLAT_RATIO, Prepared, clean, prepare, seed_optimum
from analysis.results import (
    Choices,
    Estimate,
    GroupResult,
    as_float,
    master_curve,
    num,
    power_law,
)

__all__ = [
    "Choices",
    "Estimate",
    "GroupResult",
    "analyse",
    "master_curve",
    "power_law",
    "seed_optimum",
]

SLOPE_HALF = 4  # local slope over at least +-4 bins (0.4 decades): noise needs the averaging
SLOPE_SPAN = 1 / 16  # ... and over +-1/16 of the descent to lambda_opt (scale-free)
SLOPE_FRACTION = 0.8  # window: the run around the steepest point with slope >= 0.8 of it
X_CAP = 0.3  # ... ending by x = 0.3 if it starts before (Eq. 2, the early regime)
MIN_SEEDS = 5
EDGE_MAJORITY = 0.5  # end-of-training rule: at least half the curves end at their minimum


@dataclass
class Rows:
    """The pipeline's numbers for R rows of seed weights (row 0: the data themselves)."""

    L: np.ndarray  # (R, nP) log lambda_opt
    E: np.ndarray  # (R, nP) log eps_opt
    used: np.ndarray  # (R, nP) P in the fits
    valid: np.ndarray  # (R, nP) P has an optimum
    p_min: np.ndarray  # (R,)
    win_lo: np.ndarray  # (R,) window, lambda/lambda_opt (NaN: none found)
    win_hi: np.ndarray
    has_run: np.ndarray  # (R, nP) P has points in the window
    in_P: np.ndarray  # (R, nP) P in the laws in P (Eq. 3, eps_opt(P); step 5)
    law1: LawFit  # Eq. 2 on the collapsed curves
    law2: LawFit  # Eq. 3: lambda_opt(P)
    law_meas: LawFit  # eps_opt(P)
    S: np.ndarray  # collapse (collapse.py)
    rms: np.ndarray
    n_coll: np.ndarray

    @property
    def gamma_pred(self) -> np.ndarray:
        return self.law1.gamma * self.law2.gamma  # Eq. 5

    @property
    def gamma_diff(self) -> np.ndarray:
        return self.gamma_pred - self.law_meas.gamma

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        out = {}
        for f in fields(Rows):
            vals = [getattr(p, f.name) for p in parts]
            out[f.name] = (
                LawFit.concat(vals) if isinstance(vals[0], LawFit) else np.concatenate(vals)
            )
        return Rows(**out)


# ---------------------------------------------------------------------------- pipeline rows


def _curves(pre: Prepared, W: np.ndarray):
    """Per row: seed-averaged curves on the grid and per-P optima.

    Returns m (R, nP, B) mean log eps at the grid centres, dy2 (R, nP, B) its squared standard
    error over seeds, L, E (R, nP) log lambda_opt, log eps_opt, valid (R, nP).
    """
    R, nP, B = len(W), len(pre.P), len(pre.u)
    m, dy2 = np.full((R, nP, B), np.nan), np.full((R, nP, B), np.nan)
    L, E = np.full((R, nP), np.nan), np.full((R, nP), np.nan)
    for p in range(nP):
        idx = pre.strata == p
        w = W[:, idx]
        vals = pre.M[idx]
        present = np.isfinite(vals)
        v0 = np.where(present, vals, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            C = w @ present
            m[:, p] = (w @ v0) / C
            var = np.maximum((w @ v0**2) / C - m[:, p] ** 2, 0.0)
            dy2[:, p] = np.where(C > 1, var / (C - 1), np.nan)
        wv = w * ~pre.edge[idx]
        sw = wv.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            L[:, p] = np.where(sw > 0, (wv @ pre.lu[idx]) / sw, np.nan)
            E[:, p] = np.where(sw > 0, (wv @ pre.lv[idx]) / sw, np.nan)
    return m, dy2, L, E, np.isfinite(L)


def _auto_p_min(pre, y, L, valid):
    """Rule "auto:collapse" (module docstring, step 3). Returns used (R, nP)."""
    R, nP = valid.shape
    early = np.where(pre.u[None, None, :] - L[:, :, None] <= 0.0, y, np.nan)
    rank_from_top = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1]  # 1 = largest valid P
    n_valid = valid.sum(axis=1, keepdims=True)
    ref = valid & (rank_from_top <= np.maximum(2, np.ceil(n_valid / 2)))
    D = cl.deviation_from_reference(early, L, BIN, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows with no reference curve: NaN
        tol = np.maximum(0.05, 3.0 * np.nanmedian(np.where(ref, D, np.nan), axis=1))
    tol = np.where(np.isfinite(tol), tol, 0.05)
    fails = valid & (D > tol[:, None])
    idx = np.arange(nP)[None, :]
    start = np.where(fails, idx, -1).max(axis=1) + 1
    used = valid & (idx >= start[:, None])
    # keep at least three curves when there are three valid ones: take the largest valid P
    few = (used.sum(axis=1) < 3) & (n_valid[:, 0] >= 3)
    used[few] = valid[few] & (rank_from_top[few] <= 3)
    return used


def _slope_half(pre: Prepared) -> int:
    """Half-width, in bins, of the local-slope fit: a fixed fraction of the median seed's
    descent (first point to lambda_opt), so that a ViT curve over 30 decades of norm is read
    like a CNN curve over one; at least SLOPE_HALF bins (noise). From the data, not the
    resample, so every bootstrap row uses the same rule."""
    first = np.argmax(np.isfinite(pre.M), axis=1)
    descent = (pre.lu - pre.u[first]) / BIN
    ok = np.isfinite(descent) & ~pre.edge
    if not ok.any():
        return SLOPE_HALF
    return max(SLOPE_HALF, int(round(SLOPE_SPAN * float(np.median(descent[ok])))))


def _auto_window(pre, m, logx, used):
    """Rule "auto:slope" (module docstring, step 4). Returns log lo, log hi (R,) and which
    used P have points in the window (R, nP).

    The local slope s (R, nP, B) of every used curve, logx (R, nP, B) its log x, is put on one
    grid of log x (bins of BIN) and averaged over the P present; the run is read off that mean
    profile (R, K)."""
    R, nP, B = m.shape
    h = _slope_half(pre)
    j = np.arange(-h, h + 1)
    s = np.full_like(m, np.nan)
    if B > 2 * h:
        s[:, :, h : B - h] = sum(jj * m[:, :, h + jj : B - h + jj] for jj in j) / (
            BIN * np.sum(j**2)
        )
    with np.errstate(invalid="ignore"):
        valid = used[:, :, None] & np.isfinite(s) & (logx <= 0.0)
    if not valid.any():
        return np.full(R, np.nan), np.full(R, np.nan), np.zeros((R, nP), bool)
    k = np.rint(np.where(valid, logx, 0.0) / BIN).astype(int)
    k0 = int(k[valid].min())
    K = 1 - k0
    idx = (np.arange(R)[:, None, None] * K + (k - k0))[valid]
    total = np.bincount(idx, s[valid], minlength=R * K).reshape(R, K)
    count = np.bincount(idx, minlength=R * K).reshape(R, K)
    # a bin counts where at least half the used P (and two) have a slope: the region the
    # curves share, so a P entering or leaving does not pose as a change of slope
    need = np.maximum(2, np.ceil(used.sum(axis=1) / 2))[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        sm = np.where(count >= need, total / count, np.nan)
    xg = (k0 + np.arange(K)) * BIN  # (K,) log x of the bins
    sc = np.where(np.isfinite(sm), sm, np.inf)
    peak = np.argmin(sc, axis=1)
    s_peak = sc[np.arange(R), peak]
    good = (sm <= SLOPE_FRACTION * s_peak[:, None]) & (s_peak[:, None] < 0)
    b = np.arange(K)[None, :]
    left = np.where(~good & (b < peak[:, None]), b, -1).max(axis=1) + 1
    right = np.where(~good & (b > peak[:, None]), b, K).min(axis=1) - 1
    ok = np.isfinite(s_peak) & (s_peak < 0) & (right > left)
    lo = np.where(ok, xg[np.clip(left, 0, K - 1)] - BIN / 2, np.nan)
    hi = np.where(ok, xg[np.clip(right, 0, K - 1)] + BIN / 2, np.nan)
    # a run that starts in the early regime stays there (Eq. 2; beyond, the bend into the
    # minimum tilts an offset fit); a run wholly beyond it is read where the curves fall
    cap = math.log(X_CAP)
    hi = np.where(lo < cap, np.minimum(hi, cap), hi)
    with np.errstate(invalid="ignore"):
        inwin = valid & (logx >= lo[:, None, None]) & (logx <= hi[:, None, None])
    return lo, hi, used & inwin.any(axis=2)


def _rows(pre: Prepared, W: np.ndarray, choices: Choices) -> Rows:
    """The whole pipeline for every row of seed weights W (R, S) at once."""
    R = len(W)
    m, dy2, L, E, valid = _curves(pre, W)
    y = m - E[:, :, None]
    if choices.p_min is None:
        used = _auto_p_min(pre, y, L, valid)
    else:
        used = valid & (pre.P[None, :] >= choices.p_min)
    logx = pre.u[None, None, :] - L[:, :, None]
    if choices.window is None:
        lo, hi, has_run = _auto_window(pre, m, logx, used)
    else:  # an open bound is -inf / +inf
        lo_, hi_ = choices.window
        lo = np.full(R, -np.inf if lo_ is None else math.log(lo_))
        hi = np.full(R, np.inf if hi_ is None else math.log(hi_))
        has_run = used.copy()
    inwin = used[:, :, None] & np.isfinite(y) & (logx >= lo[:, None, None])
    inwin &= logx <= hi[:, None, None]
    logP = np.broadcast_to(np.log(pre.P)[None, :], L.shape)
    # offsets: q1 by an F-test, q2 and q_meas always (laws.fit_law says why), so that the
    # bootstrap over seeds measures their cost; one seed per P: pure power laws (rule "pure
    # laws", module docstring step 5), Eq. 2 with a prefactor per curve
    fit_q = not pre.one_seed
    if fit_q:
        R_ = (R, -1)
        law1 = fit_law(logx.reshape(R_), y.reshape(R_), inwin.reshape(R_), sign=-1.0)
    else:
        law1 = fit_slope_within(logx, y, inwin, sign=-1.0)
    # Eq. 3 and eps_opt(P) are laws over the whole range of P (their offsets q2, q_meas
    # absorb the small-P regime, Sec. 3): every P with an optimum enters them; the automatic
    # P_min only says where the curves collapse (Eq. 4), which gamma1 needs. A P_min the user
    # gives (or the perceptron's alpha > 25 of Fig. 9) says where scaling starts: all laws.
    in_P = valid if choices.p_min is None else used
    law2 = fit_law(logP, L, in_P, sign=1.0, select=False, offset=fit_q)
    law_meas = fit_law(logP, E, in_P, sign=-1.0, select=False, offset=fit_q)
    S, rms, n = cl.houdayer_hartmann(y, dy2 if np.isfinite(dy2).any() else None, L, BIN, used)
    return Rows(
        L=L,
        E=E,
        used=used,
        valid=valid,
        p_min=np.where(used.any(axis=1), pre.P[np.argmax(used, axis=1)], np.nan),
        win_lo=np.exp(lo),
        win_hi=np.exp(hi),
        has_run=has_run,
        in_P=in_P,
        law1=law1.without_few(),
        law2=law2.without_few(),
        law_meas=law_meas.without_few(),
        S=S,
        rms=rms,
        n_coll=n,
    )


# ---------------------------------------------------------------------------- analyse

REQUIRED = ("P", "seed", "lambda", "test_error")


def analyse(
    curves: pd.DataFrame, choices: Choices | None = None, progress: bool = False
) -> list[GroupResult]:
    """Exponents, intervals and collapse for every group of a tidy curves table.

    Raises ValueError on unusable input (missing columns, no rows, non-numeric values, bad
    choices); problems inside a group become flags of its GroupResult.
    """
    choices = choices if choices is not None else Choices()
    _check_input(curves, choices)
    df = curves if "group" in curves.columns else curves.assign(group="all")
    results = []
    for name, g in df.groupby("group", sort=True):
        if choices.paper_mode:  # no resamples: one line is the progress there is
            if progress:
                print(f"fitting {name} (paper mode): {len(g)} rows", flush=True)
            results.append(paper.analyse_group(str(name), g, choices))
        else:
            results.append(_analyse_group(str(name), g, choices, progress))
    return results


def _check_input(curves: pd.DataFrame, choices: Choices) -> None:
    if not isinstance(curves, pd.DataFrame):
        raise ValueError(f"curves must be a pandas DataFrame, got {type(curves).__name__}")
    missing = [c for c in REQUIRED if c not in curves.columns]
    if missing:
        raise ValueError(f"curves table lacks column(s) {missing}; needs {list(REQUIRED)}")
    if len(curves) == 0:
        raise ValueError("curves table has no rows")
    for c in ("P", "lambda", "test_error") + (("epoch",) if "epoch" in curves.columns else ()):
        if not pd.api.types.is_numeric_dtype(curves[c]):
            raise ValueError(f"column {c!r} must be numeric, has dtype {curves[c].dtype}")
    if choices.ci not in ("bca", "percentile"):
        raise ValueError(f"Choices.ci must be 'bca' or 'percentile', not {choices.ci!r}")
    if not 0 < choices.level < 1:
        raise ValueError(f"Choices.level must be in (0, 1), not {choices.level}")
    if choices.n_boot < 0:
        raise ValueError(f"Choices.n_boot must be >= 0, not {choices.n_boot}")
    if choices.window is not None:
        lo, hi = choices.window
        lo_ok = lo is None or (0 < lo and math.isfinite(lo))
        hi_ok = hi is None or (0 < hi and math.isfinite(hi))
        if not (lo_ok and hi_ok and (lo is None or hi is None or lo < hi)):
            raise ValueError(
                f"Choices.window must be 0 < lo < hi (None: open), not {choices.window}"
            )


def _analyse_group(
    name: str, g: pd.DataFrame, choices: Choices, progress: bool = False
) -> GroupResult:
    flags: list[str] = []
    g = clean(g, flags)
    if len(g) == 0:
        flags.append("no usable curves: nothing estimated")
        return _empty_result(name, choices, flags)
    pre = prepare(g)
    _accept_flat_ends(pre, flags)
    seeds_per_P = {float(p): int(np.sum(pre.strata == i)) for i, p in enumerate(pre.P)}
    rng = np.random.default_rng(choices.seed)
    one_seed = pre.one_seed
    n_boot = 0 if one_seed else choices.n_boot
    W0 = pre.strata
    W = np.vstack(
        [
            np.ones((1, len(W0))),
            bs.stratified_weights(pre.strata, n_boot, rng),
            bs.jackknife_weights(pre.strata, 300, rng)
            if n_boot
            else np.zeros((0, len(pre.strata))),
        ]
    )
    rows = _run_rows(pre, W, choices, f"fitting {name}" if progress and n_boot else None)
    boot = slice(1, 1 + n_boot)
    jack = slice(1 + n_boot, None)
    _pipeline_flags(pre, rows, seeds_per_P, one_seed, choices, flags)

    Wj = W[jack]
    # the P of the seed each jackknife row deletes (None when rows delete groups of seeds)
    jack_strata = (
        pre.strata[np.argmin(Wj, axis=1)] if len(Wj) and np.all((Wj == 0).sum(1) == 1) else None
    )
    n_h = dict(enumerate(np.bincount(pre.strata, minlength=len(pre.P)).tolist()))

    def est(x: np.ndarray, se_delta: float | None = None) -> Estimate:
        dof = bs.effective_dof(x[jack], jack_strata, n_h)
        return _estimate(x[0], x[boot], x[jack], choices, se_delta, dof)

    l1, l2, lm = rows.law1, rows.law2, rows.law_meas
    g1, g2 = l1.gamma[0], l2.gamma[0]
    se1, se2, sem = l1.se[0], l2.se[0], lm.se[0]
    # the variance parts of gamma_pred = gamma1 gamma2 (App. F's formula) and gamma_meas
    v1, v2, vm = (g2 * se1) ** 2, (g1 * se2) ** 2, sem**2
    res = {
        "gamma1": est(l1.gamma, se1),
        "gamma2": est(l2.gamma, se2),
        "gamma_pred": est(rows.gamma_pred, math.sqrt(v1 + v2)),
        "gamma_meas": est(lm.gamma, sem),
        "gamma_diff": est(rows.gamma_diff, math.sqrt(v1 + v2 + vm)),
    }
    if one_seed:  # no bootstrap: the fit-based error is the one there is (flagged), known to
        # the fits' degrees of freedom; a product or difference by Welch-Satterthwaite
        d1, d2, dm = l1.dof[0], l2.dof[0], lm.dof[0]
        dofs = {
            "gamma1": d1,
            "gamma2": d2,
            "gamma_meas": dm,
            "gamma_pred": bs.satterthwaite([v1, v2], [d1, d2]),
            "gamma_diff": bs.satterthwaite([v1, v2, vm], [d1, d2, dm]),
        }
        for k, e in res.items():
            e.se = e.se_delta
            e.dof = as_float(dofs[k])
    # a resample failed if it lost an exponent the data themselves give (one the data do not
    # give, e.g. gamma1 without a window, is flagged above and would count every resample)
    laws = {"gamma1": l1, "gamma2": l2, "gamma_meas": lm}
    given = [k for k, f in laws.items() if np.isfinite(f.gamma[0])]
    lost = np.zeros(n_boot, dtype=bool)
    for k in given:
        lost |= ~np.isfinite(laws[k].gamma[boot])
    failed = int(lost.sum())
    if n_boot and failed:
        names = "/".join(given)
        flags.append(
            f"{failed} of {n_boot} resamples gave no {names} (left out of their intervals)"
        )
    return GroupResult(
        group=name,
        n_P=len(pre.P),
        seeds_per_P=seeds_per_P,
        **res,
        q1=est(l1.q),
        k1=est(l1.k),
        q2=est(l2.q),
        k2=est(l2.k),
        k_meas=est(lm.k),
        q_meas=est(lm.q),
        collapse=_collapse_dict(rows, boot, jack, choices, one_seed),
        choices=_choices_dict(rows, choices, n_boot, failed),
        per_P=_per_P_table(pre, rows, boot, seeds_per_P, choices.level),
        per_seed_opt=pd.DataFrame(
            {
                "P": pre.P[pre.strata],
                "seed": pre.seed_ids,
                "lambda_opt": np.exp(pre.lu),
                "eps_opt": np.exp(pre.lv),
                "at_edge": pre.edge,
            }
        ),
        flags=flags,
    )


def _accept_flat_ends(pre: Prepared, flags: list[str]) -> None:
    """Rule "end of training" (module docstring, step 1b), in place on pre.edge, pre.lu, pre.lv.

    A saturated curve (plateau onset, step 1) also ends at its lowest level; when most curves
    do, the group takes one convention, the end of training, for all of them: a mixture puts
    lambda_opt of some P a decade before that of their neighbours (on the authors' CNN/SGD
    curves, three of six) and scatters both the collapse and Eq. 3."""
    ends = pre.edge | pre.plateau
    if ends.mean() < EDGE_MAJORITY:
        return
    if pre.plateau.any():
        k = pre.plateau
        pre.lu[k], pre.lv[k] = pre.lu_end[k], pre.lv_end[k]
        flags.append(
            f"{int(k.sum())} saturated curves take the end of training as their optimum too "
            "(most curves of the group end at their lowest level: one convention per group)"
        )
    if not pre.flat_end.any():
        return
    n = int(pre.flat_end.sum())
    pre.edge &= ~pre.flat_end
    flags.append(
        f"optimum at the end of training in {n} of {len(pre.edge)} curves (flattened: final "
        f"slope < {FLAT_RATIO:.2g} x the steepest): lambda_opt is the largest norm reached, "
        "as in the paper's hand analysis"
    )


def _run_rows(pre: Prepared, W: np.ndarray, choices: Choices, label: str | None = None) -> Rows:
    """_rows over chunks of rows (bounded memory), optionally in threads (numpy frees the GIL);
    label: a progress bar over the resamples (a paper-scale group takes seconds)."""
    chunks = [W[i : i + 200] for i in range(0, len(W), 200)]
    bar = tqdm(total=len(W), desc=label, unit="resample", leave=False, disable=label is None)

    def run(w: np.ndarray) -> Rows:
        r = _rows(pre, w, choices)
        bar.update(len(w))
        return r

    with bar:
        if choices.n_jobs > 1 and len(chunks) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(choices.n_jobs) as pool:
                parts = list(pool.map(run, chunks))
        else:
            parts = [run(w) for w in chunks]
    return Rows.concat(parts)


def _estimate(value, boot, jack, choices: Choices, se_delta=None, dof=math.inf) -> Estimate:
    value = float(value)
    if len(boot) == 0 or not np.isfinite(value):
        return Estimate(value=value, se_delta=as_float(se_delta))
    pct = bs.percentile_ci(boot, choices.level, dof)
    bca = bs.bca_ci(value, boot, jack, choices.level, dof)
    finite = boot[np.isfinite(boot)]
    se = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return Estimate(
        value=value,
        ci=bca if choices.ci == "bca" else pct,
        se=se,
        se_delta=as_float(se_delta),
        ci_percentile=pct,
        ci_bca=bca,
        se_boot=se,
        dof=as_float(dof),
    )


def _pipeline_flags(pre, rows, seeds_per_P, one_seed, choices, flags) -> None:
    few = {p: n for p, n in seeds_per_P.items() if n < MIN_SEEDS}
    if one_seed:
        flags.append(
            "one seed per P: no interval (no bootstrap over seeds); se from the fits "
            "(gamma1's cluster-robust over P, the laws in P least-squares)"
        )
    elif few:
        flags.extend(f"P={num(p)} has {n} seeds (<{MIN_SEEDS})" for p, n in few.items())
    if pre.n_nonmonotone:
        flags.append(
            f"norm not monotone in {pre.n_nonmonotone} curves (handled by binning in log lambda)"
        )
    for p in np.unique(pre.strata[pre.edge]):
        ids = pre.seed_ids[pre.edge & (pre.strata == p)]
        shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
        flags.append(
            f"minimum at the edge of the curve for P={num(pre.P[p])}, seed={shown} "
            f"({len(ids)} curves not turned up yet; left out of the optima)"
        )
    for i in np.flatnonzero(~rows.valid[0]):
        flags.append(f"P={num(pre.P[i])}: no seed reached its minimum; P left out of the fits")
    n_in_P = int(rows.in_P[0].sum())
    if n_in_P < 3:
        flags.append(f"too few P values ({n_in_P}) for gamma2 and gamma_meas (need >= 3)")
    if not np.isfinite(rows.win_lo[0]):
        flags.append(
            "no early power-law window found: gamma1 not estimated (the used curves' mean "
            "local slope never falls before their minimum)"
        )
    else:
        lacking = np.flatnonzero(rows.used[0] & ~rows.has_run[0])
        if len(lacking):
            shown = ", ".join(str(num(p)) for p in pre.P[lacking])
            flags.append(f"P={shown}: no points in the window; gamma1 from the other P")
    if np.isfinite(rows.win_lo[0]) and rows.law1.npts[0] < 3:
        flags.append(f"window holds only {int(rows.law1.npts[0])} points: gamma1 not estimated")
    for law, label in ((rows.law1, "q1"), (rows.law2, "q2"), (rows.law_meas, "q of eps_opt(P)")):
        if not law.offset[0] and np.isfinite(law.gamma[0]):
            few = law is not rows.law1 and law.npts[0] < 4
            why = "are too few (need >= 4)" if few else "do not determine an offset"
            if one_seed:
                why = "come from one curve per P (pure power laws, step 5)"
            flags.append(f"{label} fixed at 0: the {int(law.npts[0])} points {why}")


def _collapse_dict(rows, boot, jack, choices, one_seed) -> dict:
    if one_seed:
        d = {"measure": "rms_log_deviation", "value": as_float(rows.rms[0]), "ci": None}
        d["note"] = "one seed per P: no errors, so Houdayer-Hartmann S is undefined"
    else:
        # Resamples repeat seeds, which shrinks the seed errors in S's denominator, so the raw
        # bootstrap values of S sit off S itself. The interval is therefore taken on the ratio
        # S* / median(S*) and scaled by S (a scale-invariant "basic" interval).
        S0, Sb = float(rows.S[0]), rows.S[boot]
        Sb = Sb[np.isfinite(Sb)]
        # with 2 seeds a resample holds one seed per P: no seed error, S* = 0 or undefined
        mid = np.median(Sb) if len(Sb) else np.nan
        ci = bs.percentile_ci(Sb / mid, choices.level) if np.isfinite(mid) and mid > 0 else None
        d = {"measure": "houdayer_hartmann_S", "value": as_float(S0)}
        d["ci"] = [S0 * ci[0], S0 * ci[1]] if ci is not None and np.isfinite(S0) else None
        d["note"] = (
            "S ~ 1: curves agree within seed noise; S >> 1: systematic departures; "
            "interval: spread of S*/median(S*) over resamples, times S"
        )
        d["rms_log_deviation"] = as_float(rows.rms[0])
    d["n_points"] = int(rows.n_coll[0])
    return d


def _choices_dict(rows, choices: Choices, n_boot: int, failed: int) -> dict:
    if choices.window is not None:
        window = list(choices.window)
    else:  # None when the rule found no window (flagged), never a pair of None
        lo, hi = as_float(rows.win_lo[0]), as_float(rows.win_hi[0])
        window = None if lo is None or hi is None else [lo, hi]
    return {
        "p_min": as_float(rows.p_min[0]),
        "p_min_rule": "user" if choices.p_min is not None else "auto:collapse",
        "window": window,
        "window_rule": "user" if choices.window is not None else "auto:slope",
        "n_boot": n_boot,
        "ci": choices.ci,
        "level": choices.level,
        "paper_mode": False,
        "seed": choices.seed,
        "n_resamples_failed": failed,
        "optimum": "per-seed parabola at the minimum, geometric mean over seeds",
    }


def _per_P_table(pre, rows, boot, seeds_per_P, level) -> pd.DataFrame:
    a = (1 - level) / 2
    Lb, Eb = rows.L[boot], rows.E[boot]

    def q(x, t):
        ok = np.isfinite(x).sum(axis=0) >= 10
        with np.errstate(invalid="ignore"):
            v = np.nanquantile(np.where(ok, x, 0.0), t, axis=0) if len(x) else np.nan
        return np.where(ok, np.exp(v), np.nan)

    return pd.DataFrame(
        {
            "P": pre.P,
            "n_seeds": [seeds_per_P[float(p)] for p in pre.P],
            "lambda_opt": np.exp(rows.L[0]),
            "eps_opt": np.exp(rows.E[0]),
            "lambda_opt_lo": q(Lb, a),
            "lambda_opt_hi": q(Lb, 1 - a),
            "eps_opt_lo": q(Eb, a),
            "eps_opt_hi": q(Eb, 1 - a),
            "at_edge": ~rows.valid[0],
            "used": rows.used[0],  # in Eq. 2 (gamma1): P >= P_min
            # in the laws in P (step 5): every P with an optimum, or P >= a chosen P_min
            "in_gamma2": rows.in_P[0],
            "in_gamma_meas": rows.in_P[0],
        }
    )


def _empty_result(name: str, choices: Choices, flags: list[str]) -> GroupResult:
    nan = Estimate(value=float("nan"))
    cols = ["P", "n_seeds", "lambda_opt", "eps_opt", "lambda_opt_lo", "lambda_opt_hi"]
    cols += ["eps_opt_lo", "eps_opt_hi", "at_edge", "used", "in_gamma2", "in_gamma_meas"]
    return GroupResult(
        group=name,
        n_P=0,
        seeds_per_P={},
        **{k: Estimate(value=float("nan")) for k in ("gamma1", "gamma2", "gamma_pred")},
        gamma_meas=nan,
        gamma_diff=Estimate(value=float("nan")),
        q1=nan,
        k1=nan,
        q2=nan,
        k2=nan,
        collapse={"measure": "houdayer_hartmann_S", "value": None, "ci": None, "n_points": 0},
        choices={"p_min": choices.p_min, "window": choices.window, "n_boot": 0},
        per_P=pd.DataFrame(columns=cols),
        per_seed_opt=pd.DataFrame(columns=["P", "seed", "lambda_opt", "eps_opt", "at_edge"]),
        flags=flags,
    )
