"""TrialConfig validation, the log schedule, and the single-trial CLI."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from common.names import DEEP_NORMS, EPOCH, NORM_PERCEPTRON, OVERLAP, TEST_ERROR
from trainers import TrialConfig, dataset_train_size, logged_epochs

ROOT = Path(__file__).resolve().parents[1]


# -----------------------------------------------------------------------------
# Config


def test_perceptron_derives_P_and_round_trips_through_json():
    c = TrialConfig(kind="perceptron", alpha=5, N=1000)
    assert c.P == 5000 and c.model == "perceptron" and c.dataset == "teacher"
    dumped = json.loads(json.dumps(c.model_dump()))
    assert TrialConfig(**dumped) == c


def test_deep_defaults_follow_appendix_g():
    c = TrialConfig(P=500)
    assert (c.kind, c.model, c.dataset, c.optimizer, c.lr) == (
        "deep",
        "cnn",
        "digits",
        "adam",
        1e-3,
    )
    with pytest.raises(ValidationError):
        c.P = 3  # frozen


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(P=0), "P"),
        (dict(P=-5), "P"),
        (dict(P=1398), "P"),  # digits has 1397 training images
        (dict(P=60001, dataset="mnist"), "P"),
        (dict(P=10, batch_size=0), "batch_size"),
        (dict(P=10, model="mlp"), "model"),
        (dict(P=10, dataset="svhn"), "dataset"),
        (dict(P=10, optimizer="lbfgs"), "optimizer"),
        (dict(P=10, lr=-1.0), "lr"),
        (dict(P=10, epochs=0), "epochs"),
        (dict(P=10, colour="red"), "colour"),
        (dict(kind="perceptron", alpha=-1.0), "alpha"),
        (dict(kind="perceptron", alpha=0.0), "alpha"),
        (dict(kind="perceptron", alpha=2.0, P=7), "P"),
        (dict(kind="perceptron"), "P"),
        (dict(P=10, model="vit", vit_dim=10, vit_heads=4), "vit_heads"),
        (dict(P=10, momentum=0.9), "momentum"),  # adam has no momentum knob
        (dict(kind="perceptron", alpha=1.0, optimizer="adam"), "optimizer"),
        (dict(kind="perceptron", alpha=1.0, weight_decay=1e-4), "weight_decay"),
    ],
)
def test_bad_input_names_the_field(kw, field):
    with pytest.raises(ValidationError, match=field):
        TrialConfig(**kw)


def test_dataset_train_size():
    assert dataset_train_size("mnist") == 60000 and dataset_train_size("cifar100") == 50000
    assert dataset_train_size("digits") == 1397
    with pytest.raises(ValueError, match="dataset"):
        dataset_train_size("imagenet")


@pytest.mark.parametrize("E", [1, 7, 50, 60, 500, 1000, 10**6])
def test_log_schedule_has_first_last_and_about_50_points(E):
    ep = logged_epochs(TrialConfig(P=10, epochs=E))
    assert ep[0] == 1 and ep[-1] == E
    assert all(b > a for a, b in zip(ep, ep[1:], strict=False))
    assert len(ep) == min(E, 50)
    if E >= 500:  # log-spaced: ratios between consecutive late points are about constant
        r = [b / a for a, b in zip(ep[-10:], ep[-9:], strict=False)]
        assert max(r) / min(r) < 1.1


def test_every_and_int_schedules():
    assert logged_epochs(TrialConfig(P=10, epochs=5, log_schedule="every")) == [1, 2, 3, 4, 5]
    assert len(logged_epochs(TrialConfig(P=10, epochs=100, log_schedule=10))) == 10


# -----------------------------------------------------------------------------
# CLI


def cli(*args, cwd):
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "trainers.run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_cli_help():
    r = cli("--help", cwd=ROOT)
    assert r.returncode == 0 and "--set" in r.stdout and "--config" in r.stdout


@pytest.mark.parametrize(
    "args, field",
    [
        (["--set", "P=0"], "P"),
        (["--set", "model=mlp", "--set", "P=5"], "model"),
        (["--set", "P=10", "--set", "batch_size=-1"], "batch_size"),
        (["--set", "P"], "--set"),
        (["--set", "kind=perceptron", "--set", "alpha=-1"], "alpha"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, field, tmp_path):
    r = cli(*args, "--out", str(tmp_path / "c.csv"), cwd=tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and field in r.stderr
    assert not (tmp_path / "c.csv").exists()


def test_cli_deep_digits_writes_one_row_per_logged_epoch(tmp_path):
    out = tmp_path / "curve.csv"
    r = cli(
        "--set",
        "kind=deep",
        "--set",
        "model=cnn",
        "--set",
        "dataset=digits",
        "--set",
        "P=100",
        "--set",
        "epochs=3",
        "--set",
        "device=cpu",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert [float(row[EPOCH]) for row in rows] == [1.0, 2.0, 3.0]
    assert set(DEEP_NORMS) | {TEST_ERROR} <= set(rows[0])
    assert "epoch=3" in r.stdout  # progress printed


def test_cli_perceptron_from_yaml_config(tmp_path):
    (tmp_path / "p.yaml").write_text("kind: perceptron\nalpha: 2\nN: 100\nepochs: 30\n")
    out = tmp_path / "p.csv"
    r = cli(
        "--config",
        "p.yaml",
        "--set",
        "log_schedule=5",
        "--set",
        "device=cpu",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) >= 5 and {NORM_PERCEPTRON, OVERLAP, TEST_ERROR} <= set(rows[0])
    assert float(rows[-1][EPOCH]) == 30.0


def test_import_trainers_and_validating_a_config_do_not_import_torch():
    code = (
        "import sys, trainers; trainers.TrialConfig(P=10); trainers.logged_epochs("
        "trainers.TrialConfig(P=10)); assert 'torch' not in sys.modules, 'torch imported'"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr


def test_norm_family_precision_and_paper_models_are_validated():
    c = TrialConfig(kind="deep", model="paper-vit", dataset="cifar100", P=100, norms="both")
    assert TrialConfig(**json.loads(json.dumps(c.model_dump()))) == c
    for bad in (dict(norms="eq7"), dict(precision="fp16"), dict(model="paper-mlp")):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            TrialConfig(kind="deep", dataset="mnist", P=100, **bad)
    with pytest.raises(ValidationError, match="paper-resnet.*digits"):
        TrialConfig(kind="deep", model="paper-resnet", dataset="digits", P=100)


def test_run_refuses_a_paper_model_on_digits_before_compute(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers.run",
            "--set",
            "model=paper-cnn",
            "--set",
            "P=10",
            "--out",
            str(tmp_path / "c.csv"),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert r.returncode == 2 and "paper-cnn" in r.stderr and "digits" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "c.csv").exists()
