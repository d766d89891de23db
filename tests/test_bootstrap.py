"""analysis.bootstrap: stratified seed resampling and percentile / BCa intervals."""

import numpy as np
import pytest

from analysis.bootstrap import bca_ci, jackknife_weights, percentile_ci, stratified_weights


def test_stratified_weights_keep_each_P_and_are_uniform():
    strata = np.repeat([0, 1, 2], [3, 5, 1])
    W = stratified_weights(strata, 4000, np.random.default_rng(0))
    for s, n in ((0, 3), (1, 5), (2, 1)):
        assert np.all(W[:, strata == s].sum(axis=1) == n)  # every resample keeps n seeds of P
    # each seed is drawn once per resample on average (multinomial with equal probabilities)
    assert W.mean(axis=0) == pytest.approx(np.ones(9), abs=0.05)
    assert np.all(W[:, strata == 2] == 1)


def test_jackknife_rows_delete_seeds_but_never_a_whole_P():
    strata = np.repeat([0, 1], [4, 1])
    W = jackknife_weights(strata, 100, np.random.default_rng(0))
    assert W.shape == (4, 5) and np.all(W[:, 4] == 1) and np.all(W[:, :4].sum(axis=1) == 3)
    Wg = jackknife_weights(np.zeros(1000, dtype=int), 50, np.random.default_rng(0))
    assert Wg.shape == (50, 1000) and np.all(Wg.sum(axis=0) == 49)  # each seed deleted once


def _mean_boot(x, n_boot, rng):
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    jack = (x.sum() - x) / (len(x) - 1)
    return x[idx].mean(axis=1), jack


def test_intervals_for_a_mean_match_the_normal_theory_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=400)
    boot, jack = _mean_boot(x, 4000, rng)
    se = x.std(ddof=1) / np.sqrt(len(x))
    for lo, hi in (percentile_ci(boot, 0.95), bca_ci(x.mean(), boot, jack, 0.95)):
        assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.1 * se)
        assert hi == pytest.approx(x.mean() + 1.96 * se, abs=0.1 * se)


def test_bca_covers_better_than_percentile_for_a_skewed_statistic():
    """exp(mean) of normal data: skewed; BCa corrects the percentile interval's shift."""
    rng = np.random.default_rng(2)
    hits = {"bca": 0, "pct": 0}
    n_rep = 300
    for _ in range(n_rep):
        x = rng.normal(0.0, 1.0, size=15)
        boot, jack = _mean_boot(x, 1000, rng)
        t, tb, tj = np.exp(3 * x.mean()), np.exp(3 * boot), np.exp(3 * jack)
        lo, hi = bca_ci(t, tb, tj, 0.90)
        hits["bca"] += lo <= 1.0 <= hi
        lo, hi = percentile_ci(tb, 0.90)
        hits["pct"] += lo <= 1.0 <= hi
    assert 0.82 <= hits["bca"] / n_rep <= 0.96
    assert hits["pct"] <= hits["bca"] + 10


def test_degenerate_bootstraps_give_no_interval():
    assert percentile_ci(np.full(100, 2.0), 0.95) is None
    assert bca_ci(2.0, np.full(100, 2.0), np.full(5, 2.0), 0.95) is None
    assert percentile_ci(np.array([1.0, np.nan]), 0.95) is None
    assert bca_ci(float("nan"), np.arange(100.0), np.arange(5.0), 0.95) is None
