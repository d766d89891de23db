"""Paper mode: the authors' own analysis procedure, exactly (Appendix F; their notebook
Francill99/deep_norm analysis/Main_analysis_notebook.ipynb, functions plot_results, fit_phi,
fit_and_plot_powerlaw). No offsets, no bootstrap: the errors are the authors' fit-based ones.

1. Mean curve per P: every seed's record (lambda, eps) is interpolated linearly in log10 lambda
   onto one log-spaced lambda grid (Choices.grid_points points between the smallest and the
   largest lambda of the group), NaN outside that seed's own range; the mean over seeds ignores
   NaN. Input that already holds one curve per P (e.g. the authors' published, seed-averaged
   curves, each on its part of one shared grid) is used on its own points: the grid is the
   union of the group's lambda values.
2. gamma1 (Eq. 2): for each P >= P_min, lambda_opt = the grid lambda of the mean curve's
   smallest error (a plain argmin, no smoothing), eps_opt that error; x = lambda/lambda_opt,
   y = eps/eps_opt restricted to lo <= x <= hi (either bound may be open); a least-squares line
   of log10 y on log10 x gives the slope a_i and its standard error s_i (numpy.polyfit with
   cov=True: residual variance over n - 2). gamma1 = -mean(a_i), sigma1 = sqrt(sum s_i^2 / n).
3. gamma2 (Eq. 3): lambda0(P) = the mean over seeds of each seed's lambda at its smallest test
   error on the raw record (not the mean curve's argmin); a least-squares line of ln lambda0 on
   ln P over Choices.p_range2 (default: every P), sigma2 = sqrt(SSR / (n - 2) / Sxx).
4. gamma_meas: the same natural-log line for the mean curves' eps_opt (their minima) over
   every P, not only P >= P_min (this reproduces the paper's printed gamma_meas to its three
   decimals on the authors' weight-decay and SGD groups);
   gamma_pred = gamma1 gamma2 (Eq. 5) with sigma = gamma_pred sqrt((s1/g1)^2 + (s2/g2)^2).

A fit with fewer than three points has no error and is not made; the P is flagged instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.optimum import clean
from analysis.results import Choices, Estimate, GroupResult, num

QUANTITIES = {
    "lambda_opt": "grid lambda at the minimum of the seed-mean curve (linear interpolation in "
    "log10 lambda onto a log-spaced grid, mean over seeds ignoring NaN)",
    "gamma1": "minus the mean over P >= P_min of the per-P slopes of log10(eps/eps_opt) on "
    "log10(lambda/lambda_opt) in the window; se = sqrt(sum s_i^2 / n), s_i from polyfit cov",
    "gamma2": "slope of ln lambda0 on ln P over p_range2, lambda0 = mean over seeds of each "
    "seed's lambda at its smallest test error on the raw record; residual standard error",
    "gamma_meas": "minus the slope of ln eps_opt on ln P over every P, eps_opt the minimum of "
    "the seed-mean curve; residual standard error",
    "gamma_pred": "gamma1 gamma2, sigma by propagating sigma1 and sigma2 (App. F)",
}


@dataclass(frozen=True)
class Line:
    """A least-squares line y = intercept + slope x with the slope's standard error."""

    slope: float
    intercept: float
    se: float
    n: int


def ols(x: np.ndarray, y: np.ndarray) -> Line:
    """numpy.polyfit(x, y, 1, cov=True): se^2 = SSR / (n - 2) / Sxx. Needs n >= 3."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        raise ValueError(f"a line with an error needs >= 3 points, got {len(x)}")
    (slope, intercept), cov = np.polyfit(x, y, 1, cov=True)
    return Line(float(slope), float(intercept), float(math.sqrt(cov[0, 0])), len(x))


def mean_curves(g: pd.DataFrame, grid_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P (nP,), lambda grid (B,), seed-mean eps (nP, B)) of one group, step 1."""
    P = np.sort(g["P"].unique())
    curves = [(p, s, c) for (p, s), c in g.groupby(["P", "seed"], sort=True)]
    if len(curves) == len(P):
        # one curve per P (already seed-averaged): its own points, on the union of the group's
        # lambda values (each curve covers its part of the shared grid; NaN elsewhere)
        grid = np.unique(g["lambda"].to_numpy(float))
    else:
        lam = g["lambda"].to_numpy(float)
        grid = np.logspace(np.log10(lam.min()), np.log10(lam.max()), grid_points)
    ugrid = np.log10(grid)
    sums = np.zeros((len(P), len(grid)))
    counts = np.zeros((len(P), len(grid)))
    for p, _, c in curves:
        order = np.argsort(c["lambda"].to_numpy(float), kind="stable")
        u = np.log10(c["lambda"].to_numpy(float)[order])
        e = np.interp(ugrid, u, c["test_error"].to_numpy(float)[order], left=np.nan, right=np.nan)
        i = np.searchsorted(P, p)
        ok = np.isfinite(e)
        sums[i, ok] += e[ok]
        counts[i, ok] += 1
    with np.errstate(invalid="ignore"):
        return P, grid, np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def window_slope(grid: np.ndarray, eps: np.ndarray, window) -> tuple[float, float, Line | None]:
    """(lambda_opt, eps_opt, the log10-log10 line in the window, or None with < 3 points)."""
    if not np.isfinite(eps).any():  # a curve narrower than one grid step: no point on the grid
        return math.nan, math.nan, None
    i = int(np.nanargmin(eps))
    x, y = grid / grid[i], eps / eps[i]
    mask = np.isfinite(y) & (x > 0) & (y > 0)
    lo, hi = window if window is not None else (None, None)
    if lo is not None:
        mask &= x >= lo
    if hi is not None:
        mask &= x <= hi
    line = ols(np.log10(x[mask]), np.log10(y[mask])) if mask.sum() >= 3 else None
    return float(grid[i]), float(eps[i]), line


def fit_gamma1(grid, eps_by_P, window) -> tuple[float, float, float, list]:
    """Step 2 over the rows of eps_by_P: (gamma1, sigma1, k1 = mean of the per-P prefactors
    10^intercept, per-P (lambda_opt, eps_opt, Line or None))."""
    per_P = [window_slope(grid, e, window) for e in eps_by_P]
    lines = [line for _, _, line in per_P if line is not None]
    if not lines:
        return math.nan, math.nan, math.nan, per_P
    a = np.array([line.slope for line in lines])
    s = np.array([line.se for line in lines])
    k1 = float(np.mean([10.0**line.intercept for line in lines]))
    return float(-a.mean()), float(np.sqrt(np.sum(s**2) / len(s))), k1, per_P


def seed_lambda0(g: pd.DataFrame) -> pd.Series:
    """lambda0(P): mean over seeds of each seed's lambda at its smallest raw test error."""
    first_min = g.loc[g.groupby(["P", "seed"], sort=True)["test_error"].idxmin()]
    return first_min.groupby("P")["lambda"].mean()


def law_points(P, y, p_range=None) -> np.ndarray:
    """Which P a law in P takes: y finite and positive, P in p_range (inclusive; None: all)."""
    P, y = np.asarray(P, float), np.asarray(y, float)
    keep = np.isfinite(y) & (y > 0)
    if p_range is not None:
        keep &= (P >= p_range[0]) & (P <= p_range[1])
    return keep


def fit_gamma2(P, lambda0, p_range=None) -> Line:
    """Step 3: ln lambda0 = c + gamma2 ln P over p_range (inclusive; None: every P)."""
    keep = law_points(P, lambda0, p_range)
    return ols(np.log(np.asarray(P, float)[keep]), np.log(np.asarray(lambda0, float)[keep]))


def analyse_group(name: str, g: pd.DataFrame, choices: Choices) -> GroupResult:
    """Paper mode for one group (module docstring)."""
    flags: list[str] = []
    g = clean(g, flags)
    if len(g) == 0:
        flags.append("no usable curves: nothing estimated")
        return _result(name, choices, flags, {}, pd.DataFrame(), pd.DataFrame())
    P, grid, eps = mean_curves(g, choices.grid_points)
    seeds = g.groupby("P")["seed"].nunique()
    if (seeds == 1).all():
        flags.append("one seed per P: fit-based errors only (paper mode has no bootstrap)")
    if choices.window is None:
        flags.append("paper mode without a window: gamma1 fits every point, minimum included")
    used = P >= (choices.p_min if choices.p_min is not None else -np.inf)
    g1, s1, k1, per_P = fit_gamma1(grid, eps[used], choices.window)
    lam_opt = np.full(len(P), np.nan)
    eps_opt, slope, slope_se, npts = (np.full(len(P), np.nan) for _ in range(4))
    for i, (lo, eo, line) in zip(np.flatnonzero(used), per_P, strict=True):
        lam_opt[i], eps_opt[i] = lo, eo
        if not np.isfinite(lo):
            flags.append(
                f"P={num(P[i])}: its curves fall between two grid points (raise --grid-points); "
                "left out of gamma1"
            )
        elif line is None:
            flags.append(f"P={num(P[i])}: the window holds < 3 points; left out of gamma1")
        else:
            slope[i], slope_se[i], npts[i] = line.slope, line.se, line.n
    lam0 = seed_lambda0(g).reindex(P).to_numpy()
    # eps_opt(P) takes every P (step 4), gamma1 only P >= P_min: the table shows them all
    eps_min = _row_min(eps)
    has = np.isfinite(eps_min)
    eps_opt[~used & has] = eps_min[~used & has]
    arg = np.argmin(np.where(np.isfinite(eps), eps, np.inf), axis=1)
    lam_opt[~used & has] = grid[arg[~used & has]]
    est: dict[str, Estimate] = {}
    est["gamma1"] = Estimate(g1, se=_f(s1), se_delta=_f(s1))
    est["k1"] = Estimate(k1)
    if not np.isfinite(g1):
        flags.append("no P has >= 3 points in the window: gamma1 not estimated")
    line2 = _line_or_flag(lambda: fit_gamma2(P, lam0, choices.p_range2), "gamma2", flags)
    line_m = _line_or_flag(lambda: fit_gamma2(P, eps_min), "gamma_meas", flags)
    nan = Line(math.nan, math.nan, math.nan, 0)
    line2, line_m = line2 or nan, line_m or nan
    est["gamma2"] = Estimate(line2.slope, se=_f(line2.se), se_delta=_f(line2.se))
    est["k2"] = Estimate(math.exp(line2.intercept))
    est["gamma_meas"] = Estimate(-line_m.slope, se=_f(line_m.se), se_delta=_f(line_m.se))
    est["k_meas"] = Estimate(math.exp(line_m.intercept))
    v1, v2, vm = g1, line2.slope, -line_m.slope
    se_pred = abs(v1 * v2) * math.hypot(_z(s1, v1), _z(line2.se, v2))
    est["gamma_pred"] = Estimate(v1 * v2, se=_f(se_pred), se_delta=_f(se_pred))
    se_diff = math.hypot(se_pred, line_m.se)
    est["gamma_diff"] = Estimate(v1 * v2 - vm, se=_f(se_diff), se_delta=_f(se_diff))
    table = pd.DataFrame(
        {
            "P": P,
            "n_seeds": seeds.reindex(P).to_numpy(),
            "lambda_opt": lam_opt,
            "eps_opt": eps_opt,
            "lambda0": lam0,
            "slope": slope,
            "slope_se": slope_se,
            "n_window": npts,
            "at_edge": False,
            "used": used,  # in gamma1: P >= P_min
            "in_gamma2": law_points(P, lam0, choices.p_range2),
            "in_gamma_meas": law_points(P, eps_min),
        }
    )
    per_seed = g.loc[g.groupby(["P", "seed"], sort=True)["test_error"].idxmin()]
    per_seed = pd.DataFrame(
        {
            "P": per_seed["P"].to_numpy(),
            "seed": per_seed["seed"].to_numpy(),
            "lambda_opt": per_seed["lambda"].to_numpy(),
            "eps_opt": per_seed["test_error"].to_numpy(),
            "at_edge": False,
        }
    )
    return _result(name, choices, flags, est, table, per_seed, grid_size=len(grid))


def _result(name, choices, flags, est, table, per_seed, grid_size=0) -> GroupResult:
    nan = Estimate(math.nan)
    zero = Estimate(0.0)  # no offsets in paper mode (q = 0 by construction)
    used = table["used"].to_numpy(bool) if len(table) else np.zeros(0, bool)
    window = list(choices.window) if choices.window is not None else None
    return GroupResult(
        group=name,
        n_P=len(table),
        seeds_per_P=dict(
            zip(map(float, table.get("P", [])), map(int, table.get("n_seeds", [])), strict=True)
        ),
        gamma1=est.get("gamma1", nan),
        gamma2=est.get("gamma2", nan),
        gamma_pred=est.get("gamma_pred", nan),
        gamma_meas=est.get("gamma_meas", nan),
        gamma_diff=est.get("gamma_diff", nan),
        q1=zero,
        k1=est.get("k1", nan),
        q2=zero,
        k2=est.get("k2", nan),
        k_meas=est.get("k_meas", nan),
        q_meas=zero,
        collapse={"measure": "none in paper mode", "value": None, "ci": None, "n_points": 0},
        choices={
            "p_min": float(table["P"][used].min()) if used.any() else None,
            "p_min_rule": "user" if choices.p_min is not None else "all P",
            "window": window,
            "window_rule": "user" if choices.window is not None else "open",
            "p_range2": list(choices.p_range2) if choices.p_range2 is not None else None,
            "grid_points": grid_size,
            "n_boot": 0,
            "ci": None,
            "level": choices.level,
            "paper_mode": True,
            "seed": choices.seed,
            "n_resamples_failed": 0,
            "optimum": QUANTITIES["lambda_opt"],
            "quantities": QUANTITIES,
        },
        per_P=table,
        per_seed_opt=per_seed,
        flags=flags,
    )


def _line_or_flag(fit, what: str, flags: list[str]) -> Line | None:
    """The fitted line, or None with a flag saying why (too few points)."""
    try:
        return fit()
    except ValueError as err:
        flags.append(f"{what} not estimated: {err}")
        return None


def _f(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _z(se, value) -> float:
    return se / value if se is not None and value else math.nan


def _row_min(eps: np.ndarray) -> np.ndarray:
    """Each mean curve's smallest error; NaN for a curve with no point (left out by the fit)."""
    finite = np.isfinite(eps).any(axis=1)
    return np.where(finite, np.min(np.where(np.isfinite(eps), eps, np.inf), axis=1), np.nan)
