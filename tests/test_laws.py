"""analysis.laws.fit_slope_within (Eq. 2 with a prefactor per curve) against dense computations."""

import math

import numpy as np
import pytest

from analysis.bootstrap import satterthwaite
from analysis.laws import fit_slope_within


def _curves(rng, G=6, B=15, slope=-0.4, spread=0.03, noise=0.01, ragged=True):
    X = np.tile(np.linspace(-2.0, -1.0, B), (G, 1)) + rng.normal(0, 0.05, (G, 1))
    b = slope + spread * rng.standard_normal(G)  # each curve its own slope and level
    Y = rng.normal(0, 1, (G, 1)) + b[:, None] * X + noise * rng.standard_normal((G, B))
    mask = np.ones((G, B), bool)
    if ragged:
        for g in range(G):
            mask[g, : rng.integers(0, 5)] = False
    return X, Y, mask


def test_slope_and_cluster_robust_error_equal_the_dense_formulas():
    rng = np.random.default_rng(3)
    X, Y, mask = _curves(rng)
    fit = fit_slope_within(X[None], Y[None], mask[None], sign=-1.0)
    # dense: least squares with one dummy column per curve, then the CR1 sandwich by curve
    g = np.nonzero(mask)[0]
    A = np.column_stack([X[mask], (g[:, None] == np.arange(len(X))[None, :]).astype(float)])
    beta = np.linalg.lstsq(A, Y[mask], rcond=None)[0]
    r = Y[mask] - A @ beta
    bread = np.linalg.inv(A.T @ A)
    meat = sum(np.outer(A[g == k].T @ r[g == k], A[g == k].T @ r[g == k]) for k in range(len(X)))
    G = len(X)
    se = np.sqrt((bread @ meat @ bread)[0, 0] * G / (G - 1))
    np.testing.assert_allclose(fit.gamma[0], -beta[0], rtol=1e-10)
    np.testing.assert_allclose(fit.se[0], se, rtol=1e-8)
    assert fit.q[0] == 0 and not fit.offset[0] and fit.npts[0] == mask.sum()
    assert fit.dof[0] == G - 1  # one score per curve, less the mean


def test_satterthwaite_degrees_of_freedom():
    # k equal parts of d dof each add up to k d; one dominant part keeps its own dof
    assert satterthwaite([1.0, 1.0, 1.0], [4, 4, 4]) == pytest.approx(12.0)
    assert satterthwaite([1.0, 1e-9], [3, 100]) == pytest.approx(3.0, rel=1e-6)
    assert satterthwaite([0.0, 0.0], [3, 5]) == math.inf


def test_balanced_curves_give_the_mean_slope_and_its_standard_error():
    # same x points on every curve: the slope is the mean of the curves' own slopes and the
    # CR1 error is their sample sd over sqrt(G), the spread between curves
    rng = np.random.default_rng(4)
    X, Y, mask = _curves(rng, G=8, ragged=False)
    X[:] = X[0]
    own = np.array([np.polyfit(x, y, 1)[0] for x, y in zip(X, Y, strict=True)])
    fit = fit_slope_within(X[None], Y[None], mask[None], sign=-1.0)
    np.testing.assert_allclose(fit.gamma[0], -own.mean(), rtol=1e-10)
    np.testing.assert_allclose(fit.se[0], own.std(ddof=1) / np.sqrt(len(own)), rtol=1e-8)


def test_exact_power_laws_with_different_prefactors_give_the_exponent_exactly():
    x = np.linspace(-3, -1, 20)
    X = np.tile(x, (5, 1))
    Y = -0.37 * X + np.arange(5)[:, None] * 0.2  # collapse off by a constant per curve
    fit = fit_slope_within(X[None], Y[None], np.ones_like(X, bool)[None], sign=-1.0)
    np.testing.assert_allclose(fit.gamma[0], 0.37, rtol=1e-12)
    assert fit.se[0] < 1e-10


def test_rows_are_independent_and_one_curve_has_no_error():
    rng = np.random.default_rng(5)
    X, Y, mask = _curves(rng)
    one = np.zeros_like(mask)
    one[0] = mask[0]  # a single curve: no spread between curves to measure the error by
    fit = fit_slope_within(np.stack([X, X]), np.stack([Y, Y]), np.stack([mask, one]), -1.0)
    alone = fit_slope_within(X[None], Y[None], mask[None], -1.0)
    assert fit.gamma[0] == alone.gamma[0] and fit.se[0] == alone.se[0]
    np.testing.assert_allclose(fit.gamma[1], -np.polyfit(X[0][mask[0]], Y[0][mask[0]], 1)[0])
    assert np.isnan(fit.se[1])
    none = fit_slope_within(X[None], Y[None], np.zeros_like(mask)[None], -1.0)
    assert np.isnan(none.gamma[0]) and none.npts[0] == 0
