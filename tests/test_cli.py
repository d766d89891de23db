"""One command-line family (common/cli.py): the same flags mean the same in all four commands,
one --set parser for the sweep and trainers.run, and presets found by name or path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import cli
from orchestrator import sweep as S
from orchestrator.config import ConfigError, load_config, load_raw, preset_names

ROOT = Path(__file__).resolve().parents[1]
ENV = os.environ | {"PYTHONPATH": str(ROOT)}


# --- --set: one parser ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "parts", "value"),
    [
        ("P=500", ["P"], 500),
        ("lr=0.001", ["lr"], 0.001),
        ("nested_subsets=true", ["nested_subsets"], True),
        ("seeds=[0, 1]", ["seeds"], [0, 1]),
        ("resources.gpu=0.25", ["resources", "gpu"], 0.25),
        (" name = tiny", ["name"], "tiny"),
        ("data_root=", ["data_root"], None),
        ("mlflow.tracking_uri=http://127.0.0.1:5000", ["mlflow", "tracking_uri"],
         "http://127.0.0.1:5000"),
    ],
)  # fmt: skip
def test_set_values_are_yaml_under_dotted_keys(item, parts, value):
    assert cli.parse_set(item) == (parts, value)


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("P", "--set: expected KEY=VALUE"),
        ("=3", "--set: expected KEY=VALUE"),
        ("seeds=[0, 1", "--set seeds: value is not valid YAML"),
        ("trial.lr={a: 1", "--set trial.lr: value is not valid YAML"),
        ("a..b=1", "--set a..b: empty part"),
    ],
)
def test_a_bad_set_item_is_an_error_naming_its_key_never_a_string(item, needle):
    with pytest.raises(cli.SetError, match="^" + needle.replace("[", r"\[").replace(".", r"\.")):
        cli.parse_set(item)


def test_sets_nest_index_lists_and_refuse_to_descend_into_a_value():
    data = {"blocks": [{"P": [10]}], "trial": {"lr": 0.1}, "name": "x"}
    cli.apply_sets(data, ["blocks.0.P=[1, 2]", "trial.epochs=5", "tune.storage_path=rr"])
    assert data == {
        "blocks": [{"P": [1, 2]}],
        "trial": {"lr": 0.1, "epochs": 5},
        "name": "x",
        "tune": {"storage_path": "rr"},
    }
    with pytest.raises(cli.SetError, match="no list index '3'"):
        cli.apply_sets(data, ["blocks.3.P=1"])
    with pytest.raises(cli.SetError, match="name is not a mapping"):
        cli.apply_sets(data, ["name.first=1"])


def test_trainers_run_uses_the_same_parser_a_bad_value_exits_2(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "trainers.run", "--set", "P=[10", "--out", str(tmp_path / "c.csv")],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: --set P: value is not valid YAML: '[10' (quote it)"
    )


def test_the_sweep_takes_the_same_set_and_names_the_key(capsys):
    assert S.main(["--dry-run", "--set", "seeds=[0,"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --set seeds: value is not valid YAML: '[0,' (quote it)"
    )


# --- presets ---------------------------------------------------------------------------------


def test_presets_by_name_a_file_path_wins_and_unknown_names_list_the_presets(tmp_path, monkeypatch):
    names = preset_names()
    assert {"perceptron", "perceptron-mse", "digits-cnn", "paper-table1"} <= set(names)
    assert load_raw(None) == load_raw("perceptron")  # the default preset
    (tmp_path / "perceptron").write_text("name: mine\nblocks: [{P: [10]}]\n")
    assert load_raw(str(tmp_path / "perceptron"))["name"] == "mine"  # a file, not the preset
    (tmp_path / "digits-cnn").mkdir()  # a folder of that name (a report?) is no config
    monkeypatch.chdir(tmp_path)
    assert load_raw("digits-cnn")["name"] == "digits-cnn"
    with pytest.raises(ConfigError, match="is a directory"):
        load_raw(str(tmp_path / "digits-cnn"))
    with pytest.raises(ConfigError) as e:
        load_raw("percepton")
    assert str(e.value) == (
        f"config: 'percepton' is neither a file nor a preset; presets: {', '.join(names)}"
    )
    with pytest.raises(ConfigError, match="file not found: nope/s.yaml"):
        load_raw("nope/s.yaml")


# --- the shared flags ------------------------------------------------------------------------


def test_out_and_tracking_uri_of_the_sweep_are_its_storage_path_and_store(tmp_path, capsys):
    argv = ["--dry-run", "--out", str(tmp_path / "rr"), "--tracking-uri", "sqlite:///x.db"]
    assert S.main(argv) == 0
    assert f"MLflow store: sqlite:///x.db; Tune state: {tmp_path}/rr/perceptron" in (
        capsys.readouterr().out
    )
    # the flag wins over --set; without either, the preset's value stays
    cfg = load_config(None, ["mlflow.tracking_uri=a"], {"mlflow.tracking_uri": "b"})
    assert cfg.mlflow.tracking_uri == "b"
    assert load_config(None, [], {"mlflow.tracking_uri": None}).mlflow.tracking_uri is None


@pytest.mark.parametrize(
    ("argv", "level"),
    [([], 0), (["-v"], 1), (["-vv"], 2), (["-v", "2"], 2), (["--quiet"], cli.QUIET)],
)
def test_verbosity_levels_are_shared(argv, level):
    from analysis.report import parse_args
    from theory.solve import _parser
    from trainers.run import build_parser

    assert cli.verbosity(S.build_parser().parse_args(argv)) == level
    assert cli.verbosity(build_parser().parse_args(argv)) == level
    assert cli.verbosity(_parser().parse_args(["--alphas", "1", *argv])) == level
    assert cli.verbosity(parse_args(argv)) == level


def test_quiet_and_verbose_exclude_each_other_and_the_reports_old_flag_still_works():
    from analysis.report import parse_args

    with pytest.raises(SystemExit) as e:
        S.build_parser().parse_args(["--quiet", "-v"])
    assert e.value.code == 2
    assert cli.verbosity(parse_args(["--no-progress"])) == cli.QUIET


@pytest.mark.parametrize("module", list(cli.COMMANDS))
def test_every_help_lists_the_family_and_reads_without_internal_references(module):
    r = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=ENV
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: python -m {module} ")
    assert cli.COMMANDS[module] in r.stdout  # the console script is named
    for flag in ("--out", "--quiet", "--verbose", "--version"):
        assert flag in r.stdout, (module, flag)
    assert ("--tracking-uri" in r.stdout) == (module in ("orchestrator.sweep", "analysis.report"))
    assert ("--set" in r.stdout) == (module in ("orchestrator.sweep", "trainers.run"))
    for internal in ("issue ", "item ", "TODO", "--no-progress"):
        assert internal not in r.stdout, (module, internal)
