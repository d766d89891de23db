"""Single-node runs through Tune and the MLflow callback (the shared local Ray session)."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from test_orchestrator_fakes import make_fake_trial, max_overlap, mlflow_state, read_log

from common import names as N
from orchestrator.config import parse_config
from orchestrator.sweep import run_sweep
from trainers import TrialConfig, logged_epochs, make_trainer


def _cfg(tmp_path, **over):
    d = {
        "name": "t",
        "seeds": [0, 1],
        "blocks": [{"kind": "perceptron", "alpha": [1, 3], "N": [24]}],
        "trial": {"epochs": 60, "log_schedule": 8, "device": "cpu"},
        "theory": {"enabled": False},
        "tune": {"storage_path": str(tmp_path / "ray"), "max_failures": 2},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"},
    }
    d.update(over)
    return parse_config(d)


def test_real_perceptron_sweep_logs_contract_and_rerun_trains_nothing(ray_session, tmp_path):
    cfg = _cfg(tmp_path)
    uri = cfg.mlflow.tracking_uri
    assert run_sweep(cfg, verbose=0) == {"trials": 4, "finished": 4, "errored": 0}
    state = mlflow_state(uri, "t")
    assert len(state) == 4 and all(s["runs"] == 1 for s in state.values())
    for s in state.values():
        assert s["status"] == "FINISHED" and N.CURVES_ARTIFACT in s["artifacts"]
        params = s["params"]
        alpha, n = float(params["alpha"]), int(params["N"])
        trial = TrialConfig(kind="perceptron", alpha=alpha, N=n, epochs=60, log_schedule=8)
        local: list[dict] = []  # the same trial run here: its records' epochs
        make_trainer(trial.model_copy(update={"seed": int(params["seed"])})).run(local.append)
        expected = [int(r[N.EPOCH]) for r in local]
        assert set(logged_epochs(trial)) & set(expected)  # the log schedule is in there
        assert s["steps"] == expected  # every logged epoch exactly once
        assert {s["tags"][t] for t in (N.TAG_KIND, N.TAG_SWEEP)} == {"perceptron", "t"}
        assert float(params["alpha"]) in (1.0, 3.0) and params["N"] == "24"
    # the curve artifact holds the whole curve with the record's keys
    one = next(iter(state.values()))
    path = MlflowClient(uri).download_artifacts(one["run_id"], N.CURVES_ARTIFACT, str(tmp_path))
    curve = pd.read_parquet(path)
    assert list(curve[N.EPOCH]) == one["steps"]
    assert {N.TEST_ERROR, N.NORM_PERCEPTRON, N.OVERLAP, N.TRAIN_LOSS} <= set(curve.columns)

    # One name per trial, from its parameters: MLflow run name = Tune's trial directory;
    # the runs are children of the sweep's parent run, in an experiment typed as training.
    from orchestrator.config import expand_trials, trial_names

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("t")
    assert exp.tags[N.TAG_EXPERIMENT_KIND] == N.EXPERIMENT_KIND_TRAINING
    names = trial_names(expand_trials(cfg))
    assert sorted(names.values()) == [f"perceptron-a{a}-N24-s{s}" for a in (1, 3) for s in (0, 1)]
    parents = client.search_runs([exp.experiment_id], f"tags.{N.TAG_KIND} = '{N.KIND_SWEEP}'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert "sweep.yaml" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert parent.data.params["version.mlflow"] and parent.data.tags[N.TAG_SOURCE_NAME]
    trial_dirs = {p.name for p in (tmp_path / "ray" / "t").iterdir() if p.is_dir()}
    for key, s in state.items():
        run = client.get_run(s["run_id"])
        assert run.info.run_name == names[key] and names[key] in trial_dirs
        assert s["tags"][N.TAG_PARENT_RUN] == parent.info.run_id
        assert "vit_depth" not in s["params"] and "batch_size" not in s["params"]

    # Running the finished sweep again trains nothing and writes no metric.
    assert run_sweep(cfg, verbose=0)["finished"] == 4
    again = mlflow_state(uri, "t")
    assert {k: v["stamps"] for k, v in again.items()} == {k: v["stamps"] for k, v in state.items()}


def test_retry_from_checkpoint_logs_each_epoch_once_and_caps_concurrency(ray_session, tmp_path):
    log = str(tmp_path / "fake.jsonl")
    cfg = _cfg(
        tmp_path,
        blocks=[{"kind": "perceptron", "alpha": [1], "N": [8]}],
        seeds=[0, 1],
        trial={"epochs": 6, "device": "cpu"},
        resources={"max_concurrent_trials": 1},
    )
    out = run_sweep(cfg, trainable=make_fake_trial(log, sleep=0.02, crash_epoch=4), verbose=0)
    assert out["finished"] == 2
    starts = [e["from_epoch"] for e in read_log(log) if e["event"] == "start"]
    assert sorted(starts) == [0, 0, 3, 3]  # each retried from its epoch-3 checkpoint
    assert max_overlap(read_log(log)) == 1  # max_concurrent_trials=1 (2 CPUs would allow 2)
    for s in mlflow_state(cfg.mlflow.tracking_uri, "t").values():
        assert s["runs"] == 1 and s["steps"] == [1, 2, 3, 4, 5, 6] and s["status"] == "FINISHED"


def test_theory_run_is_logged_once(ray_session, tmp_path):
    theory = pytest.importorskip("theory")
    if not hasattr(theory, "solve_grid"):
        pytest.skip("theory.solve_grid is not in the tree yet")
    from orchestrator.theory_run import log_theory_run

    cfg = _cfg(tmp_path, theory={"alphas": [2.0, 4.0], "lambdas": [0.5, 1.0, 2.0]})
    uri = cfg.mlflow.tracking_uri
    rid = log_theory_run(cfg, uri, "t")
    assert log_theory_run(cfg, uri, "t") == rid  # reused, not solved again
    s = mlflow_state(uri, "t")["theory"]
    assert s["runs"] == 1 and s["tags"][N.TAG_KIND] == N.KIND_THEORY
    assert {N.THEORY_ARTIFACT, N.THEORY_OPT_ARTIFACT} <= set(s["artifacts"])
    # the artifacts sit beside the store's file, not in the working directory
    artifacts = MlflowClient(uri).get_run(rid).info.artifact_uri
    assert artifacts.startswith(str(tmp_path.resolve())), artifacts


def test_artifact_location_is_beside_a_sqlite_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = str(tmp_path.resolve())
    assert N.artifact_location("sqlite:///mlflow.db", "digits cnn") == f"{here}/mlruns/digits_cnn"
    db = tmp_path / "elsewhere" / "store.db"
    assert N.artifact_location(f"sqlite:///{db}", "p") == f"{db.parent.resolve()}/mlruns/p"
    assert N.artifact_location("http://mlflow:5000", "p") is None  # the server decides
    assert N.artifact_location("sqlite:///:memory:", "p") is None


def test_perceptron_sweep_without_lambda_stop_finishes_with_stated_reasons(ray_session, tmp_path):
    """The max-stability limit ends a long run cleanly: every trial FINISHED, the reason on
    its curve's last row and as a tag of its run (trainers/status.py)."""
    cfg = _cfg(
        tmp_path,
        name="nostop",
        blocks=[{"kind": "perceptron", "alpha": [1, 2], "N": [128]}],
        trial={"epochs": 3000, "device": "cpu"},
    )
    uri = cfg.mlflow.tracking_uri
    assert run_sweep(cfg, verbose=0) == {"trials": 4, "finished": 4, "errored": 0}
    client = MlflowClient(uri)
    for s in mlflow_state(uri, "nostop").values():
        assert s["status"] == "FINISHED"
        path = client.download_artifacts(s["run_id"], N.CURVES_ARTIFACT, str(tmp_path))
        curve = pd.read_parquet(path)
        reason = curve[N.STOP_REASON].iloc[-1]
        assert curve[N.STOP_REASON].iloc[:-1].isna().all()
        assert s["tags"][N.STOP_REASON] == reason
        assert reason.startswith(("float_resolution: ", "budget: ")), reason
        assert s["steps"] == [int(e) for e in curve[N.EPOCH]]
