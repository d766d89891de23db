"""Deep-net trainer (Section 3, App. G): learning on digits, checkpoints, divergence, records."""

import numpy as np
import pytest
import torch

from common.names import (
    DEEP_NORMS,
    EPOCH,
    STOP_REASON,
    TEST_ERROR,
    TEST_LOSS,
    TRAIN_ERROR,
    TRAIN_LOSS,
)
from trainers import (
    STATUS_COMPLETED,
    STATUS_DIVERGED,
    TrialConfig,
    load_checkpoint,
    logged_epochs,
    make_trainer,
    save_checkpoint,
)
from trainers.data import load_dataset, subset_indices
from trainers.models import BasicBlock, ViT

TINY = {
    "cnn": dict(model="cnn", cnn_channels=(4, 8), cnn_hidden=(32, 16)),
    "resnet": dict(model="resnet", resnet_width=4, resnet_blocks=1),
    "vit": dict(model="vit", vit_patch=2, vit_dim=16, vit_depth=2, vit_heads=2),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def cfg(**kw):
    base = dict(kind="deep", dataset="digits", P=128, epochs=6, batch_size=32, device="cpu")
    return TrialConfig(**(base | kw))


def test_cnn_on_digits_is_clearly_better_than_chance():
    """Default LeNet-like CNN, Adam lr 1e-3, P=1000: measured test error 0.14 after 8 epochs
    (chance 0.9); ~0.05 after 30 epochs on all 1397 training images (about a CPU minute)."""
    recs = []
    status = make_trainer(cfg(P=1000, epochs=8, batch_size=64, log_schedule=2)).run(recs.append)
    assert status == STATUS_COMPLETED
    assert [r[EPOCH] for r in recs] == [1.0, 8.0]
    assert recs[-1][TEST_ERROR] < 0.3
    assert recs[-1][TRAIN_LOSS] < recs[0][TRAIN_LOSS]
    assert set(DEEP_NORMS) <= set(recs[-1])


@pytest.mark.parametrize("model", ["cnn", "resnet", "vit"])
def test_checkpoint_3_plus_3_equals_6_straight(model, tmp_path):
    c = cfg(log_schedule="every", **TINY[model])
    straight = []
    make_trainer(c).run(straight.append)

    first = make_trainer(c.model_copy(update={"epochs": 3}))
    resumed = []
    first.run(resumed.append)
    assert resumed[-1].pop(STOP_REASON) == "budget: all 3 epochs"  # its end, not the run's
    save_checkpoint(first, tmp_path / "ckpt.pt")
    torch.manual_seed(12345)  # a restored trial must not depend on the process's RNG state
    second = make_trainer(c)
    load_checkpoint(second, tmp_path / "ckpt.pt")
    second.run(resumed.append)
    assert [r[EPOCH] for r in resumed] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert resumed == straight


def test_checkpoint_inside_report_is_the_state_after_that_epoch(tmp_path):
    """The orchestrator checkpoints inside report(); restoring that file resumes correctly."""
    c = cfg(log_schedule="every", **TINY["cnn"])
    straight = []
    make_trainer(c).run(straight.append)
    tr = make_trainer(c)
    tr.run(lambda r: save_checkpoint(tr, tmp_path / f"e{int(r[EPOCH])}.pt"))
    again = make_trainer(c)
    load_checkpoint(again, tmp_path / "e4.pt")
    tail = []
    again.run(tail.append)
    assert tail == straight[4:]


def test_checkpoint_of_another_trial_is_refused(tmp_path):
    a = make_trainer(cfg(**TINY["cnn"]))
    save_checkpoint(a, tmp_path / "a.pt")
    b = make_trainer(cfg(seed=1, **TINY["cnn"]))
    with pytest.raises(ValueError, match="checkpoint"):
        load_checkpoint(b, tmp_path / "a.pt")


def test_record_matches_an_independent_evaluation():
    c = cfg(epochs=3, log_schedule="every", **TINY["resnet"])
    tr = make_trainer(c)
    recs = []
    tr.run(recs.append)
    data = load_dataset("digits", c.data_root)
    idx = torch.as_tensor(subset_indices(data.x_train.shape[0], c.P, c.seed))
    tr.model.eval()
    with torch.no_grad():
        for x, y, loss_key, err_key in [
            (data.x_test, data.y_test, TEST_LOSS, TEST_ERROR),
            (data.x_train[idx], data.y_train[idx], TRAIN_LOSS, TRAIN_ERROR),
        ]:
            out = torch.cat([tr.model(x[i : i + 50]) for i in range(0, len(x), 50)])
            assert recs[-1][err_key] == pytest.approx((out.argmax(1) != y).double().mean().item())
            ce = torch.nn.functional.cross_entropy(out, y).item()
            assert recs[-1][loss_key] == pytest.approx(ce, rel=1e-5)


def test_nan_loss_stops_with_diverged_and_keeps_records():
    c = cfg(log_schedule="every", optimizer="sgd", lr=0.01, **TINY["cnn"])
    tr = make_trainer(c)
    recs = []

    def report(r):
        recs.append(r)
        if r[EPOCH] == 2:  # poison the weights: the next epoch's loss is NaN
            with torch.no_grad():
                next(tr.model.parameters()).fill_(float("nan"))

    assert tr.run(report) == STATUS_DIVERGED
    assert tr.status == STATUS_DIVERGED
    assert [r[EPOCH] for r in recs] == [1.0, 2.0]


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
def test_other_optimizers_reduce_the_training_loss(opt):
    lr = 0.05 if opt == "sgd" else 1e-3
    recs = []
    make_trainer(
        cfg(
            optimizer=opt,
            lr=lr,
            momentum=0.9 if opt == "sgd" else 0.0,
            log_schedule=2,
            **TINY["cnn"],
        )
    ).run(recs.append)
    assert recs[-1][TRAIN_LOSS] < recs[0][TRAIN_LOSS]


def test_logged_epochs_are_the_reported_ones():
    c = cfg(epochs=12, log_schedule=4, **TINY["cnn"])
    recs = []
    make_trainer(c).run(recs.append)
    assert [int(r[EPOCH]) for r in recs] == logged_epochs(c) == [1, 2, 5, 12]


# -----------------------------------------------------------------------------
# Subsets and models


def test_subsets_are_seeded_distinct_and_nest_when_asked():
    a = subset_indices(1000, 100, seed=3)
    assert len(set(a)) == 100 and a.max() < 1000
    assert np.array_equal(a, subset_indices(1000, 100, seed=3))
    assert not np.array_equal(a, subset_indices(1000, 100, seed=4))
    small, big = subset_indices(1000, 50, 3, nested=True), subset_indices(1000, 200, 3, nested=True)
    assert set(small) <= set(big)
    indep = subset_indices(1000, 200, 3)
    assert not set(subset_indices(1000, 50, 3)) <= set(indep)  # independent draws at each P
    with pytest.raises(ValueError, match="P"):
        subset_indices(10, 11, 0)


def test_resnet_blocks_follow_the_norms_convention():
    tr = make_trainer(cfg(**TINY["resnet"]))
    blocks = [m for m in tr.model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3  # one per stage
    assert len(blocks[0].shortcut) == 0  # identity: same width and stride
    assert isinstance(blocks[1].shortcut[0], torch.nn.Conv2d)  # projection where shape changes


def test_vit_rejects_a_patch_that_does_not_tile_the_image():
    with pytest.raises(ValueError, match="vit_patch"):
        ViT((1, 8, 8), 10, patch=3)


@pytest.mark.slow
def test_cnn_on_all_digits_reaches_about_5_percent():
    """Default CNN, all 1397 training digits, 30 epochs (~1 CPU minute): measured 0.055."""
    recs = []
    make_trainer(cfg(P=1397, epochs=30, batch_size=128, log_schedule=5)).run(recs.append)
    assert recs[-1][TEST_ERROR] < 0.09


def test_bf16_precision_learns_digits_like_fp32():
    """precision=bf16 (autocast of the forward passes) is a speed knob: on digits the same
    CNN run must land close to the fp32 one (measured: both ~0.14 after 8 epochs)."""
    errs = {}
    for prec in ("fp32", "bf16"):
        recs = []
        c = cfg(P=1000, epochs=8, batch_size=64, log_schedule=2, precision=prec, norms="paper")
        assert make_trainer(c).run(recs.append) == STATUS_COMPLETED
        errs[prec] = recs[-1][TEST_ERROR]
    assert errs["bf16"] < 0.3 and abs(errs["bf16"] - errs["fp32"]) < 0.08, errs
