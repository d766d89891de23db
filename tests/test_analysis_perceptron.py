"""analysis/perceptron.py (issue 10): relative gamma_meas, reference exponents, App. C blocks."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis import perceptron
from analysis.fit import Choices, analyse
from analysis.synth import make_sweep
from common import names as N

ALPHAS = (40.0, 80.0, 160.0, 320.0, 640.0, 1280.0)


def test_eps_hebb_matches_the_theory_baseline():
    theory = pytest.importorskip("theory")
    a = np.array([0.5, 5.0, 64.0, 1e4])
    assert np.allclose(perceptron.eps_hebb(a), theory.eps_hebb(a), rtol=1e-10)


def test_gamma_meas_of_a_perceptron_group_is_that_of_eps_opt_over_eps0():
    """Curves whose relative optimum eps_opt/eps_0 falls like alpha^-1/2 (Fig. 2): the plain
    fit measures the raw exponent (~1, eps_0 ~ alpha^-1/2 on top), the perceptron fit 1/2;
    gamma1 and gamma2 do not change (a per-alpha factor leaves eps/eps_opt alone)."""
    curves = make_sweep(P_list=ALPHAS, seeds_per_P=6, gamma1=0.5, gamma2=1.0, gamma=0.5)
    curves["test_error"] *= perceptron.eps_hebb(curves["P"].to_numpy(float))
    group = curves["group"].iloc[0]
    choices = Choices(n_boot=200)
    raw = analyse(curves, choices)
    rel = perceptron.with_relative_gamma_meas(curves, raw, {group: N.KIND_PERCEPTRON}, choices)
    r0, r1 = raw[0], rel[0]
    assert r0.gamma_meas.value > 0.9  # 1/2 + the Hebb error's ~1/2
    assert r1.gamma_meas.ci[0] <= 0.5 <= r1.gamma_meas.ci[1]
    assert abs(r1.gamma_meas.value - 0.5) < 0.05
    assert r1.gamma1.value == r0.gamma1.value and r1.gamma2.value == r0.gamma2.value
    assert r1.gamma_diff.value == pytest.approx(r1.gamma_pred.value - r1.gamma_meas.value)
    assert perceptron.RELATIVE_FLAG in r1.flags
    # a deep-net group is left alone
    same = perceptron.with_relative_gamma_meas(curves, raw, {group: N.KIND_DEEP}, choices)
    assert same[0] is raw[0]
    blocks = perceptron.exponent_blocks(rel, {group: N.KIND_PERCEPTRON})
    table = next(b for b in blocks if b[0] == "table")
    assert [row[1] for row in table[2]] == ["gamma1", "gamma2", "gamma_meas"]
    assert table[2][0][4] == "0.4901 +- 0.0005" and table[2][1][3] == "1"


def _mse_curves(lam_end: dict[float, float]) -> pd.DataFrame:
    """Saturating norms lam(t) = lam_end (1 - exp(-t/5)); eps falls, then rises a little."""
    rows = []
    for a, le in lam_end.items():
        for seed in range(3):
            for t in np.unique(np.geomspace(1, 5000, 60).round()):
                lam = le * (1 - math.exp(-t / 5))
                eps = 0.1 + 0.02 * (lam / le - 0.8) ** 2 + 0.001 * seed
                rows.append(("perceptron|teacher|sgd|wd=0.0|loss=mse|norm", a, seed, t, lam, eps))
    df = pd.DataFrame(rows, columns=["group", "P", "seed", "epoch", "lambda", "test_error"])
    return df.astype({"group": "category"})  # as analysis.io loads it


def test_mse_groups_are_described_as_the_counterexample_not_fitted():
    curves = _mse_curves({2.0: 3.0, 4.0: 3.1, 8.0: 3.2, 16.0: 3.2})
    assert perceptron.fitted_groups(curves).empty
    t = perceptron.mse_summary(curves)
    assert list(t["alpha"]) == [2.0, 4.0, 8.0, 16.0]
    assert (t["late_growth"] < 1e-4).all()  # saturated long before the end
    assert np.allclose(t["lambda_at_min"] / t["lambda_end"], 0.8, atol=0.02)
    text = " ".join(b[1] for b in perceptron.mse_blocks(curves) if b[0] in ("h2", "p"))
    assert "counterexample" in text and "saturates" in text
    assert "alpha^0.0" in text  # lambda at the minimum does not grow with alpha
