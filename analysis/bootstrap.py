"""Resampling over seeds and bootstrap intervals (percentile and BCa).

The seed is the unit of independence: a resample draws, within each P separately (stratified),
as many seeds as that P has, with replacement. A resample is represented by a row of integer
weights (how often each seed was drawn), so the whole pipeline in fit.py runs on a matrix of
rows at once: row 0 the data itself, then the bootstrap rows, then the jackknife rows that give
the BCa acceleration (Efron & Tibshirani 1993, ch. 14).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def stratified_weights(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_seeds) draw counts; each stratum (P) keeps its own number of seeds."""
    W = np.zeros((n_boot, len(strata)))
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        n = len(idx)
        draws = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
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


def percentile_ci(boot: np.ndarray, level: float) -> tuple[float, float] | None:
    """Equal-tailed percentile interval of the finite bootstrap values."""
    b = boot[np.isfinite(boot)]
    if len(b) < 10 or np.ptp(b) == 0:
        return None
    a = (1 - level) / 2
    lo, hi = np.quantile(b, [a, 1 - a])
    return float(lo), float(hi)


def bca_ci(
    theta: float, boot: np.ndarray, jack: np.ndarray, level: float
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
    z = norm.ppf([(1 - level) / 2, (1 + level) / 2])
    adj = norm.cdf(z0 + (z0 + z) / (1 - acc * (z0 + z)))
    if not np.all(np.isfinite(adj)):
        return None
    lo, hi = np.quantile(b, adj)
    return float(lo), float(hi)
