"""The sweep's record of itself (common/last_sweep.py) and the one tracking-URI rule."""

from __future__ import annotations

import json

import pytest

from common import names as N
from common.last_sweep import (
    LastSweepError,
    read_last_sweep,
    record_path,
    report_command,
    write_last_sweep,
)


def test_record_round_trips_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert read_last_sweep() is None  # this directory ran no sweep yet
    path = write_last_sweep("tiny", "tiny-exp", "sqlite:///x.db")
    assert path == tmp_path / ".scaling-sweeps" / "last-sweep.json"
    rec = read_last_sweep(tmp_path)
    assert (rec.name, rec.experiment, rec.tracking_uri) == ("tiny", "tiny-exp", "sqlite:///x.db")
    assert rec.finished_at.endswith("+00:00")
    write_last_sweep("perceptron", "perceptron", N.DEFAULT_TRACKING_URI)  # the later one wins
    assert read_last_sweep().name == "perceptron"
    assert read_last_sweep(tmp_path / "elsewhere") is None


@pytest.mark.parametrize("text", ["{not json", "[]", json.dumps({"name": "x"})])
def test_a_broken_record_is_an_error_not_a_guess(tmp_path, text):
    path = record_path(tmp_path)
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(LastSweepError, match="last-sweep.json"):
        read_last_sweep(tmp_path)


def test_report_command_names_the_store_only_when_not_the_default():
    assert report_command("e", N.DEFAULT_TRACKING_URI) == "python -m analysis.report --experiment e"
    assert report_command("my exp", "http://h:5000") == (
        "python -m analysis.report --experiment 'my exp' --tracking-uri http://h:5000"
    )


def test_sweep_follows_the_environment_store(tmp_path, monkeypatch, capsys):
    from orchestrator import sweep as S

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(N.TRACKING_URI_ENV, f"sqlite:///{tmp_path}/env.db")
    assert S.main(["--dry-run", "--set", "name=envtest"]) == 0
    assert f"MLflow store: sqlite:///{tmp_path}/env.db" in capsys.readouterr().out
    assert S.main(["--dry-run", "--set", "mlflow.tracking_uri=sqlite:///flag.db"]) == 0
    assert "MLflow store: sqlite:///flag.db" in capsys.readouterr().out  # config beats env
