"""Scaling exponents of learning curves with bootstrap intervals (Eq. 2-5, Appendix F).

Public API (the report builds on it): Choices, analyse, GroupResult, Estimate, master_curve,
power_law. The pipeline for one group, in the order it runs:

1. Per seed curve, once (no grid quantisation): sort by lambda, smooth log eps over +-0.05
   decades, find the minimum, and fit a parabola to log eps vs log lambda over the points
   within delta of it (delta = max(0.02, 2 x the point noise)); its vertex is (lambda_opt,
   eps_opt) of the seed. A curve that falls and then saturates (stays within delta of its
   lowest level over at least half a decade of lambda up to its end) has its optimum at the
   start of that plateau (lambda_opt) with eps_opt the plateau's mean level. Otherwise, if the
   curve does not rise by delta after (or before) its minimum, the minimum is at the edge:
   flagged and left out of every optimum-based step.
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
4. Window (rule "auto:slope"): on each used P's collapsed curve, the local log-log slope over
   +-4 bins; for x <= 0.3 take the median early slope s* and the contiguous run of bins,
   around the steepest one, with slope <= 0.8 s*; the window is the intersection of these
   runs over the used P (the early power-law region shared by all curves, well before the
   minimum).
5. gamma1, k1, q1: least squares of log(eps/eps_opt) against log(k1 x^-gamma1 + q1) (Eq. 2)
   over every used curve's binned points in the window; gamma2, k2, q2 from log lambda_opt(P)
   against log(k2 P^gamma2 + q2) (Eq. 3); gamma_meas from eps_opt(P) = k P^-gamma + q.
   Offsets need >= 4 points and stay below the smallest value. q1 is kept only if it is
   significant (F-test at 5%), positive and not at its upper bound; q2 and the offset of
   eps_opt(P) are always fitted, of either sign (fit_with_optional_offset says why); a q fixed
   at 0 is flagged.
6. gamma_pred = gamma1 gamma2 (Eq. 5), gamma_diff = gamma_pred - gamma_meas; collapse S
   (collapse.py).

Every step runs on a matrix of seed weights (bootstrap.py), so the bootstrap re-runs all of it,
automatic choices included, in every resample. paper_mode instead follows Appendix F: see
_paper_rows.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import f as f_dist

from analysis import bootstrap as bs
from analysis import collapse as cl

LN10 = math.log(10.0)
BIN = 0.05 * LN10  # common log-lambda grid step (natural-log units)
SMOOTH = 0.05 * LN10  # half-width of the running mean used to locate a seed's minimum
SLOPE_HALF = 4  # local slope over +-4 bins (0.4 decades): noisy curves need the averaging
SLOPE_FRACTION = 0.8  # window: slope at least 80% of the steepest early slope
X_CAP = 0.3  # window: never beyond 0.3 lambda_opt (well before the minimum)
MIN_SEEDS = 5
PLATEAU_SPAN = 0.5 * LN10  # a saturated curve's plateau spans at least half a decade


# ---------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class Choices:
    """Analysis knobs; None means the documented automatic rule (module docstring)."""

    p_min: float | None = None
    window: tuple[float, float] | None = None  # in units of lambda / lambda_opt
    paper_mode: bool = False
    n_boot: int = 2000
    # "percentile" | "bca". Percentile is the default: on synthetic sweeps (tests/
    # test_fit_coverage.py) BCa covered gamma1 2-4 points less often; its jackknife
    # acceleration and bias correction jump with the automatic window and P_min choices
    ci: str = "percentile"
    level: float = 0.95
    seed: int = 0
    n_jobs: int = 1  # bootstrap rows are processed in chunks by this many threads


@dataclass
class Estimate:
    """A point estimate with its bootstrap interval(s) and standard errors."""

    value: float
    ci: tuple[float, float] | None = None
    se: float | None = None  # bootstrap std (paper_mode: the Appendix F sigma)
    se_delta: float | None = None  # delta method / least-squares covariance cross-check
    ci_percentile: tuple[float, float] | None = None
    ci_bca: tuple[float, float] | None = None
    se_boot: float | None = None
    dof: float | None = None  # effective seed degrees of freedom behind the interval (None: inf)

    def to_dict(self) -> dict:
        return _json_safe(asdict(self))


@dataclass
class GroupResult:
    """Everything the report needs about one group (results.json entry via to_dict)."""

    group: str
    n_P: int
    seeds_per_P: dict[float, int]
    gamma1: Estimate
    gamma2: Estimate
    gamma_pred: Estimate
    gamma_meas: Estimate
    gamma_diff: Estimate
    q1: Estimate
    k1: Estimate
    q2: Estimate
    k2: Estimate
    collapse: dict
    choices: dict
    per_P: pd.DataFrame
    per_seed_opt: pd.DataFrame
    flags: list[str] = field(default_factory=list)
    k_meas: Estimate | None = None
    q_meas: Estimate | None = None

    def to_dict(self) -> dict:
        out = {"group": self.group, "n_P": self.n_P}
        out["seeds_per_P"] = {str(_num(p)): n for p, n in self.seeds_per_P.items()}
        for name in ("gamma1", "gamma2", "gamma_pred", "gamma_meas", "gamma_diff"):
            out[name] = getattr(self, name).to_dict()
        for name in ("k1", "q1", "k2", "q2", "k_meas", "q_meas"):
            est = getattr(self, name)
            out[name] = est.to_dict() if est is not None else None
        out["collapse"] = _json_safe(self.collapse)
        out["choices"] = _json_safe(self.choices)
        out["flags"] = list(self.flags)
        out["per_P"] = _json_safe(self.per_P.to_dict(orient="records"))
        return out


def power_law(x, k: float, gamma: float, q: float):
    """k x^-gamma + q (Eq. 2; Eq. 3 is power_law(P, k2, -gamma2, q2))."""
    return k * np.asarray(x, dtype=float) ** (-gamma) + q


def master_curve(curves_for_group: pd.DataFrame, per_P: pd.DataFrame) -> pd.DataFrame:
    """The collapsed curves (Eq. 4): x = lambda/lambda_opt(P), y = test_error/eps_opt(P).

    per_P is GroupResult.per_P; P values without an optimum are left out.
    """
    opt = per_P.dropna(subset=["lambda_opt", "eps_opt"]).set_index("P")
    df = curves_for_group[curves_for_group["P"].isin(opt.index)]
    return pd.DataFrame(
        {
            "P": df["P"].to_numpy(),
            "seed": df["seed"].to_numpy(),
            "x": df["lambda"].to_numpy() / opt.loc[df["P"], "lambda_opt"].to_numpy(),
            "y": df["test_error"].to_numpy() / opt.loc[df["P"], "eps_opt"].to_numpy(),
        }
    )


# ---------------------------------------------------------------------------- per seed


def seed_optimum(u: np.ndarray, v: np.ndarray) -> tuple[float, float, bool, bool]:
    """(log lambda_opt, log eps_opt, at_edge, parabola_used) of one curve, u sorted ascending.

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
    if jr == n - 1 and jl > 0 and u[-1] - u[jl] >= PLATEAU_SPAN:
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
class _Prepared:
    """Per-seed quantities computed once; resamples only reweight them."""

    P: np.ndarray  # (nP,) sorted P values
    strata: np.ndarray  # (S,) index into P of every seed
    seed_ids: np.ndarray  # (S,) seed labels
    lu: np.ndarray  # (S,) log lambda_opt per seed
    lv: np.ndarray  # (S,) log eps_opt per seed
    edge: np.ndarray  # (S,) minimum at the edge of the curve
    u: np.ndarray  # (B,) grid centres of log lambda
    M: np.ndarray  # (S, B) per-seed log eps on the grid (NaN outside the curve)
    Elin: np.ndarray  # (S, B) paper mode: eps interpolated on the grid (linear average later)
    n_nonmonotone: int
    n_parabola: int


def _on_grid(uu: np.ndarray, vv: np.ndarray, centres: np.ndarray, u0: float) -> np.ndarray:
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


def _prepare(df: pd.DataFrame) -> _Prepared:
    P = np.sort(df["P"].unique())
    u_all = np.log(df["lambda"].to_numpy())
    u0 = u_all.min()
    B = int(np.floor((u_all.max() - u0) / BIN)) + 1
    centres = u0 + BIN * np.arange(B)
    keys, lu, lv, edge, strata, M, Elin = [], [], [], [], [], [], []
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
        m = _on_grid(uu, vv, centres, u0)
        inside = (centres >= uu[0]) & (centres <= uu[-1])
        el = np.where(inside, np.exp(np.interp(centres, uu, vv)), np.nan)
        keys.append(s)
        lu.append(a)
        lv.append(b)
        edge.append(e)
        strata.append(np.searchsorted(P, p))
        M.append(m)
        Elin.append(el)
    return _Prepared(
        P=P,
        strata=np.array(strata),
        seed_ids=np.array(keys),
        lu=np.array(lu),
        lv=np.array(lv),
        edge=np.array(edge, dtype=bool),
        u=centres,
        M=np.array(M),
        Elin=np.array(Elin),
        n_nonmonotone=n_nonmono,
        n_parabola=n_parabola,
    )


# ---------------------------------------------------------------------------- batched fits


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


def fit_with_optional_offset(X, Y, mask, select: bool = True):
    """Eq. 2/3 fit per row, with the offset q when there are >= 4 points.

    select=True keeps a positive offset only if an F-test says the data determine it (Eq. 2:
    hundreds of points in the window, so the test has power). select=False always keeps it,
    of either sign (the laws in P: 4 to 13 points, where an F-test at 5% drops a real offset
    most of the time and the q = 0 fit it falls back to is biased; on synthetic sweeps with a
    true offset that bias took 95% intervals of gamma_meas down to 68% coverage).
    Returns dict with a, logk, q, se_a (least-squares), offset (bool per row).
    """
    keep = mask.any(axis=0)  # drop columns no row uses (most of the grid is outside the window)
    X, Y, mask = X[:, keep], Y[:, keep], mask[:, keep]
    if not keep.any():  # no row has points (e.g. no window found anywhere): nothing to fit
        nan, none = np.full(len(X), np.nan), np.zeros(len(X))  # n = 0 points, not NaN points
        return {"a": nan, "logk": nan, "q": nan, "se_a": nan, "offset": nan > 0, "n": none}
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
    offset = (n >= 4) & np.isfinite(a1)
    if select:
        offset &= gain & ((F > crit) | (sse1 <= 1e-300)) & (frac < 0.99) & (q1 > 0)
    se1 = np.sqrt(np.abs(cov[:, 1, 1]))
    return {
        "a": np.where(offset, a1, a0),
        "logk": np.where(offset, c1, c0),
        "q": np.where(offset, q1, 0.0),
        "se_a": np.where(offset, se1, se0),
        "offset": offset,
        "n": n,
    }


# ---------------------------------------------------------------------------- pipeline rows


def _curves(pre: _Prepared, W: np.ndarray, paper: bool):
    """Per row: seed-averaged curves on the grid and per-P optima.

    Returns m (R, nP, B) log eps at the grid centres Ux (R, nP, B), dy2 (R, nP, B) squared
    standard error over seeds, L, E (R, nP) log lambda_opt, log eps_opt, valid (R, nP).
    """
    R, nP, B = len(W), len(pre.P), len(pre.u)
    m, Ux, dy2 = (np.full((R, nP, B), np.nan) for _ in range(3))
    L, E = np.full((R, nP), np.nan), np.full((R, nP), np.nan)
    for p in range(nP):
        idx = pre.strata == p
        w = W[:, idx]
        vals = np.log(pre.Elin[idx]) if paper else pre.M[idx]
        present = np.isfinite(vals)
        v0 = np.where(present, vals, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            C = w @ present
            mean = (w @ v0) / C
            var = np.maximum((w @ v0**2) / C - mean**2, 0.0)
            dy2[:, p] = np.where(C > 1, var / (C - 1), np.nan)
            if paper:
                # Appendix F: average the interpolated curves themselves, read minima off the grid
                m[:, p] = np.log((w @ np.where(present, pre.Elin[idx], 0.0)) / C)
                Ux[:, p] = pre.u
            else:
                m[:, p] = mean
                Ux[:, p] = pre.u
        if paper:
            finite = np.isfinite(m[:, p])
            has = finite.any(axis=1)
            arg = np.argmin(np.where(finite, m[:, p], np.inf), axis=1)
            last = B - 1 - np.argmax(finite[:, ::-1], axis=1)
            first = np.argmax(finite, axis=1)
            ok = has & (arg != last) & (arg != first)
            L[:, p] = np.where(ok, pre.u[arg], np.nan)
            E[:, p] = np.where(ok, m[np.arange(R), p, arg], np.nan)
        else:
            wv = w * ~pre.edge[idx]
            sw = wv.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                L[:, p] = np.where(sw > 0, (wv @ pre.lu[idx]) / sw, np.nan)
                E[:, p] = np.where(sw > 0, (wv @ pre.lv[idx]) / sw, np.nan)
    return m, Ux, dy2, L, E, np.isfinite(L)


def _auto_p_min(pre, y, L, valid):
    """Rule "auto:collapse" (module docstring, step 3). Returns used (R, nP)."""
    R, nP = valid.shape
    early = np.where(pre.u[None, None, :] - L[:, :, None] <= 0.0, y, np.nan)
    rank_from_top = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1]  # 1 = largest valid P
    n_valid = valid.sum(axis=1, keepdims=True)
    ref = valid & (rank_from_top <= np.maximum(2, np.ceil(n_valid / 2)))
    D = cl.deviation_from_reference(early, L, BIN, ref)
    with np.errstate(invalid="ignore"):
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


def _auto_window(pre, m, L, used):
    """Rule "auto:slope" (module docstring, step 4). Returns log lo, log hi per row."""
    R, nP, B = m.shape
    j = np.arange(-SLOPE_HALF, SLOPE_HALF + 1)
    s = np.full_like(m, np.nan)
    inner = slice(SLOPE_HALF, B - SLOPE_HALF)
    if B > 2 * SLOPE_HALF:
        s[:, :, inner] = sum(jj * m[:, :, SLOPE_HALF + jj : B - SLOPE_HALF + jj] for jj in j) / (
            BIN * np.sum(j**2)
        )
    logx = pre.u[None, None, :] - L[:, :, None]
    consider = used[:, :, None] & (logx <= math.log(X_CAP)) & np.isfinite(s)
    sc = np.where(consider, s, np.inf)
    peak = np.argmin(sc, axis=2)
    # the reference slope is the median early slope, not the steepest one: the steepest bin of
    # a noisy curve is a noise spike and would shrink the window to a few bins
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # curves with no early bins: NaN
        s_peak = np.nanmedian(np.where(consider, s, np.nan), axis=2)
    s_peak = np.where(np.isfinite(s_peak), s_peak, np.inf)
    good = consider & (s <= SLOPE_FRACTION * s_peak[:, :, None]) & (s_peak[:, :, None] < 0)
    b = np.arange(B)[None, None, :]
    left = np.where(~good & (b < peak[:, :, None]), b, -1).max(axis=2) + 1
    right = np.where(~good & (b > peak[:, :, None]), b, B).min(axis=2) - 1
    ok = used & (s_peak < 0) & np.isfinite(s_peak) & (right > left)
    with np.errstate(invalid="ignore"):
        lo_P = np.where(ok, pre.u[np.clip(left, 0, B - 1)] - L, -np.inf)
        hi_P = np.where(ok, pre.u[np.clip(right, 0, B - 1)] - L, np.inf)
    lo, hi = lo_P.max(axis=1), hi_P.min(axis=1)
    bad = ~ok.any(axis=1) | (used & ~ok).any(axis=1) | ~(hi > lo)
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def _rows(pre: _Prepared, W: np.ndarray, choices: Choices) -> dict[str, np.ndarray]:
    """The whole pipeline for every row of seed weights W (R, S) at once."""
    paper = choices.paper_mode
    m, Ux, dy2, L, E, valid = _curves(pre, W, paper)
    y = m - E[:, :, None]
    if choices.p_min is None:
        used = _auto_p_min(pre, y, L, valid)
    else:
        used = valid & (pre.P[None, :] >= choices.p_min)
    if choices.window is None:
        lo, hi = _auto_window(pre, m, L, used)
    else:
        lo = np.full(len(W), math.log(choices.window[0]))
        hi = np.full(len(W), math.log(choices.window[1]))
    logx = Ux - L[:, :, None]
    inwin = used[:, :, None] & np.isfinite(y) & (logx >= lo[:, None, None])
    inwin &= logx <= hi[:, None, None]
    logP = np.broadcast_to(np.log(pre.P)[None, :], L.shape)
    out: dict[str, np.ndarray] = {"L": L, "E": E, "used": used, "valid": valid}
    out["p_min"] = np.where(used.any(axis=1), pre.P[np.argmax(used, axis=1)], np.nan)
    out["win_lo"], out["win_hi"] = np.exp(lo), np.exp(hi)
    if paper:
        _paper_fits(out, logx, y, inwin, logP, used)
    else:
        R = len(W)
        f1 = fit_with_optional_offset(logx.reshape(R, -1), y.reshape(R, -1), inwin.reshape(R, -1))
        f2 = fit_with_optional_offset(logP, L, used, select=False)
        f3 = fit_with_optional_offset(logP, E, used, select=False)
        for name, f, sign in (("1", f1, -1.0), ("2", f2, 1.0), ("_meas", f3, -1.0)):
            out["gamma" + name] = sign * f["a"]
            out["k" + name] = np.exp(f["logk"])
            out["q" + name] = f["q"]
            out["se" + name] = f["se_a"]
            out["offset" + name] = f["offset"]
            out["npts" + name] = f["n"]
    for key in ("1", "2", "_meas"):
        # a line through two points has no check and no error: report nothing rather than it
        few = out["npts" + key] < 3
        for name in ("gamma", "k", "q", "se"):
            out[name + key] = np.where(few, np.nan, out[name + key])
    out["gamma_pred"] = out["gamma1"] * out["gamma2"]
    out["gamma_diff"] = out["gamma_pred"] - out["gamma_meas"]
    S, rms, n = cl.houdayer_hartmann(y, dy2 if np.isfinite(dy2).any() else None, L, BIN, used)
    out["S"], out["rms"], out["n_coll"] = S, rms, n
    return out


def _paper_fits(out, logx, y, inwin, logP, used):
    """Appendix F: per-P log-log fits in the window, gamma1 = their mean +- error of the mean;
    gamma2, gamma_meas from plain log-log fits; no offsets."""
    R, nP, B = y.shape
    a, c, _, _, n = fit_line(logx.reshape(R * nP, B), y.reshape(R * nP, B), inwin.reshape(-1, B))
    g1_P = np.where((n >= 2).reshape(R, nP) & used, -a.reshape(R, nP), np.nan)
    k = np.sum(np.isfinite(g1_P), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["gamma1"] = np.where(k > 0, np.nansum(g1_P, axis=1) / k, np.nan)
        dev = np.where(np.isfinite(g1_P), g1_P - out["gamma1"][:, None], 0.0)
        out["se1"] = np.where(k > 1, np.sqrt((dev**2).sum(axis=1) / (k - 1) / k), np.nan)
        out["k1"] = np.exp(np.nanmean(np.where(np.isfinite(g1_P), c.reshape(R, nP), np.nan), 1))
    out["q1"] = np.zeros(R)
    for name, Y, sign in (("2", out["L"], 1.0), ("_meas", out["E"], -1.0)):
        a2, c2, se2, _, n2 = fit_line(logP, Y, used)
        out["gamma" + name], out["k" + name] = sign * a2, np.exp(c2)
        out["q" + name], out["se" + name], out["npts" + name] = np.zeros(R), se2, n2
        out["offset" + name] = np.zeros(R, dtype=bool)
    out["offset1"] = np.zeros(R, dtype=bool)
    out["npts1"] = inwin.reshape(R, -1).sum(axis=1)


# ---------------------------------------------------------------------------- analyse

REQUIRED = ("P", "seed", "lambda", "test_error")
MIN_POINTS = 5  # a curve needs this many points to locate a minimum


def analyse(
    curves: pd.DataFrame, choices: Choices = Choices(), progress: bool = False
) -> list[GroupResult]:
    """Exponents, intervals and collapse for every group of a tidy curves table.

    Raises ValueError on unusable input (missing columns, no rows, non-numeric values, bad
    choices); problems inside a group become flags of its GroupResult.
    """
    _check_input(curves, choices)
    df = curves if "group" in curves.columns else curves.assign(group="all")
    results = []
    for name, g in df.groupby("group", sort=True):
        if progress:
            print(f"analysing group {name}: {len(g)} rows", flush=True)
        results.append(_analyse_group(str(name), g, choices))
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
        if not (0 < lo < hi):
            raise ValueError(f"Choices.window must be 0 < lo < hi, not {choices.window}")


def _clean(g: pd.DataFrame, flags: list[str]) -> pd.DataFrame:
    """Drop unusable rows and short curves, with a flag for each kind of drop."""
    lam, eps = g["lambda"].to_numpy(float), g["test_error"].to_numpy(float)
    nan = ~np.isfinite(lam) | ~np.isfinite(eps) | g["P"].isna().to_numpy() | g["seed"].isna()
    if nan.sum():
        flags.append(f"NaN rows dropped: {int(nan.sum())}")
    nonpos = ~nan & ((lam <= 0) | (eps <= 0) | (g["P"].to_numpy(float) <= 0))
    if nonpos.sum():
        flags.append(f"rows with lambda, test_error or P <= 0 dropped: {int(nonpos.sum())}")
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


def _analyse_group(name: str, g: pd.DataFrame, choices: Choices) -> GroupResult:
    flags: list[str] = []
    g = _clean(g, flags)
    if len(g) == 0:
        flags.append("no usable curves: nothing estimated")
        return _empty_result(name, choices, flags)
    pre = _prepare(g)
    seeds_per_P = {float(p): int(np.sum(pre.strata == i)) for i, p in enumerate(pre.P)}
    rng = np.random.default_rng(choices.seed)
    one_seed = all(n == 1 for n in seeds_per_P.values())
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
    rows = _run_rows(pre, W, choices)
    boot = slice(1, 1 + n_boot)
    jack = slice(1 + n_boot, None)
    _pipeline_flags(pre, rows, seeds_per_P, one_seed, choices, flags)

    Wj = W[jack]
    # the P of the seed each jackknife row deletes (None when rows delete groups of seeds)
    jack_strata = (
        pre.strata[np.argmin(Wj, axis=1)] if len(Wj) and np.all((Wj == 0).sum(1) == 1) else None
    )
    n_h = dict(enumerate(np.bincount(pre.strata, minlength=len(pre.P)).tolist()))

    def est(key: str, se_delta: float | None = None) -> Estimate:
        dof = bs.effective_dof(rows[key][jack], jack_strata, n_h)
        return _estimate(rows[key][0], rows[key][boot], rows[key][jack], choices, se_delta, dof)

    paper = choices.paper_mode
    g1, g2 = rows["gamma1"][0], rows["gamma2"][0]
    se1, se2, sem = rows["se1"][0], rows["se2"][0], rows["se_meas"][0]
    se_pred = abs(g1 * g2) * math.sqrt((se1 / g1) ** 2 + (se2 / g2) ** 2)  # App. F formula
    res = {
        "gamma1": est("gamma1", se1),
        "gamma2": est("gamma2", se2),
        "gamma_pred": est("gamma_pred", se_pred),
        "gamma_meas": est("gamma_meas", sem),
        "gamma_diff": est("gamma_diff", math.sqrt(se_pred**2 + sem**2)),
    }
    if paper:
        for k in res.values():
            k.se = _float(k.se_delta)  # the paper's sigma is the reported error in paper_mode
    # a resample failed if it lost an exponent the data themselves give (one the data do not
    # give, e.g. gamma1 without a window, is flagged above and would count every resample)
    given = [k for k in ("gamma1", "gamma2", "gamma_meas") if np.isfinite(rows[k][0])]
    lost = np.zeros(n_boot, dtype=bool)
    for k in given:
        lost |= ~np.isfinite(rows[k][boot])
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
        q1=est("q1"),
        k1=est("k1"),
        q2=est("q2"),
        k2=est("k2"),
        k_meas=est("k_meas"),
        q_meas=est("q_meas"),
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


def _run_rows(pre: _Prepared, W: np.ndarray, choices: Choices) -> dict[str, np.ndarray]:
    """_rows over chunks of rows (bounded memory), optionally in threads (numpy frees the GIL)."""
    chunks = [W[i : i + 200] for i in range(0, len(W), 200)]
    if choices.n_jobs > 1 and len(chunks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(choices.n_jobs) as pool:
            parts = list(pool.map(lambda w: _rows(pre, w, choices), chunks))
    else:
        parts = [_rows(pre, w, choices) for w in chunks]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _estimate(value, boot, jack, choices: Choices, se_delta=None, dof=math.inf) -> Estimate:
    value = float(value)
    if len(boot) == 0 or not np.isfinite(value):
        return Estimate(value=value, se_delta=_float(se_delta))
    pct = bs.percentile_ci(boot, choices.level, dof)
    bca = bs.bca_ci(value, boot, jack, choices.level, dof)
    finite = boot[np.isfinite(boot)]
    se = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return Estimate(
        value=value,
        ci=bca if choices.ci == "bca" else pct,
        se=se,
        se_delta=_float(se_delta),
        ci_percentile=pct,
        ci_bca=bca,
        se_boot=se,
        dof=_float(dof),
    )


def _pipeline_flags(pre, rows, seeds_per_P, one_seed, choices, flags) -> None:
    few = {p: n for p, n in seeds_per_P.items() if n < MIN_SEEDS}
    if one_seed:
        flags.append("one seed per P: no interval (point estimates only)")
    elif few:
        flags.extend(f"P={_num(p)} has {n} seeds (<{MIN_SEEDS})" for p, n in few.items())
    if pre.n_nonmonotone:
        flags.append(
            f"norm not monotone in {pre.n_nonmonotone} curves (handled by binning in log lambda)"
        )
    for p in np.unique(pre.strata[pre.edge]):
        ids = pre.seed_ids[pre.edge & (pre.strata == p)]
        shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
        flags.append(
            f"minimum at the edge of the curve for P={_num(pre.P[p])}, seed={shown} "
            f"({len(ids)} curves not turned up yet; left out of the optima)"
        )
    for i in np.flatnonzero(~rows["valid"][0]):
        flags.append(f"P={_num(pre.P[i])}: no seed reached its minimum; P left out of the fits")
    n_used = int(rows["used"][0].sum())
    if n_used < 3:
        flags.append(f"too few P values ({n_used}) for gamma2 and gamma_meas (need >= 3)")
    if not np.isfinite(rows["win_lo"][0]):
        flags.append("no early power-law window found: gamma1 not estimated")
    elif rows["npts1"][0] < 3:
        flags.append(f"window holds only {int(rows['npts1'][0])} points: gamma1 not estimated")
    if not choices.paper_mode:
        for key, label in (("1", "q1"), ("2", "q2"), ("_meas", "q of eps_opt(P)")):
            if not rows["offset" + key][0] and np.isfinite(rows["gamma" + key][0]):
                n = int(rows["npts" + key][0])
                why = "do not determine an offset" if key == "1" else "are too few (need >= 4)"
                flags.append(f"{label} fixed at 0: the {n} points {why}")


def _collapse_dict(rows, boot, jack, choices, one_seed) -> dict:
    if one_seed:
        d = {"measure": "rms_log_deviation", "value": _float(rows["rms"][0]), "ci": None}
        d["note"] = "one seed per P: no errors, so Houdayer-Hartmann S is undefined"
    else:
        # Resamples repeat seeds, which shrinks the seed errors in S's denominator, so the raw
        # bootstrap values of S sit off S itself. The interval is therefore taken on the ratio
        # S* / median(S*) and scaled by S (a scale-invariant "basic" interval).
        S0, Sb = float(rows["S"][0]), rows["S"][boot]
        Sb = Sb[np.isfinite(Sb)]
        # with 2 seeds a resample holds one seed per P: no seed error, S* = 0 or undefined
        mid = np.median(Sb) if len(Sb) else np.nan
        ci = bs.percentile_ci(Sb / mid, choices.level) if np.isfinite(mid) and mid > 0 else None
        d = {"measure": "houdayer_hartmann_S", "value": _float(S0)}
        d["ci"] = [S0 * ci[0], S0 * ci[1]] if ci is not None and np.isfinite(S0) else None
        d["note"] = (
            "S ~ 1: curves agree within seed noise; S >> 1: systematic departures; "
            "interval: spread of S*/median(S*) over resamples, times S"
        )
        d["rms_log_deviation"] = _float(rows["rms"][0])
    d["n_points"] = int(rows["n_coll"][0])
    return d


def _choices_dict(rows, choices: Choices, n_boot: int, failed: int) -> dict:
    if choices.window is not None:
        window = list(choices.window)
    else:  # None when the rule found no window (flagged), never a pair of None
        lo, hi = _float(rows["win_lo"][0]), _float(rows["win_hi"][0])
        window = None if lo is None or hi is None else [lo, hi]
    return {
        "p_min": _float(rows["p_min"][0]),
        "p_min_rule": "user" if choices.p_min is not None else "auto:collapse",
        "window": window,
        "window_rule": "user" if choices.window is not None else "auto:slope",
        "n_boot": n_boot,
        "ci": choices.ci,
        "level": choices.level,
        "paper_mode": choices.paper_mode,
        "seed": choices.seed,
        "n_resamples_failed": failed,
        "optimum": "grid argmin of seed-averaged curve (App. F)"
        if choices.paper_mode
        else "per-seed parabola at the minimum, geometric mean over seeds",
    }


def _per_P_table(pre, rows, boot, seeds_per_P, level) -> pd.DataFrame:
    a = (1 - level) / 2
    Lb, Eb = rows["L"][boot], rows["E"][boot]

    def q(x, t):
        ok = np.isfinite(x).sum(axis=0) >= 10
        with np.errstate(invalid="ignore"):
            v = np.nanquantile(np.where(ok, x, 0.0), t, axis=0) if len(x) else np.nan
        return np.where(ok, np.exp(v), np.nan)

    return pd.DataFrame(
        {
            "P": pre.P,
            "n_seeds": [seeds_per_P[float(p)] for p in pre.P],
            "lambda_opt": np.exp(rows["L"][0]),
            "eps_opt": np.exp(rows["E"][0]),
            "lambda_opt_lo": q(Lb, a),
            "lambda_opt_hi": q(Lb, 1 - a),
            "eps_opt_lo": q(Eb, a),
            "eps_opt_hi": q(Eb, 1 - a),
            "at_edge": ~rows["valid"][0],
            "used": rows["used"][0],
        }
    )


def _empty_result(name: str, choices: Choices, flags: list[str]) -> GroupResult:
    nan = Estimate(value=float("nan"))
    cols = ["P", "n_seeds", "lambda_opt", "eps_opt", "lambda_opt_lo", "lambda_opt_hi"]
    cols += ["eps_opt_lo", "eps_opt_hi", "at_edge", "used"]
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


# ---------------------------------------------------------------------------- JSON helpers


def _float(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _num(p: float):
    return int(p) if float(p).is_integer() else float(p)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _float(obj)
    return obj
