"""Every perceptron trial finishes: a property over alpha, N, loss, step rule, lambda_stop and
budget (trainers/perceptron.py, "Stopping"). No trial raises, every record is finite, the last
record and only it carries a stop reason, and the reason is the one the trial's state shows.

The default suite runs a fixed spread of cases that reaches every axis's extremes (alpha 0.5
to 512, N 16 to 2000, budgets to 1e6); `-m slow` runs the full product on small N.
"""

from __future__ import annotations

import itertools
import math

import pytest

from common.names import EPOCH, NORM_PERCEPTRON, STOP_REASON, TRAIN_ERROR, TRAIN_LOSS
from trainers import TrialConfig
from trainers.perceptron import FLOAT_TINY, PerceptronTrainer
from trainers.status import (
    STATUS_COMPLETED,
    STATUS_DIVERGED,
    STOP_BUDGET,
    STOP_DIVERGED,
    STOP_LAMBDA,
    STOP_RESOLUTION,
    stop_code,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def run_case(alpha, N, loss, rule, lambda_stop, epochs, seeds=(0,), lr=None):
    fields = dict(kind="perceptron", alpha=alpha, N=N, loss=loss, step_rule=rule)
    fields |= dict(lambda_stop=lambda_stop, epochs=epochs, device="cpu", log_schedule=20)
    if lr is not None:
        fields["lr"] = lr
    tr = PerceptronTrainer(TrialConfig(**fields), seeds=list(seeds))
    curves: dict[int, list[dict]] = {s: [] for s in tr.seeds}
    status = tr.run_batch(lambda s, rec: curves[s].append(rec))
    return tr, status, curves


def check_case(tr, status, curves) -> list[str]:
    """The property for every seed of one finished trainer; returns the stop codes."""
    cfg, codes = tr.cfg, []
    for i, s in enumerate(tr.seeds):
        recs = curves[s]
        assert recs, f"seed {s}: no record"
        for r in recs:
            assert all(math.isfinite(v) for k, v in r.items() if k != STOP_REASON), r
        assert [STOP_REASON in r for r in recs] == [False] * (len(recs) - 1) + [True]
        last, code = recs[-1], stop_code(recs[-1][STOP_REASON])
        assert tr.reasons[i] == last[STOP_REASON]
        assert [r[EPOCH] for r in recs] == sorted(r[EPOCH] for r in recs)
        assert last[EPOCH] <= cfg.epochs
        lam_max = max(r[NORM_PERCEPTRON] for r in recs[:-1]) if len(recs) > 1 else 0.0
        stop = cfg.lambda_stop
        if code == STOP_BUDGET:
            assert last[EPOCH] == cfg.epochs and tr.epoch == cfg.epochs
            assert stop is None or last[NORM_PERCEPTRON] < stop
            assert not float(tr.dv_max[i]) < FLOAT_TINY  # it had precision left
        elif code == STOP_LAMBDA:
            assert stop is not None and last[NORM_PERCEPTRON] >= stop > lam_max
        elif code == STOP_RESOLUTION:
            # the logistic loss underflowed on separable data: every margin ~> 44
            assert cfg.loss == "logistic" and float(tr.dv_max[i]) < FLOAT_TINY
            assert last[TRAIN_ERROR] == 0 and last[TRAIN_LOSS] < 1e-30
            assert stop is None or last[NORM_PERCEPTRON] < stop
            assert f"at lambda {last[NORM_PERCEPTRON]:.4g}" in last[STOP_REASON]
        else:
            assert code == STOP_DIVERGED and status == STATUS_DIVERGED
        codes.append(code)
    assert status == (STATUS_DIVERGED if STOP_DIVERGED in codes else STATUS_COMPLETED)
    return codes


# (alpha, N, loss, step_rule, lambda_stop, epochs): each axis at both ends, ~15 s in all
CASES = [
    (5.0, 1000, "logistic", "adaptive", None, 100_000),  # the crash of the old step
    (0.5, 2000, "logistic", "adaptive", None, 1_000_000),
    (512.0, 16, "logistic", "adaptive", None, 20_000),  # kappa ~ 1e-3: 1e6 steps take 95 s
    (512.0, 16, "logistic", "adaptive", 30.0, 1_000_000),
    (2.0, 16, "logistic", "adaptive", None, 1_000_000),
    (16.0, 64, "logistic", "constant", None, 20_000),
    (0.5, 16, "logistic", "constant", 3.0, 20_000),
    (0.5, 64, "mse", "adaptive", None, 5_000),
    (512.0, 16, "mse", "adaptive", 1e6, 3_000),
    (3.0, 16, "mse", "constant", None, 20_000),
    (128.0, 64, "mse", "adaptive", 0.5, 20_000),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_every_trial_finishes_with_the_reason_its_state_shows(case):
    codes = check_case(*run_case(*case))
    alpha, _, loss, _, stop, _ = case
    if loss == "mse":  # a finite minimiser: no underflow, ends by budget or lambda_stop
        assert set(codes) <= {STOP_BUDGET, STOP_LAMBDA}


def test_long_runs_end_at_float_resolution_in_a_batch():
    """Separable data, no lambda_stop, a budget far beyond what the adaptive rule needs: each
    seed of a batch ends on its own at the max-stability limit (lambda ~ 10^2)."""
    tr, status, curves = run_case(2.0, 64, "logistic", "adaptive", None, 1_000_000, (0, 1, 2))
    assert check_case(tr, status, curves) == [STOP_RESOLUTION] * 3
    assert tr.epoch < 100_000  # it stopped long before the budget
    lams = [c[-1][NORM_PERCEPTRON] for c in curves.values()]
    assert min(lams) > 20 and len(set(lams)) == 3


def test_a_diverging_seed_keeps_its_last_finite_state_and_says_so():
    tr, status, curves = run_case(3.0, 100, "mse", "constant", None, 5000, (0, 1), lr=1e4)
    assert check_case(tr, status, curves) == [STOP_DIVERGED] * 2
    assert status == STATUS_DIVERGED and tr.epoch < 5000


def test_a_larger_budget_continues_a_seed_that_ended_by_budget(tmp_path):
    from trainers import load_checkpoint, save_checkpoint

    first, _, c1 = run_case(5.0, 64, "logistic", "adaptive", None, 200)
    assert stop_code(c1[0][-1][STOP_REASON]) == STOP_BUDGET
    save_checkpoint(first, tmp_path / "p.pt")
    fields = first.cfg.model_dump() | {"epochs": 1_000_000}
    second = PerceptronTrainer(TrialConfig(**fields))
    load_checkpoint(second, tmp_path / "p.pt")
    more: list[dict] = []
    assert second.run(more.append) == STATUS_COMPLETED
    assert more[0][EPOCH] > 200 and stop_code(more[-1][STOP_REASON]) == STOP_RESOLUTION


@pytest.mark.slow
@pytest.mark.parametrize(
    ("alpha", "N"), [(a, n) for a in (0.5, 2.0, 8.0, 32.0, 128.0, 512.0) for n in (16, 48)]
)
def test_the_full_product_finishes(alpha, N):
    """Both losses x both rules x with/without lambda_stop x budgets 1e3, 1e5, 1e6."""
    for loss, rule, stop, epochs in itertools.product(
        ("logistic", "mse"), ("adaptive", "constant"), (None, 4.0), (1_000, 100_000, 1_000_000)
    ):
        if rule == "constant" and epochs > 100_000:
            continue  # 1/L steps grow lambda like log t: 1e6 steps only repeat 1e5's ending
        if loss == "mse" and epochs > 100_000:
            continue  # runs to its budget (a finite minimiser): 1e5 steps show the same
        check_case(*run_case(alpha, N, loss, rule, stop, epochs, (0, 1)))


@pytest.mark.slow
def test_large_n_trials_finish():
    for alpha, N in ((0.5, 2000), (8.0, 2000), (64.0, 500)):
        for loss in ("logistic", "mse"):
            epochs = 1_000_000 if loss == "logistic" else 3000
            check_case(*run_case(alpha, N, loss, "adaptive", None, epochs))
