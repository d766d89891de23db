"""trial.label_noise: a seeded fraction of the P training labels flipped to another class."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from orchestrator.config import ConfigError, expand_trials, load_config
from trainers import TrialConfig, load_checkpoint, make_trainer, save_checkpoint
from trainers.data import load_dataset, noisy_labels, subset_indices

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

SMALL_CNN = dict(model="cnn", cnn_channels=(4, 8), cnn_hidden=(32, 16))


def cfg(**kw):
    base = dict(kind="deep", dataset="digits", P=128, epochs=3, batch_size=32, device="cpu")
    return TrialConfig(**(base | SMALL_CNN | kw))


def labels(n=1000, C=10, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).integers(0, C, n), dtype=torch.int64)


@pytest.mark.parametrize("n", [1, 7, 100, 137, 1397])
@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25, 0.3, 0.5, 0.99])
def test_exactly_round_fraction_p_labels_change_and_each_to_another_class(n, fraction):
    y = labels(n)
    out = noisy_labels(y, 10, fraction, seed=3)
    changed = out != y
    assert int(changed.sum()) == round(fraction * n)  # every chosen label really changes
    assert out.dtype == y.dtype and out.shape == y.shape
    assert int(out.min()) >= 0 and int(out.max()) < 10
    assert torch.equal(y, labels(n))  # the input is not modified in place


def test_new_classes_are_uniform_over_the_other_classes():
    C, n = 10, 20000
    y = torch.zeros(n, dtype=torch.int64)  # all class 0: the new classes are 1..9
    out = noisy_labels(y, C, 0.5, seed=1)
    counts = torch.bincount(out[out != 0], minlength=C)[1:].double()
    assert counts.sum() == n // 2
    expected = n / 2 / (C - 1)
    assert float((counts - expected).abs().max()) < 5 * math.sqrt(expected)  # ~5 sigma
    assert torch.equal(
        torch.bincount(noisy_labels(labels(50, 2), 2, 0.4, 0) ^ labels(50, 2)),
        torch.tensor([30, 20]),
    )  # two classes: a flip is the other class


def test_deterministic_per_seed_and_different_across_seeds():
    y = labels(500)
    a, b = noisy_labels(y, 10, 0.2, seed=5), noisy_labels(y, 10, 0.2, seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, noisy_labels(y, 10, 0.2, seed=6))


def test_zero_noise_returns_the_labels_unchanged():
    y = labels(100)
    assert noisy_labels(y, 10, 0.0, seed=0) is y
    assert torch.equal(noisy_labels(y, 10, 0.004, seed=0), y)  # round(0.4) = 0 labels


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_bad_fractions_are_rejected_with_the_field_name(bad):
    with pytest.raises(ValidationError, match=r"label_noise: must be a fraction in \[0, 1\)"):
        cfg(label_noise=bad)
    with pytest.raises(ValueError, match="label_noise"):
        noisy_labels(labels(10), 10, bad, seed=0)


def test_perceptron_refuses_label_noise():
    with pytest.raises(ValidationError, match="label_noise"):
        TrialConfig(kind="perceptron", alpha=1.0, N=16, label_noise=0.1)


def test_trainer_flips_training_labels_only_and_keeps_subset_and_init():
    data = load_dataset("digits", cfg().data_root)
    clean, noisy = make_trainer(cfg(seed=2)), make_trainer(cfg(seed=2, label_noise=0.25))
    idx = subset_indices(data.x_train.shape[0], 128, 2)
    # label_noise=0: bit-identical data to what the trainer always used
    assert np.array_equal(clean.indices, idx)
    assert torch.equal(clean.y_train, data.y_train[torch.as_tensor(idx)])
    # noise changes exactly round(0.25 P) training labels and nothing else
    assert np.array_equal(noisy.indices, idx)
    assert torch.equal(noisy.x_train, clean.x_train)
    assert int((noisy.y_train != clean.y_train).sum()) == 32
    assert torch.equal(noisy.y_train, noisy_labels(clean.y_train, 10, 0.25, seed=2))
    for t in (clean, noisy):  # the test set is never touched
        assert torch.equal(t.x_test, data.x_test) and torch.equal(t.y_test, data.y_test)
    assert torch.equal(data.y_train, load_dataset.__wrapped__("digits", "").y_train)  # no in-place
    # the noise has its own RNG stream: same initial weights, same epoch permutations
    sa, sb = clean.model.state_dict(), noisy.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(clean.shuffle.get_state(), noisy.shuffle.get_state())


def test_noisy_trial_is_deterministic_and_its_checkpoint_is_its_own(tmp_path):
    def run(c):
        recs = []
        make_trainer(c).run(recs.append)
        return recs

    c = cfg(label_noise=0.3, log_schedule="every")
    assert run(c) == run(c)
    t = make_trainer(cfg(label_noise=0.3, epochs=2))
    t.run(lambda r: None)
    path = tmp_path / "ck.pt"
    save_checkpoint(t, path)
    with pytest.raises(ValueError, match="label_noise"):
        load_checkpoint(make_trainer(cfg(label_noise=0.1, epochs=2)), path)
    with pytest.raises(ValueError, match="label_noise"):
        load_checkpoint(make_trainer(cfg(epochs=2)), path)
    # a checkpoint written before the field existed belongs to a label_noise=0 trial
    clean = make_trainer(cfg(epochs=2))
    clean.run(lambda r: None)
    save_checkpoint(clean, path)
    state = torch.load(path, weights_only=False)
    del state["config"]["label_noise"]
    fresh = make_trainer(cfg(epochs=2))
    fresh.load_state_dict(state)
    assert fresh.epoch == 2


def test_option_reaches_the_trials_from_a_preset_and_from_set(tmp_path):
    p = tmp_path / "noisy.yaml"
    p.write_text(
        "name: noisy\nseeds: [0, 1]\nblocks:\n  - models: [cnn]\n    datasets: [digits]\n"
        "    P: [100]\ntrial:\n  epochs: 2\n  label_noise: 0.2\n"
    )
    assert {t["label_noise"] for t in expand_trials(load_config(str(p)))} == {0.2}
    over = expand_trials(load_config(str(p), ["trial.label_noise=0.1"]))
    assert {t["label_noise"] for t in over} == {0.1}
    assert all(TrialConfig(**t).label_noise == 0.1 for t in over)
    with pytest.raises(ConfigError, match="label_noise"):
        load_config(str(p), ["trial.label_noise=1.2"])


def test_cli_bad_label_noise_exits_2_naming_the_field():
    r = subprocess.run(
        [sys.executable, "-m", "trainers.run", "--set", "P=10", "--set", "label_noise=-0.5"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "label_noise" in r.stderr and len(r.stderr.splitlines()) == 1
