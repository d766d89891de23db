"""Slow: do the 95% bootstrap intervals cover the true exponents in ~95% of replicates?

Each replicate is a fresh synthetic sweep (analysis.synth, Eq. 2-4: offsets q1, q2, q3 != 0,
seed noise on the optima and on every point) analysed by the full pipeline, automatic P_min and
window included, with the default interval (Choices.ci). Two designs: a small one (6 P x 8
seeds, the offsets large at the small P) and one shaped like the paper's grids (10 P x 10 seeds).
Run with `pytest -m slow tests/test_fit_coverage.py -s` to see the coverage figures.
"""

import numpy as np
import pytest

from analysis.fit import Choices, analyse
from analysis.synth import make_sweep, truth

N_REPLICATES = 200
N_BOOT = 1000  # resamples per replicate: 200 put the 2.5% quantile on the 5th value, too noisy
NOISE = dict(q2=20.0, q3=0.002, sigma_opt=0.05, sigma_point=0.03, n_points=150)
DESIGNS = {
    "6P x 8 seeds": dict(P_list=(1e3, 2e3, 4e3, 8e3, 16e3, 32e3), seeds_per_P=8, **NOISE),
    "10P x 10 seeds": dict(P_list=tuple(np.geomspace(1e3, 48e3, 10)), seeds_per_P=10, **NOISE),
}


def coverage(sweep: dict, n_replicates: int) -> dict[str, float]:
    hits = {name: [] for name in truth(**sweep)}
    for r in range(n_replicates):
        (res,) = analyse(make_sweep(seed=1000 + r, **sweep), Choices(n_boot=N_BOOT, seed=r))
        for name, true in truth(**sweep).items():
            lo_hi = getattr(res, name).ci
            hits[name].append(lo_hi is not None and lo_hi[0] <= true <= lo_hi[1])
    return {name: float(np.mean(h)) for name, h in hits.items()}


@pytest.mark.slow
@pytest.mark.parametrize("design", DESIGNS)
def test_intervals_cover_the_truth_about_95_percent(design):
    cov = coverage(DESIGNS[design], N_REPLICATES)
    print(f"coverage of 95% intervals, {design}, {N_REPLICATES} replicates: {cov}")
    # binomial sd at 95% and n = 200 is 1.5 points: accept 3 sd around the nominal level
    for name, c in cov.items():
        assert 0.905 <= c <= 0.995, (design, name, c)
