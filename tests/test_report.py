"""`python -m analysis.report` end to end on a real MLflow sqlite store and on files."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_analysis_io import curve, make_store

from analysis import io
from analysis.report import main
from common import names as N

REPO = Path(__file__).resolve().parents[1]
FAST = ["--n-boot", "100", "--quiet"]
ESTIMATES = ("gamma1", "gamma2", "gamma_pred", "gamma_meas")


@pytest.fixture(scope="module")
def perceptron_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    uri = make_store(root, Ps=(4.0, 8.0, 16.0, 32.0, 64.0), seeds=3, epochs=50, history=False)
    out = root / "out"
    rc = main(["--experiment", "sweep-test", "--tracking-uri", uri, "--out", str(out), *FAST])
    return rc, out, uri


def test_report_writes_every_file(perceptron_report):
    rc, out, _ = perceptron_report
    assert rc == 0
    for name in ("report.html", "report.md", "results.json"):
        assert (out / name).stat().st_size > 0
    pngs = {p.name for p in out.glob("*.png")}
    for stem in ("fig1_trajectories", "fig2_relative", "fig8_local_slope"):
        assert f"{stem}.png" in pngs
    # four figures (Fig. 3, 4, 11, 12) for each of the two groups
    assert sum(p.endswith("_fig11_fits.png") for p in pngs) == 2
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)  # self-contained
    assert 'src="http' not in html and '.png"' not in html
    md = (out / "report.md").read_text()
    assert "Table 1" in md and "Table 2" in md and "gamma1 = 1/2" in md


def test_results_json_schema_and_numbers(perceptron_report):
    _, out, _ = perceptron_report
    doc = json.loads((out / "results.json").read_text())
    assert set(doc) >= {"groups", "config", "versions"}
    assert {"python", "numpy", "scipy", "pandas", "seaborn", "mlflow"} <= set(doc["versions"])
    names = [g["group"] for g in doc["groups"]]
    assert any("theory" in n for n in names) and "perceptron|teacher|gd|wd=0.0|norm" in names
    for g in doc["groups"]:
        assert g["n_P"] >= 3 and g["seeds_per_P"]
        for key in ESTIMATES:
            assert math.isfinite(g[key]["value"]), (g["group"], key)
            assert "ci" in g[key] and "se" in g[key]
        assert isinstance(g["collapse"], dict) and g["collapse"]
        lo, hi = g["choices"]["window"]
        assert 0 < lo < hi and "p_min" in g["choices"]
    train = doc["groups"][names.index("perceptron|teacher|gd|wd=0.0|norm")]
    lo, hi = train["gamma1"]["ci"]  # 4 seeds per P: a bootstrap interval exists
    assert lo <= train["gamma1"]["value"] <= hi
    # the synthetic curves obey gamma1 = 1/2, gamma2 = 1 (tests/test_analysis_io.py)
    theory = doc["groups"][names.index(io.THEORY_GROUP)]
    assert theory["gamma2"]["value"] == pytest.approx(1.0, rel=0.05)
    assert theory["gamma1"]["value"] == pytest.approx(0.5, rel=0.15)
    rows = {(c["group"], c["exponent"]) for c in doc["perceptron"]}
    assert (io.THEORY_GROUP, "gamma1") in rows and (io.THEORY_GROUP, "gamma2") in rows
    assert doc["config"]["source"]["experiment"] == "sweep-test"


def test_report_is_logged_as_a_report_run(perceptron_report):
    from mlflow import MlflowClient

    _, _, uri = perceptron_report
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sweep-test")
    runs = client.search_runs([exp.experiment_id], f"tags.{N.TAG_KIND} = '{N.KIND_REPORT}'")
    assert len(runs) == 1
    files = {f.path for f in client.list_artifacts(runs[0].info.run_id)}
    assert {"report.html", "report.md", "results.json"} <= files
    assert any(k.startswith("gamma1/") for k in runs[0].data.metrics)


def test_report_from_curves_file_default_out(tmp_path, monkeypatch):
    rows = []
    for P in (10.0, 20.0, 40.0, 80.0):
        for seed in range(3):
            lam, eps = curve(P, seed, 50)
            rows.append(pd.DataFrame({"P": P, "seed": seed, "lambda": lam, "test_error": eps}))
    pd.concat(rows).to_parquet(tmp_path / "my curves.parquet")
    monkeypatch.chdir(tmp_path)
    assert main(["--curves", "my curves.parquet", *FAST]) == 0
    doc = json.loads((tmp_path / "reports" / "my_curves" / "results.json").read_text())
    assert [g["group"] for g in doc["groups"]] == ["my curves"]
    assert doc["perceptron"] == [] and doc["config"]["source"]["type"] == "file"


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one clear line
    return err[0]


def test_before_any_sweep_says_what_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["--quiet"]) == 2
    assert "run `python -m orchestrator.sweep` first" in _error_line(capsys)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "reports").exists()


def test_unknown_experiment(perceptron_report, capsys):
    _, _, uri = perceptron_report
    assert main(["--experiment", "nope", "--tracking-uri", uri, *FAST]) == 2
    assert "unknown experiment 'nope'" in _error_line(capsys)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--window", "0.5"], "--window must be LO,HI"),
        (["--window", "1,0.1"], "0 < LO < HI"),
        (["--p-min", "-3"], "--p-min"),
        (["--n-boot", "-1"], "--n-boot"),
        (["--norm", N.NORM_L1], "--norm and --tracking-uri apply to MLflow input"),
    ],
)
def test_bad_options(tmp_path, capsys, args, message):
    f = tmp_path / "c.csv"
    pd.DataFrame({"P": [1.0], "seed": [0], "lambda": [1.0], "test_error": [0.1]}).to_csv(f)
    assert main(["--curves", str(f), "--out", str(tmp_path / "o"), *FAST, *args]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "o").exists()  # refused before any work


def test_missing_columns(tmp_path, capsys):
    f = tmp_path / "c.csv"
    pd.DataFrame({"P": [1.0], "seed": [0], "test_error": [0.1]}).to_csv(f, index=False)
    assert main(["--curves", str(f), *FAST]) == 2
    assert "lacks column(s) lambda" in _error_line(capsys)


def test_cli_exit_code_help_and_no_heavy_imports(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=REPO, capture_output=True, text=True)  # noqa: E731
    r = run("-m", "analysis.report", "--help")
    assert r.returncode == 0 and "--experiment" in r.stdout and "--window" in r.stdout
    # the real exit status of a refused run, then: the analysis imports neither torch nor Ray,
    # and MLflow only once a store is opened
    code = (
        "import sys; from analysis.report import main;"
        f"rc = main(['--tracking-uri', 'sqlite:///{tmp_path / 'x.db'}']);"
        "import analysis.figures, analysis.fit, analysis.io;"
        "bad = [m for m in ('torch', 'ray', 'mlflow') if m in sys.modules];"
        "print('heavy:', bad); sys.exit(rc)"
    )
    r = run("-c", code)
    assert r.returncode == 2 and "orchestrator.sweep" in r.stderr
    assert "heavy: []" in r.stdout


def test_nan_rows_do_not_crash(tmp_path):
    rows = []
    for P in (10.0, 20.0, 40.0):
        for seed in range(2):
            lam, eps = curve(P, seed, 30)
            eps[5] = np.nan
            rows.append(pd.DataFrame({"P": P, "seed": seed, "lambda": lam, "test_error": eps}))
    pd.concat(rows).to_csv(tmp_path / "nan.csv", index=False)
    assert main(["--curves", str(tmp_path / "nan.csv"), "--out", str(tmp_path / "o"), *FAST]) == 0
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["groups"][0]["n_P"] == 3
