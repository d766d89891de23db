"""Per-seed optimum and the common log-lambda grid (analysis.fit, steps 1-2).

Each seed curve is read once: its optimum (lambda_opt, eps_opt) without grid quantisation
(seed_optimum), and its log eps on one grid in u = log lambda shared by the group (on_grid).
The bootstrap only reweights these per-seed quantities (Prepared), so nothing here runs per
resample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

LN10 = math.log(10.0)
BIN = 0.05 * LN10  # common log-lambda grid step (natural-log units)
SMOOTH = 0.05 * LN10  # half-width of the running mean used to locate a seed's minimum
PLATEAU_SPAN = 0.5 * LN10  # a saturated curve's plateau spans at least half a decade
MIN_POINTS = 5  # a curve needs this many points to locate a minimum
FLAT_SPAN = 0.2  # slopes over a fifth of the curve's log-lambda span
FLAT_RATIO = 1 / 3  # flattened: final slope at most a third of the steepest one


def end_flatness(u: np.ndarray, v: np.ndarray) -> float:
    """Final slope over steepest slope of a curve (u sorted): ~0 once it has flattened.

    Least-squares slopes of v on u over windows of FLAT_SPAN x the curve's span of u, the
    final window against the steepest (most negative) one. Scale-free in lambda and eps, so
    the same number reads a ViT curve over 30 decades and a CNN curve over one.
    """
    if len(u) < 6:
        return math.inf
    u, v = u - u[0], v - v[0]  # centred: ln(1e300) ~ 690 would cost the sums their digits
    w = FLAT_SPAN * u[-1]
    c = [np.concatenate([[0.0], np.cumsum(a)]) for a in (np.ones_like(u), u, v, u * u, u * v)]
    lo = np.arange(len(u))
    hi = np.searchsorted(u, u + w, "right")  # window [lo, hi): points within w of u[lo]
    ok = (hi - lo >= 3) & (u[hi - 1] - u >= 0.5 * w)  # enough points and half a span
    n, su, sv, suu, suv = (ci[hi] - ci[lo] for ci in c)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (n * suv - su * sv) / (n * suu - su**2)
    slope = np.where(ok & np.isfinite(slope), slope, np.nan)
    if not np.isfinite(slope).any() or np.nanmin(slope) >= 0:
        return math.inf
    last = slope[np.flatnonzero(np.isfinite(slope))[-1]]
    return float(max(-last, 0.0) / -np.nanmin(slope))


def seed_optimum(
    u: np.ndarray, v: np.ndarray, plateau: bool = True
) -> tuple[float, float, bool, bool]:
    """(log lambda_opt, log eps_opt, at_edge, parabola_used) of one curve, u sorted ascending.

    plateau=False skips the plateau-onset rule: a saturated curve then reads as ending at its
    minimum (the end-of-training convention of analysis/fit.py, rule 1b).

    The parabola through the points near the minimum removes the grid quantisation of a plain
    argmin (DESIGN.md pitfalls); the running mean keeps one noisy point from posing as minimum.
    """
    n = len(u)
    cs = np.concatenate([[0.0], np.cumsum(v)])
    lo = np.searchsorted(u, u - SMOOTH, "left")
    hi = np.searchsorted(u, u + SMOOTH, "right")
    sm = (cs[hi] - cs[lo]) / (hi - lo)
    i = int(np.argmin(sm))

    def run_within(delta: float) -> tuple[int, int]:
        """The contiguous run of smoothed points within delta of the minimum."""
        jl, jr = i, i
        while jl > 0 and sm[jl - 1] <= sm[i] + delta:
            jl -= 1
        while jr < n - 1 and sm[jr + 1] <= sm[i] + delta:
            jr += 1
        return jl, jr

    # Two noise estimates. Around the running mean: it sets the parabola's window, as it always
    # did. From second differences (robust sd; var(d2) = 6 sigma^2 for independent noise, and a
    # smooth trend barely enters): the running mean sees windows of one or two points on
    # sparse curves (~50 logged epochs) and reads ~0 there, which left 15% of 50-point
    # synthetic curves that stop before their minimum unflagged; deciding "turned up or not"
    # with the larger of the two leaves 3%.
    noise_fit = 1.4826 * np.median(np.abs(v - sm)) if n > 2 else 0.0
    d2 = np.diff(v, 2)
    noise_d2 = 1.4826 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6.0) if n > 3 else 0.0
    jl, jr = run_within(max(0.02, 2.0 * max(noise_fit, noise_d2)))
    at_edge = jr == n - 1 or jl == 0
    if plateau and jr == n - 1 and jl > 0 and u[-1] - u[jl] >= PLATEAU_SPAN:
        # Saturated, not overfitting (the paper's curves "overfit or saturate"): the curve
        # fell, then stayed within delta of its lowest level for PLATEAU_SPAN or more. The
        # optimum is where the plateau begins: the smallest norm reaching the best error.
        return float(u[jl]), float(sm[jl:].mean()), False, False
    jl, jr = run_within(max(0.02, 2.0 * noise_fit))
    # at least two points on each side so the parabola is determined
    jl, jr = max(0, min(jl, i - 2)), min(n - 1, max(jr, i + 2))
    if jr - jl >= 2 and not at_edge:
        uc = u[jl : jr + 1] - u[i]
        c2, c1, c0 = np.polyfit(uc, v[jl : jr + 1], 2)
        if c2 > 0:
            t = -c1 / (2 * c2)
            if uc[0] <= t <= uc[-1]:
                return u[i] + t, c0 - c1**2 / (4 * c2), False, True
    return float(u[i]), float(sm[i]), bool(at_edge), False


@dataclass
class Prepared:
    """Per-seed quantities computed once; resamples only reweight them."""

    P: np.ndarray  # (nP,) sorted P values
    strata: np.ndarray  # (S,) index into P of every seed
    seed_ids: np.ndarray  # (S,) seed labels
    lu: np.ndarray  # (S,) log lambda_opt per seed
    lv: np.ndarray  # (S,) log eps_opt per seed
    edge: np.ndarray  # (S,) minimum at the edge of the curve
    flat_end: np.ndarray  # (S,) minimum at the right edge of a curve that has flattened
    plateau: np.ndarray  # (S,) optimum at a plateau onset (a saturated curve)
    lu_end: np.ndarray  # (S,) a plateau curve's optimum without the plateau rule (else lu)
    lv_end: np.ndarray
    u: np.ndarray  # (B,) grid centres of log lambda
    M: np.ndarray  # (S, B) per-seed log eps on the grid (NaN outside the curve)
    n_nonmonotone: int
    n_parabola: int

    @property
    def one_seed(self) -> bool:
        """One curve per P (e.g. published seed averages): no bootstrap over seeds."""
        return bool(np.all(np.bincount(self.strata) == 1))


def on_grid(uu: np.ndarray, vv: np.ndarray, centres: np.ndarray, u0: float) -> np.ndarray:
    """log eps of one curve at the grid centres (NaN outside the curve).

    Occupied bins: the bin mean of log eps, moved from the bins' mean log lambda to the centre
    along the local slope (a first-order correction: without it, sparse or unevenly filled bins
    jitter the local slope by tens of percent). Empty bins inside the curve: linear
    interpolation of the sorted points (exact on a power law in log-log).
    """
    B = len(centres)
    idx = np.clip(np.rint((uu - u0) / BIN).astype(int), 0, B - 1)
    cnt = np.bincount(idx, minlength=B)
    occ = cnt > 0
    vbar = np.bincount(idx, vv, minlength=B)[occ] / cnt[occ]
    ubar = np.bincount(idx, uu, minlength=B)[occ] / cnt[occ]
    slope = np.gradient(vbar, ubar) if occ.sum() >= 2 else np.zeros_like(vbar)
    m = np.full(B, np.nan)
    m[occ] = vbar - slope * (ubar - centres[occ])
    hole = ~occ & (centres >= uu[0]) & (centres <= uu[-1])
    m[hole] = np.interp(centres[hole], uu, vv)
    return m


def prepare(df: pd.DataFrame) -> Prepared:
    P = np.sort(df["P"].unique())
    u_all = np.log(df["lambda"].to_numpy())
    u0 = u_all.min()
    B = int(np.floor((u_all.max() - u0) / BIN)) + 1
    centres = u0 + BIN * np.arange(B)
    keys, lu, lv, edge, flat_end, strata, M = [], [], [], [], [], [], []
    plateau, lu_end, lv_end = [], [], []
    n_nonmono = n_parabola = 0
    # one stable sort by (P, seed) keeps each curve's training order; split at the boundaries
    Pv, sv = df["P"].to_numpy(float), pd.factorize(df["seed"], sort=True)
    labels = sv[1]
    order0 = np.lexsort((sv[0], Pv))
    Pv, si = Pv[order0], sv[0][order0]
    lam_all, eps_all = (
        df["lambda"].to_numpy(float)[order0],
        df["test_error"].to_numpy(float)[order0],
    )
    cut = np.flatnonzero((np.diff(Pv) != 0) | (np.diff(si) != 0)) + 1
    for a_, b_ in zip(np.r_[0, cut], np.r_[cut, len(Pv)], strict=True):
        p, s = Pv[a_], labels[si[a_]]
        lam = lam_all[a_:b_]
        if np.any(np.diff(lam) < 0):
            n_nonmono += 1
        order = np.argsort(lam, kind="stable")
        uu, vv = np.log(lam[order]), np.log(eps_all[a_:b_][order])
        a, b, e, used_parabola = seed_optimum(uu, vv)
        n_parabola += used_parabola
        # a plateau onset is neither at the edge nor a parabola vertex: only then ask what the
        # curve's optimum is without the plateau rule (rule 1b may want it)
        a2, b2, e2 = a, b, False
        if not e and not used_parabola:
            a2, b2, e2, _ = seed_optimum(uu, vv, plateau=False)
        plateau.append(bool(e2 and a2 != a))
        lu_end.append(a2 if plateau[-1] else a)
        lv_end.append(b2 if plateau[-1] else b)
        m = on_grid(uu, vv, centres, u0)
        keys.append(s)
        lu.append(a)
        lv.append(b)
        edge.append(e)
        right = e and a >= 0.5 * (uu[0] + uu[-1])
        flat_end.append(bool(right and end_flatness(uu, vv) <= FLAT_RATIO))
        strata.append(np.searchsorted(P, p))
        M.append(m)
    return Prepared(
        P=P,
        strata=np.array(strata),
        seed_ids=np.array(keys),
        lu=np.array(lu),
        lv=np.array(lv),
        edge=np.array(edge, dtype=bool),
        flat_end=np.array(flat_end, dtype=bool),
        plateau=np.array(plateau, dtype=bool),
        lu_end=np.array(lu_end),
        lv_end=np.array(lv_end),
        u=centres,
        M=np.array(M),
        n_nonmonotone=n_nonmono,
        n_parabola=n_parabola,
    )


def clean(g: pd.DataFrame, flags: list[str]) -> pd.DataFrame:
    """Drop unusable rows and short curves, with a flag for each kind of drop."""
    lam, eps = g["lambda"].to_numpy(float), g["test_error"].to_numpy(float)
    P = g["P"].to_numpy(float)
    nan = ~np.isfinite(lam) | ~np.isfinite(eps) | ~np.isfinite(P) | g["seed"].isna().to_numpy()
    if nan.sum():
        flags.append(f"NaN rows dropped: {int(nan.sum())} {_where(P[nan])}")
    nonpos = ~nan & ((lam <= 0) | (eps <= 0) | (P <= 0))
    if nonpos.sum():
        flags.append(
            f"rows with lambda, test_error or P <= 0 dropped: {int(nonpos.sum())} "
            f"{_where(P[nonpos])}"
        )
    g = g[~(nan | nonpos)]
    if "epoch" in g.columns:
        g = g.sort_values(["P", "seed", "epoch"], kind="stable")
    size = g.groupby(["P", "seed"])["lambda"].transform("size")
    short = size < MIN_POINTS
    if short.any():
        n_short = g[short].groupby(["P", "seed"]).ngroups
        flags.append(f"curves with < {MIN_POINTS} points dropped: {n_short}")
        g = g[~short]
    return g


def _where(P: np.ndarray) -> str:
    """The P values a flag is about, e.g. '(P=1000, 4000)'."""
    ps = np.unique(P[np.isfinite(P)])
    shown = ", ".join(f"{p:g}" for p in ps[:8]) + (", ..." if len(ps) > 8 else "")
    return f"(P={shown})" if len(ps) else "(P missing)"
