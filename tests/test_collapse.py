"""analysis.collapse: shifted reads on the log-lambda grid and the Houdayer-Hartmann S."""

import numpy as np
import pytest

from analysis.collapse import deviation_from_reference, houdayer_hartmann, shifted

H = 0.1


def test_shifted_interpolates_linearly_and_blanks_outside():
    curve = np.arange(10.0)[None, :] * 2.0
    out = shifted(curve, np.array([2.5]))
    assert out[0, :7] == pytest.approx(2.0 * (np.arange(7) + 2.5))
    assert np.all(np.isnan(out[0, 7:]))
    assert np.all(np.isnan(shifted(curve, np.array([np.nan]))))


def _curves(n_P, noise, offsets, rng):
    """Collapsed log curves y = -0.5 log x of n_P curves, each shifted on the grid by L."""
    B = 80
    u = H * np.arange(B)
    L = np.linspace(2.0, 4.0, n_P)[None, :]
    logx = u[None, None, :] - L[:, :, None]
    y = -0.5 * logx + np.asarray(offsets)[None, :, None]
    y = y + noise * rng.standard_normal(y.shape)
    return y, np.full_like(y, noise**2), L


def test_S_is_about_one_when_curves_differ_by_their_noise_only():
    rng = np.random.default_rng(0)
    used = np.ones((1, 5), dtype=bool)
    S = [
        houdayer_hartmann(
            *_curves(5, 0.02, np.zeros(5), rng)[:2], _curves(5, 0, [0] * 5, rng)[2], H, used
        )[0][0]
        for _ in range(20)
    ]
    # linear interpolation of noisy neighbours slightly smooths Y: S sits a little below 1
    assert 0.7 < np.mean(S) < 1.2


def test_S_is_large_for_a_systematic_departure_and_rms_measures_it():
    rng = np.random.default_rng(1)
    y, dy2, L = _curves(4, 0.01, [0.0, 0.0, 0.0, 0.3], rng)
    S, rms, n = houdayer_hartmann(y, dy2, L, H, np.ones((1, 4), dtype=bool))
    assert S[0] > 50 and rms[0] > 0.1 and n[0] > 0
    # leaving the odd curve out restores the collapse
    S2, rms2, _ = houdayer_hartmann(y, dy2, L, H, np.array([[True, True, True, False]]))
    assert S2[0] < 2 and rms2[0] < 0.03


def test_deviation_from_reference_singles_out_the_curve_that_departs():
    rng = np.random.default_rng(2)
    y, _, L = _curves(5, 0.005, [0.2, 0, 0, 0, 0], rng)
    ref = np.array([[False, False, True, True, True]])
    D = deviation_from_reference(y, L, H, ref)[0]
    assert D[0] == pytest.approx(0.2, abs=0.02) and np.all(D[1:] < 0.02)
