"""Slow: do the 95% bootstrap intervals cover the true exponents in ~95% of replicates?

Each replicate is a fresh synthetic sweep (analysis.synth, Eq. 2-4: offsets q1, q2 != 0, seed
noise on the optima and on every point) analysed by the full pipeline, automatic P_min and
window included. Run with `pytest -m slow tests/test_fit_coverage.py`.
"""

import numpy as np
import pytest

from analysis.fit import Choices, analyse
from analysis.synth import make_sweep, truth

N_REPLICATES = 200
SWEEP = dict(
    P_list=(1e3, 2e3, 4e3, 8e3, 16e3, 32e3),
    seeds_per_P=8,
    q2=20.0,
    q3=0.002,
    sigma_opt=0.05,
    sigma_point=0.03,
    n_points=150,
)


def coverage(n_replicates: int, ci: str) -> dict[str, float]:
    hits = {name: [] for name in truth(**SWEEP)}
    for r in range(n_replicates):
        (res,) = analyse(make_sweep(seed=1000 + r, **SWEEP), Choices(n_boot=200, ci=ci, seed=r))
        for name, true in truth(**SWEEP).items():
            lo_hi = getattr(res, name).ci
            hits[name].append(lo_hi is not None and lo_hi[0] <= true <= lo_hi[1])
    return {name: float(np.mean(h)) for name, h in hits.items()}


@pytest.mark.slow
def test_bca_intervals_cover_the_truth_about_95_percent():
    cov = coverage(N_REPLICATES, "bca")
    print("coverage of 95% BCa intervals over", N_REPLICATES, "replicates:", cov)
    # binomial sd at 95% and n = 200 is 1.5 points: accept 3 sd around the nominal level
    for name, c in cov.items():
        assert 0.905 <= c <= 0.995, (name, c)
