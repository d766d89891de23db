"""analysis.bootstrap: stratified seed resampling and percentile / BCa intervals."""

import numpy as np
import pytest

from analysis.bootstrap import (
    bca_ci,
    effective_dof,
    jackknife_weights,
    percentile_ci,
    stratified_weights,
)


def test_stratified_weights_keep_each_P_and_are_uniform():
    strata = np.repeat([0, 1, 2], [3, 5, 1])
    W = stratified_weights(strata, 4000, np.random.default_rng(0))
    for s, m in ((0, 2), (1, 4), (2, 1)):
        assert np.all(W[:, strata == s].sum(axis=1) == m)  # n - 1 draws in every P (n >= 2)
    # equal probabilities within a P: each seed is drawn (n - 1) / n times per resample
    expected = np.repeat([2 / 3, 4 / 5, 1.0], [3, 5, 1])
    assert W.mean(axis=0) == pytest.approx(expected, abs=0.05)
    assert np.all(W[:, strata == 2] == 1)


def test_rescaled_resamples_give_the_unbiased_variance_of_each_P_mean():
    """Over resamples, the weighted mean of a P's seeds varies like s^2 / n (ddof = 1), not
    (n - 1) / n s^2 / n: small strata (the paper's sweeps have 3 to 30 seeds) get honest errors."""
    rng = np.random.default_rng(3)
    strata = np.repeat([0, 1], [4, 9])
    x = rng.normal(size=13)
    W = stratified_weights(strata, 40000, rng)
    for s in (0, 1):
        w, v = W[:, strata == s], x[strata == s]
        means = (w @ v) / w.sum(axis=1)
        assert means.var() == pytest.approx(v.var(ddof=1) / len(v), rel=0.03)


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


def _stratified_jackknife(x, strata, weights):
    """Delete-one values of sum_h weights[h] * mean(x in h), and the stratum of each."""
    stat = lambda keep: sum(  # noqa: E731
        w * x[(strata == h) & keep].mean() for h, w in enumerate(weights)
    )
    rows = [np.arange(len(x)) != i for i in range(len(x))]
    return np.array([stat(k) for k in rows]), strata.copy()


def test_effective_dof_is_welch_satterthwaite_for_a_stratified_mean():
    rng = np.random.default_rng(4)
    n = np.array([3, 5, 8])
    strata = np.repeat(np.arange(3), n)
    x = rng.normal(size=n.sum()) * np.repeat([1.0, 3.0, 0.5], n)
    weights = [0.2, 0.5, 0.3]
    jack, js = _stratified_jackknife(x, strata, weights)
    # textbook: v_h = w_h^2 s_h^2 / n_h, nu = (sum v_h)^2 / sum v_h^2 / (n_h - 1)
    v = np.array([w**2 * x[strata == h].var(ddof=1) / n[h] for h, w in enumerate(weights)])
    expected = v.sum() ** 2 / np.sum(v**2 / (n - 1))
    got = effective_dof(jack, js, {h: int(n[h]) for h in range(3)})
    assert got == pytest.approx(expected, rel=1e-9)
    assert effective_dof(jack, None, {}) == np.inf  # group-deleting jackknife: no correction


def test_expanded_percentile_covers_a_small_sample_mean():
    """n = 5 normal draws: the plain percentile interval of the (rescaled) bootstrap mean
    covers ~88%; widened to t_4 quantiles it covers ~95%, like Student's t interval."""
    rng = np.random.default_rng(5)
    n, n_rep = 5, 600
    strata = np.zeros(n, dtype=int)
    hits = {"plain": 0, "t": 0}
    for _ in range(n_rep):
        x = rng.normal(size=n)
        W = stratified_weights(strata, 1000, rng)
        boot = (W @ x) / W.sum(axis=1)
        jack, js = _stratified_jackknife(x, strata, [1.0])
        dof = effective_dof(jack, js, {0: n})
        assert dof == pytest.approx(n - 1)
        lo, hi = percentile_ci(boot, 0.95)
        hits["plain"] += lo <= 0.0 <= hi
        lo, hi = percentile_ci(boot, 0.95, dof)
        hits["t"] += lo <= 0.0 <= hi
    assert 0.92 <= hits["t"] / n_rep <= 0.98
    assert hits["plain"] / n_rep <= 0.91
