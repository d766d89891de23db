"""analysis.io against a real MLflow sqlite store written with MLflow's own client (no mocks).

`make_store` is shared with tests/test_report.py: it writes a small sweep the way the
orchestrator does (DESIGN.md, "Data contract"): one run per trial with the trial tags and
params, per-epoch metrics with step=epoch, a curves.parquet artifact, and a kind=theory run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import io
from common import names as N

GAMMA1, GAMMA2, K2 = 0.5, 1.0, 2.0  # the fixed-norm perceptron's exponents (paper, Sec. 2)


def master(x: np.ndarray, gamma1: float = GAMMA1, b: float = 1.0) -> np.ndarray:
    """A smooth master curve Phi(x) (Eq. 4): ~ x^-gamma1 for x << 1, minimum 1 at x = 1."""
    return (x ** (-gamma1) + gamma1 / b * x**b) / (1.0 + gamma1 / b)


def curve(P: float, seed: int, n: int, noise: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """lambda(t) and eps(t) for one trial, obeying Eq. 2-4 with seed noise."""
    rng = np.random.default_rng(seed * 1000 + int(P * 10))
    lam_opt = K2 * P**GAMMA2
    lam = lam_opt * np.geomspace(0.02, 4.0, n)
    eps_opt = 0.5 * lam_opt**-GAMMA1
    eps = eps_opt * master(lam / lam_opt) * np.exp(noise * rng.standard_normal(n))
    return lam, np.minimum(eps, 0.5)


def hebb(alpha: np.ndarray) -> np.ndarray:
    return np.arccos(np.sqrt(2 * alpha / (2 * alpha + np.pi))) / np.pi


def make_store(
    root: Path,
    name: str = "sweep-test",
    kind: str = N.KIND_PERCEPTRON,
    Ps: tuple = (4.0, 8.0, 16.0, 32.0),
    seeds: int = 3,
    epochs: int = 40,
    theory: bool = True,
    history: bool = True,
) -> str:
    """Write a small sweep into root/mlflow.db (artifacts under root/mlruns); return the URI.

    history=False skips the per-epoch metrics (the analysis reads curves.parquet only; the
    sqlite writes are the slow part of building the store).
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(name, str(root / "mlruns"))
    norm = N.NORM_PERCEPTRON if kind == N.KIND_PERCEPTRON else N.NORM_SPECTRAL_COMPLEXITY
    files = root / "files"
    files.mkdir(exist_ok=True)
    for P in Ps:
        for seed in range(seeds):
            tags = {
                N.TAG_SWEEP: name,
                N.TAG_TRIAL_ID: f"{name}-{P}-{seed}",
                N.TAG_KIND: kind,
                N.TAG_MODEL: "perceptron" if kind == N.KIND_PERCEPTRON else "cnn",
                N.TAG_DATASET: "teacher" if kind == N.KIND_PERCEPTRON else "digits",
                N.TAG_P: str(int(P * 100)),
                N.TAG_SEED: str(seed),
                N.TAG_OPTIMIZER: "gd",
                N.TAG_WEIGHT_DECAY: "0.0",
            }
            run = client.create_run(exp_id, tags=tags)
            rid = run.info.run_id
            params = {"alpha": str(P), "N": "100"} if kind == N.KIND_PERCEPTRON else {"P": str(P)}
            for k, v in params.items():
                client.log_param(rid, k, v)
            lam, eps = curve(P, seed, epochs)
            epoch = np.arange(1, epochs + 1)
            metrics = [
                Metric(key, float(v), 0, int(t))
                for key, values in ((N.TEST_ERROR, eps), (norm, lam))
                for v, t in zip(values, epoch, strict=True)
            ]
            client.log_batch(rid, metrics=metrics if history else metrics[-1:])
            df = pd.DataFrame({N.EPOCH: epoch, N.TEST_ERROR: eps, norm: lam, N.TRAIN_ERROR: 0.0})
            path = files / N.CURVES_ARTIFACT
            df.to_parquet(path)
            client.log_artifact(rid, str(path))
            client.set_terminated(rid)
    if theory and kind == N.KIND_PERCEPTRON:
        _log_theory(client, exp_id, name, files)
    return uri


def _log_theory(client, exp_id: str, name: str, files: Path) -> None:
    """A theory table in the theory package's format, from the same Eq. 2-4 laws."""
    rows = []
    alphas = np.array([8.0, 16.0, 32.0, 64.0, 128.0])
    for alpha in alphas:
        lam, eps = curve(alpha, 0, 60, noise=0.0)
        rows.append(
            pd.DataFrame(
                {
                    "alpha": alpha,
                    "lambda": lam,
                    "R": np.cos(np.pi * eps),
                    "x": 0.1,
                    "epsilon": eps,
                    "converged": True,
                    "residual": 1e-12,
                    "eps_hebb": hebb(alpha),
                    "eps_bayes": 0.442 / alpha,
                    "eps_maxstab": 0.5 / alpha,
                }
            )
        )
    theory = pd.concat(rows, ignore_index=True)
    theory.loc[0, "converged"] = False  # a non-converged point must be dropped
    theory.loc[0, "epsilon"] = 9.0
    opt = pd.DataFrame(
        {
            "alpha": alphas,
            "lambda_opt": K2 * alphas,
            "eps_opt": 0.5 * (K2 * alphas) ** -GAMMA1,
            "eps_hebb": hebb(alphas),
            "eps_bayes": 0.442 / alphas,
            "eps_maxstab": 0.5 / alphas,
        }
    )
    run = client.create_run(exp_id, tags={N.TAG_SWEEP: name, N.TAG_KIND: N.KIND_THEORY})
    for artifact, df in ((N.THEORY_ARTIFACT, theory), (N.THEORY_OPT_ARTIFACT, opt)):
        df.to_parquet(files / artifact)
        client.log_artifact(run.info.run_id, str(files / artifact))
    client.set_terminated(run.info.run_id)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("store")
    return root, make_store(root)


def test_load_mlflow_builds_the_tidy_table(store):
    root, uri = store
    sweep = io.load_mlflow("sweep-test", tracking_uri=uri)
    c = sweep.curves
    assert list(c.columns) == list(N.CURVE_COLUMNS)
    assert sweep.kind == N.KIND_PERCEPTRON
    groups = set(c["group"])
    assert groups == {"perceptron|teacher|gd|wd=0.0|norm", io.THEORY_GROUP}
    assert sweep.group_kinds == {
        "perceptron|teacher|gd|wd=0.0|norm": N.KIND_PERCEPTRON,
        io.THEORY_GROUP: N.KIND_THEORY,
    }
    train = c[c["group"] != io.THEORY_GROUP]
    # P is alpha for perceptrons (params alpha), not the P tag (alpha * N)
    assert sorted(train["P"].unique()) == [4.0, 8.0, 16.0, 32.0]
    assert len(train) == 4 * 3 * 40
    lam, eps = curve(8.0, 2, 40)
    one = train[(train["P"] == 8.0) & (train["seed"] == 2)]
    np.testing.assert_allclose(one["lambda"], lam)
    np.testing.assert_allclose(one["test_error"], eps)
    assert one["epoch"].tolist() == list(range(1, 41))
    th = c[c["group"] == io.THEORY_GROUP]
    assert len(th) == 5 * 60 - 1  # the one non-converged point is dropped
    assert th["test_error"].max() < 1.0
    assert sweep.theory_opt is not None and len(sweep.theory_opt) == 5
    assert sweep.source["trial_runs"] == 12 and sweep.source["runs_without_curves"] == 0


def test_latest_sweep_is_the_default(store, tmp_path):
    root, uri = store
    make_store(root, name="sweep-newer", kind=N.KIND_DEEP, Ps=(100.0, 200.0), seeds=2, epochs=5)
    from mlflow import MlflowClient

    MlflowClient(uri).create_experiment("empty-newest")  # no trials: not a sweep
    sweep = io.load_mlflow(None, tracking_uri=uri)
    assert sweep.name == "sweep-newer"
    assert set(sweep.curves["group"]) == {"cnn|digits|gd|wd=0.0|norm/spectral_complexity"}
    assert sweep.kind == N.KIND_DEEP


def test_bad_mlflow_input_is_an_input_error(store, tmp_path):
    root, uri = store
    with pytest.raises(io.InputError, match="run `python -m orchestrator.sweep` first"):
        io.load_mlflow(None, tracking_uri=f"sqlite:///{tmp_path / 'nothing.db'}")
    assert not (tmp_path / "nothing.db").exists()  # refusing must not create a store
    with pytest.raises(io.InputError, match="unknown experiment 'nope'.*sweep-test"):
        io.load_mlflow("nope", tracking_uri=uri)
    with pytest.raises(io.InputError, match="norm/l1.*--norm"):
        io.load_mlflow("sweep-test", tracking_uri=uri, norm=N.NORM_L1)


def test_store_without_sweeps_says_what_to_run(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # creates the empty store, as `mlflow ui` would
    with pytest.raises(io.InputError, match="no sweep in .* run `python -m orchestrator.sweep`"):
        io.load_mlflow(None, tracking_uri=uri)


def test_load_curves_file(tmp_path):
    lam, eps = curve(10.0, 0, 20)
    df = pd.DataFrame({"P": 10.0, "seed": 0, "lambda": lam, "test_error": eps})
    df.to_csv(tmp_path / "c.csv", index=False)
    sweep = io.load_curves_file(tmp_path / "c.csv")
    assert set(sweep.curves["group"]) == {"c"}  # one group, named after the file
    assert sweep.curves["epoch"].tolist() == list(range(20))
    df.assign(group="g").to_parquet(tmp_path / "c.parquet")
    assert set(io.load_curves_file(tmp_path / "c.parquet").curves["group"]) == {"g"}


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"P": [1.0], "seed": [0], "lambda": [1.0]}), "lacks column.*test_error"),
        (
            pd.DataFrame({"P": [1.0], "seed": [0], "lambda": [np.nan], "test_error": [0.1]}),
            "no rows",
        ),
        (
            pd.DataFrame({"P": ["x"], "seed": [0], "lambda": [1.0], "test_error": [0.1]}),
            "non-numeric",
        ),
    ],
)
def test_bad_curves_file(tmp_path, frame, message):
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(io.InputError, match=message):
        io.load_curves_file(tmp_path / "bad.csv")


def test_missing_or_wrong_file(tmp_path):
    with pytest.raises(io.InputError, match="not found"):
        io.load_curves_file(tmp_path / "none.csv")
    (tmp_path / "x.txt").write_text("P\n1\n")
    with pytest.raises(io.InputError, match=".csv or .parquet"):
        io.load_curves_file(tmp_path / "x.txt")


def test_local_artifact_paths_are_read_directly():
    assert io.local_path("/abs/mlruns/1/r/artifacts") == Path("/abs/mlruns/1/r/artifacts")
    assert io.local_path("file:///abs/ml%20runs/a") == Path("/abs/ml runs/a")
    # anything else goes through MLflow's download (served or remote artifact stores)
    assert io.local_path("mlflow-artifacts:/1/r/artifacts") is None
    assert io.local_path("s3://bucket/1/r/artifacts") is None


def test_noisy_label_trials_form_their_own_groups():
    from analysis.io import group_name

    tags = {N.TAG_MODEL: "cnn", N.TAG_DATASET: "digits", N.TAG_OPTIMIZER: "adam"}
    tags[N.TAG_WEIGHT_DECAY] = "0.0"
    clean = group_name(tags, "spectral_complexity")
    assert clean == "cnn|digits|adam|wd=0.0|spectral_complexity"
    assert group_name(tags, "spectral_complexity", {"label_noise": "0.0"}) == clean  # MLflow str
    noisy = {group_name(tags, "spectral_complexity", {"label_noise": v}) for v in ("0.3", "0.1")}
    assert len(noisy) == 2 and clean not in noisy
    assert "label_noise=0.3" in group_name(tags, "spectral_complexity", {"label_noise": "0.3"})


# --- issue 12, items 4 and 5: which store, which sweep --------------------------------------


def test_the_store_follows_the_one_rule(store, monkeypatch):
    """No flag: $MLFLOW_TRACKING_URI (common.names.resolve_tracking_uri), not the cwd default."""
    root, uri = store
    assert not hasattr(io, "resolve_tracking_uri")  # one home for the rule: common.names
    monkeypatch.setenv(N.TRACKING_URI_ENV, uri)
    monkeypatch.setattr(io, "last_sweep", lambda cwd=None: None)
    sweep = io.load_mlflow("sweep-test")
    assert sweep.tracking_uri == uri and sweep.source["tracking_uri"] == uri


class _Record:  # the fields of common.last_sweep.LastSweep (issue 12, written by the sweep)
    def __init__(self, name: str, experiment: str, tracking_uri: str):
        self.name, self.experiment, self.tracking_uri = name, experiment, tracking_uri
        self.finished_at = "2026-12-01T17:00:00+00:00"


def test_the_last_sweep_of_this_directory_beats_the_latest_experiment(store, monkeypatch, capsys):
    root, uri = store
    make_store(root, name="sweep-later", kind=N.KIND_DEEP, Ps=(100.0, 200.0), seeds=2, epochs=5)
    record = _Record("perceptron-run", "sweep-test", uri)  # older than sweep-later
    monkeypatch.setattr(io, "last_sweep", lambda cwd=None: record)
    sweep = io.load_mlflow(None, tracking_uri=uri, progress=True)
    assert sweep.name == "sweep-test"
    assert "ran last" in sweep.source["chosen"] and "perceptron-run" in sweep.source["chosen"]
    err = capsys.readouterr().err
    assert f"reading MLflow store {uri}" in err and "'sweep-test'" in err
    # --experiment still wins over the record
    assert io.load_mlflow("sweep-later", tracking_uri=uri).name == "sweep-later"


def test_a_record_of_another_store_is_named_not_followed(store, monkeypatch):
    root, uri = store
    make_store(root, name="sweep-later", kind=N.KIND_DEEP, Ps=(100.0, 200.0), seeds=2, epochs=5)
    elsewhere = "sqlite:////somewhere/else.db"
    monkeypatch.setattr(io, "last_sweep", lambda cwd=None: _Record("x", "sweep-test", elsewhere))
    sweep = io.load_mlflow(None, tracking_uri=uri)
    assert sweep.name != "sweep-test"  # the latest experiment in the store read
    assert f"--tracking-uri {elsewhere}" in sweep.source["chosen"]


def test_without_the_record_module_the_latest_experiment_decides(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "common.last_sweep", None)  # import raises ImportError
    assert io.last_sweep() is None
    name, why = io.choose_experiment(None, "sqlite:///mlflow.db")
    assert name is None and "latest" in why


def test_an_unreadable_record_is_an_input_error(monkeypatch):
    """common.last_sweep raises a ValueError (LastSweepError) for a broken record file."""
    import sys
    import types

    def broken(cwd=None):
        raise ValueError(".scaling-sweeps/last-sweep.json: not a sweep record (JSONDecodeError)")

    module = types.SimpleNamespace(read_last_sweep=broken)
    monkeypatch.setitem(sys.modules, "common.last_sweep", module)
    with pytest.raises(io.InputError, match="not a sweep record.*--experiment"):
        io.choose_experiment(None, "sqlite:///mlflow.db")
