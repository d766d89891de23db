"""Bad input to `python -m analysis.report` (issues 11 and 14): one line, exit 2, before any
compute, and nothing written; bad values inside a fit become flags that name the P; an
interrupted report never replaces a complete one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.report import main
from analysis.synth import make_sweep

FAST = ["--n-boot", "20", "--quiet"]


def _sweep() -> pd.DataFrame:
    return make_sweep(P_list=[1e3, 2e3, 4e3, 8e3], seeds_per_P=2, n_points=30, seed=1)


def _write(tmp: Path, kind: str) -> Path:
    """The input file of one case of the table below."""
    df = _sweep()
    if kind == "empty.csv":
        (tmp / kind).write_text("")
    elif kind == "corrupt.parquet":
        (tmp / kind).write_bytes(b"PAR1 not really parquet")
    elif kind == "nan_seed.csv":
        df = df.astype({"seed": float})
        df.loc[3, "seed"] = np.nan
    elif kind == "fraction_seed.csv":
        df = df.astype({"seed": float})
        df.loc[3, "seed"] = 0.5
    elif kind == "lambda_nonpositive.csv":
        df["lambda"] = -df["lambda"]
        df.loc[:5, "lambda"] = 0.0
    elif kind == "inf_errors.csv":
        df["test_error"] = np.inf
    elif kind == "zero_errors.csv":
        df["test_error"] = 0.0
    elif kind == "text_lambda.csv":
        df = df.astype({"lambda": object})
        df.loc[7, "lambda"] = "n/a?"
    elif kind == "good.csv":
        pass
    if not (tmp / kind).exists():
        df.to_csv(tmp / kind, index=False)
    return tmp / kind


CASES = [
    # (input file, extra args, --out, expected words in the one error line)
    ("empty.csv", [], "o", "empty.csv: not a readable CSV file"),
    ("corrupt.parquet", [], "o", "corrupt.parquet: not a readable Parquet file"),
    ("nan_seed.csv", [], "o", "column seed needs whole numbers, has nan (group synthetic, P=1000"),
    ("fraction_seed.csv", [], "o", "column seed needs whole numbers, has 0.5"),
    ("lambda_nonpositive.csv", [], "o", "no rows with P, lambda and test_error > 0"),
    ("inf_errors.csv", [], "o", "no rows with finite P, lambda and test_error"),
    ("zero_errors.csv", [], "o", "no rows with P, lambda and test_error > 0"),
    ("text_lambda.csv", [], "o", "column lambda has non-numeric values, e.g. 'n/a?' (group"),
    ("good.csv", ["--window", "0.3"], "o", "--window must be LO,HI"),
    ("good.csv", ["--window", ","], "o", "--window needs at least one bound"),
    ("good.csv", ["--window", "0.3;0.5"], "o", "--window must be LO,HI"),
    ("good.csv", ["--window", "a,0.3"], "o", "--window bounds must be numbers or empty"),
    ("good.csv", ["--window", "0,0.3"], "o", "--window bounds must be positive and finite"),
    ("good.csv", ["--window", "0.3,inf"], "o", "--window bounds must be positive and finite"),
    ("good.csv", ["--window", "0.3,0.1"], "o", "--window needs 0 < LO < HI"),
    ("good.csv", ["--p-range2", "1,10"], "o", "apply to --paper-mode only"),
    ("good.csv", ["--paper-mode", "--p-range2", "10,1"], "o", "--p-range2 must be LO,HI"),
    ("good.csv", ["--paper-mode", "--grid-points", "1"], "o", "--grid-points must be >= 2"),
    ("good.csv", [], "/proc/nope/report", "--out /proc/nope/report is not writable"),
    ("good.csv", [], "a_file", "exists and is not a directory"),
]


@pytest.mark.parametrize("kind, args, out, message", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path, capsys, kind, args, out, message
):
    f = _write(tmp_path, kind)
    (tmp_path / "a_file").write_text("not a folder")
    target = Path(out) if out.startswith("/") else tmp_path / out
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["--curves", str(f), "--out", str(target), *FAST, *args]) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0], lines[0]
    assert "Traceback" not in cap.err + cap.out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no staging


def test_bad_values_inside_a_curve_are_flags_that_name_the_P(tmp_path):
    df = _sweep()
    df.loc[(df["P"] == 2000) & (df["seed"] == 0), "test_error"] = 0.0
    df.loc[df.index[df["P"] == 4000][:3], "lambda"] = -1.0
    df.loc[df.index[df["P"] == 8000][:2], "test_error"] = np.inf
    df.to_csv(tmp_path / "c.csv", index=False)
    assert main(["--curves", str(tmp_path / "c.csv"), "--out", str(tmp_path / "o"), *FAST]) == 0
    flags = json.loads((tmp_path / "o" / "results.json").read_text())["groups"][0]["flags"]
    assert "rows with lambda, test_error or P <= 0 dropped: 33 (P=2000, 4000)" in flags
    assert "NaN rows dropped: 2 (P=8000)" in flags


def test_a_group_with_no_usable_curve_is_reported_with_its_reason(tmp_path):
    df = _sweep()
    bad = df.assign(group="bad", test_error=np.nan)
    pd.concat([df.assign(group="good"), bad]).to_csv(tmp_path / "c.csv", index=False)
    assert main(["--curves", str(tmp_path / "c.csv"), "--out", str(tmp_path / "o"), *FAST]) == 0
    groups = json.loads((tmp_path / "o" / "results.json").read_text())["groups"]
    g = next(x for x in groups if x["group"] == "bad")
    assert g["gamma1"]["value"] is None and "no usable curves: nothing estimated" in g["flags"]
    md = (tmp_path / "o" / "report.md").read_text()
    assert "| Bad | n/a | n/a | n/a | n/a | n/a | n/a | - of 0 | - |" in md  # Table 2


def test_one_P_value_is_a_flag_not_a_number(tmp_path):
    df = _sweep()
    df[df["P"] == 1000].to_csv(tmp_path / "c.csv", index=False)
    for mode in ([], ["--paper-mode", "--window", ",0.3"]):
        out = tmp_path / f"o{len(mode)}"
        assert main(["--curves", str(tmp_path / "c.csv"), "--out", str(out), *FAST, *mode]) == 0
        g = json.loads((out / "results.json").read_text())["groups"][0]
        assert g["gamma2"]["value"] is None and g["gamma_meas"]["value"] is None
        assert any("gamma2" in f or "too few P values (1)" in f for f in g["flags"]), g["flags"]


def test_an_interrupted_report_never_replaces_a_complete_one(tmp_path, monkeypatch):
    f = _write(tmp_path, "good.csv")
    out = tmp_path / "report"
    assert main(["--curves", str(f), "--out", str(out), *FAST]) == 0
    complete = {p.name: p.read_bytes() for p in out.iterdir()}

    import analysis.figures

    def boom(*a, **k):
        raise KeyboardInterrupt  # Ctrl-C while the figures are drawn

    monkeypatch.setattr(analysis.figures, "fig_collapse", boom)
    with pytest.raises(KeyboardInterrupt):
        main(["--curves", str(f), "--out", str(out), *FAST, "--seed", "7"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.csv", "report"]  # no leftovers
    monkeypatch.undo()
    assert main(["--curves", str(f), "--out", str(out), *FAST, "--seed", "7"]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["choices"]["seed"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.csv", "report"]
