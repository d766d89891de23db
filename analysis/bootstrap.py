"""Resampling over seeds and bootstrap intervals (percentile and BCa).

The seed is the unit of independence: a resample draws, within each P separately (stratified),
seeds with replacement (one fewer than that P has: stratified_weights says why). A resample is
a row of integer weights (how often each seed was drawn), so the whole pipeline in fit.py runs
on a matrix of rows at once: row 0 the data itself, then the bootstrap rows, then the
jackknife rows that give the BCa acceleration (Efron & Tibshirani 1993, ch. 14) and the
effective degrees of freedom of the intervals.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t


def stratified_weights(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_seeds) draw counts: n_h - 1 draws with replacement in a stratum of n_h seeds.

    Why n_h - 1 and not n_h: the mean of m draws from n seeds has bootstrap variance
    (n - 1) / n * s^2 / m, so m = n reports the seed error of each P's mean too small by the
    factor (n - 1) / n (12% in standard error at 4 seeds, 6% at 8), and every interval built
    on it undercovers. m = n - 1 makes it s^2 / n, the usual unbiased variance of a mean
    (McCarthy & Snowden 1985; Rao & Wu 1988, the rescaled bootstrap for few units per
    stratum). A stratum of one seed keeps its seed.
    """
    W = np.zeros((n_boot, len(strata)))
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        n = len(idx)
        m = max(1, n - 1)
        draws = rng.integers(0, n, size=(n_boot, m)) + n * np.arange(n_boot)[:, None]
        W[:, idx] = np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n)
    return W


def jackknife_weights(strata: np.ndarray, max_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Delete-one-seed rows (or delete-a-group rows when there are more than max_groups seeds).

    Seeds that are alone in their stratum are never deleted (the P would vanish).
    """
    n = len(strata)
    counts = {s: np.sum(strata == s) for s in np.unique(strata)}
    deletable = np.array([counts[s] > 1 for s in strata])
    idx = np.flatnonzero(deletable)
    if len(idx) == 0:
        return np.zeros((0, n))
    groups = np.array_split(rng.permutation(idx), min(max_groups, len(idx)))
    W = np.ones((len(groups), n))
    for g, members in enumerate(groups):
        W[g, members] = 0.0
    return W


def effective_dof(jack: np.ndarray, jack_strata: np.ndarray | None, n_seeds: dict) -> float:
    """Welch-Satterthwaite degrees of freedom of a statistic's stratified seed variance.

    The delete-one jackknife splits the variance into per-P parts
    v_h = (n_h - 1) / n_h sum_i (J_hi - mean_h J)^2, each estimated from n_h seeds (n_h - 1
    degrees of freedom); nu = (sum v_h)^2 / sum v_h^2 / (n_h - 1). A statistic leaning on a
    few P of 3-8 seeds has a variance known to ~10 degrees of freedom, not to infinity.
    jack_strata: the P index of the seed each jackknife row deletes (None: rows delete
    groups, which happens only with hundreds of seeds: nu = inf). n_seeds: {P index: n_h}.
    """
    if jack_strata is None or len(jack) < 3:
        return math.inf
    ok = np.isfinite(jack)
    parts, dofs = [], []
    for h in np.unique(jack_strata[ok]):
        Jh = jack[ok & (jack_strata == h)]
        n = n_seeds[h]
        if len(Jh) != n:  # a resample failed in this P: no clean split, no correction
            return math.inf
        parts.append((n - 1) / n * np.sum((Jh - Jh.mean()) ** 2))
        dofs.append(n - 1)
    return satterthwaite(parts, dofs)


def satterthwaite(parts, dofs) -> float:
    """Welch-Satterthwaite: nu = (sum v_i)^2 / sum v_i^2 / nu_i for a variance sum v_i, each
    part known to nu_i degrees of freedom (inf when no part has a variance)."""
    v, d = np.asarray(parts, float), np.asarray(dofs, float)
    den = np.sum(v**2 / d)
    return float(np.sum(v) ** 2 / den) if den > 0 else math.inf


def critical(level: float, dof: float) -> float:
    """The two-sided normal quantile, widened to Student t's for finite dof (Hesterberg 2015,
    "expanded percentile"): the bootstrap spread is itself estimated from a few seeds."""
    q = (1 + level) / 2
    return float(norm.ppf(q) if not np.isfinite(dof) else student_t.ppf(q, max(dof, 1.0)))


def percentile_ci(
    boot: np.ndarray, level: float, dof: float = math.inf
) -> tuple[float, float] | None:
    """Equal-tailed percentile interval of the finite bootstrap values (expanded to Student t
    quantiles at `dof`: the tails are taken at Phi(-/+ t_dof) instead of (1 -/+ level) / 2)."""
    b = boot[np.isfinite(boot)]
    if len(b) < 10 or np.ptp(b) == 0:
        return None
    a = float(norm.cdf(-critical(level, dof)))
    lo, hi = np.quantile(b, [a, 1 - a])
    return float(lo), float(hi)


def bca_ci(
    theta: float, boot: np.ndarray, jack: np.ndarray, level: float, dof: float = math.inf
) -> tuple[float, float] | None:
    """Bias-corrected and accelerated interval (Efron 1987).

    z0 from the share of resamples below the estimate, the acceleration from the jackknife
    values' skewness: a = sum (m - t_i)^3 / (6 (sum (m - t_i)^2)^1.5).
    """
    b = boot[np.isfinite(boot)]
    j = jack[np.isfinite(jack)]
    if not np.isfinite(theta) or len(b) < 10 or np.ptp(b) == 0:
        return None
    share = (np.sum(b < theta) + 0.5 * np.sum(b == theta)) / len(b)
    share = np.clip(share, 1.0 / (len(b) + 1), 1 - 1.0 / (len(b) + 1))
    z0 = norm.ppf(share)
    d = j.mean() - j if len(j) > 2 else np.zeros(1)
    den = 6.0 * np.sum(d**2) ** 1.5
    acc = float(np.sum(d**3) / den) if den > 0 else 0.0
    z = np.array([-1.0, 1.0]) * critical(level, dof)
    adj = norm.cdf(z0 + (z0 + z) / (1 - acc * (z0 + z)))
    if not np.all(np.isfinite(adj)):
        return None
    lo, hi = np.quantile(b, adj)
    return float(lo), float(hi)
