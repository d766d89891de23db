"""The main job end to end (issue 6): sweep -> MLflow -> report, as a user runs it.

Both commands run as subprocesses in a fresh working directory, so the default MLflow store
(sqlite:///mlflow.db in the cwd), the Tune storage and the report land where a user would find
them. The sweep is the default `perceptron` preset made smaller with --set; its theory grid is
the preset's large-alpha one (alpha = 1e3..1e5), where the asymptotic laws gamma1 = 1/2,
gamma2 = 1 hold.
"""

import json
import subprocess
import sys

import pytest

from common import names

SMALL = [
    "--set", "name=e2e",
    "--set", "seeds=[0,1]",
    "--set", "blocks=[{kind: perceptron, alpha: [2, 4, 8], N: [128], trial: {lambda_stop: 20}}]",
    "--set", "theory.alphas={start: 1000, stop: 100000, num: 5, log: true}",
    "--set", "trial.epochs=2000",
]  # fmt: skip


def _run(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("e2e")
    sweep = _run(["orchestrator.sweep", *SMALL], cwd)  # the default (quiet) terminal
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    (cwd / "sweep-terminal.txt").write_text(sweep.stderr + sweep.stdout)
    report = _run(["analysis.report", "--n-boot", "200", "--out", "report"], cwd)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    return cwd


def test_default_terminal_is_a_few_lines_of_our_own(finished_sweep):
    """Issue 12: a progress line and the project's messages; nothing from Ray, Tune, MLflow
    or Python warnings (which printed 1,581 lines for the default job before)."""
    lines = (finished_sweep / "sweep-terminal.txt").read_text().splitlines()
    assert len(lines) < 60, "\n".join(lines)
    assert any(line.startswith("[sweep e2e] 6/6 done") for line in lines), lines
    for noise in ("Warning", "INFO", "TensorBoard", "Trial status", "╭", "Traceback"):
        assert not [line for line in lines if noise in line], noise
    assert lines[-1] == "report: python -m analysis.report --experiment e2e"


def test_report_recovers_the_perceptron_exponents(finished_sweep):
    out = finished_sweep / "report"
    for f in ("report.html", "report.md", "results.json"):
        assert (out / f).stat().st_size > 0, f
    assert list(out.glob("*.png")), "no figures written"
    results = json.loads((out / "results.json").read_text())
    groups = {g["group"]: g for g in results["groups"]}
    theory = [g for name, g in groups.items() if "theory" in name]
    assert len(theory) == 1, list(groups)
    g = theory[0]
    assert g["gamma1"]["value"] == pytest.approx(0.5, rel=0.05)
    assert g["gamma2"]["value"] == pytest.approx(1.0, rel=0.05)
    # the training runs are a group of their own, with one entry per alpha
    trained = [g for name, g in groups.items() if "theory" not in name]
    assert len(trained) == 1 and trained[0]["n_P"] == 3


def test_mlflow_holds_one_run_per_trial_and_every_epoch_once(finished_sweep):
    from mlflow.tracking import MlflowClient

    from orchestrator.config import expand_trials, load_config, trial_key
    from trainers import TrialConfig, make_trainer

    client = MlflowClient(tracking_uri=f"sqlite:///{finished_sweep / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    trial_runs = [r for r in runs if r.data.tags.get(names.TAG_KIND) == names.KIND_PERCEPTRON]
    trials = expand_trials(load_config(None, [s for s in SMALL if s != "--set"]))
    assert len(trial_runs) == len(trials) == 6
    assert len({r.data.tags[names.TAG_TRIAL_ID] for r in trial_runs}) == len(trials)
    assert sum(r.data.tags.get(names.TAG_KIND) == names.KIND_THEORY for r in runs) == 1

    by_id = {trial_key(p): p for p in trials}
    for r in trial_runs:
        steps = [m.step for m in client.get_metric_history(r.info.run_id, names.TEST_ERROR)]
        local: list[dict] = []  # the same trial run here: its records' epochs
        make_trainer(TrialConfig(**by_id[r.data.tags[names.TAG_TRIAL_ID]])).run(local.append)
        expected = [int(rec[names.EPOCH]) for rec in local]
        assert sorted(steps) == expected, r.data.tags[names.TAG_TRIAL_ID]


def test_rerunning_the_finished_sweep_trains_nothing(finished_sweep):
    again = _run(["orchestrator.sweep", "-v", "0", *SMALL], finished_sweep)
    assert again.returncode == 0, again.stderr[-2000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{finished_sweep / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    kinds = [r.data.tags.get(names.TAG_KIND) for r in client.search_runs([exp.experiment_id])]
    assert kinds.count(names.KIND_PERCEPTRON) == 6
    # the sweep records itself for the report and ends with the exact report command
    from common.last_sweep import read_last_sweep

    rec = read_last_sweep(finished_sweep)
    assert (rec.name, rec.tracking_uri) == ("e2e", names.DEFAULT_TRACKING_URI)
    last = again.stdout.strip().splitlines()[-1]
    assert last == "report: python -m analysis.report --experiment e2e"


def test_report_before_any_sweep_says_what_to_run(tmp_path):
    r = _run(["analysis.report"], tmp_path)
    assert r.returncode == 2
    assert "orchestrator.sweep" in (r.stdout + r.stderr)
