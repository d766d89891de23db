"""The report reads at a glance (issue 12, item 6): readable group names, a verdict box with
the reasons where an exponent is missing, flags as a list, no "nan", figures in the paper's
order in a grid, alpha on perceptron axes; and, where Chromium is installed, the page loads
without console errors or broken images."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import synth
from analysis.io import THEORY_GROUP
from analysis.report import compact_flags, main
from analysis.results import Estimate
from analysis.verdict import agreement, display_name, display_names, estimate_text

REPO = Path(__file__).resolve().parents[1]
CNN = "cnn|mnist|adam|wd=0.0|norm/spectral_complexity"
FEW = "resnet|cifar10|sgd|wd=0.0005|norm/spectral_complexity"  # two P only: no gamma2


def test_display_names():
    assert display_name(CNN) == "CNN / MNIST / Adam"
    assert display_name("perceptron|teacher|gd|wd=0.0|norm") == "Perceptron / logistic"
    assert display_name("perceptron|teacher|gd|wd=0.0|loss=mse|norm") == "Perceptron / mse"
    assert display_name(FEW) == "ResNet / CIFAR-10 / SGD / weight decay 0.0005"
    assert (
        display_name("cnn|digits|adam|wd=0.0|label_noise=0.2|norm/paper/l1")
        == "CNN / digits / Adam / label noise 0.2 / lambda = norm/paper/l1"
    )
    assert display_name("theory|fixed-norm perceptron") == "Theory / fixed-norm perceptron"
    # a file's own group name keeps its case (only the first letter is raised)
    assert display_name("ViT_CIFAR10_norm=l1") == "ViT_CIFAR10_norm=l1"
    assert display_name("my_file") == "My_file"
    # two keys that read alike stay apart
    a, b = CNN, CNN.replace("norm/spectral_complexity", "norm")
    names = display_names([a, b, "x"])
    assert len(set(names.values())) == 3 and names["x"] == "X"


def _est(value, ci=None, se=None):
    return Estimate(value=value, ci=ci, se=se)


class _R:  # the fields agreement() reads, as on analysis.results.GroupResult
    def __init__(self, pred, meas, diff, group="cnn|mnist|adam|wd=0.0|norm/x"):
        self.gamma_pred, self.gamma_meas, self.gamma_diff = pred, meas, diff
        self.group = group


def test_agreement_reads_the_interval_or_the_se():
    text, ok = agreement(_R(_est(0.5), _est(0.45), _est(0.05, (-0.02, 0.12))))
    assert ok is True and "covers 0" in text
    text, ok = agreement(_R(_est(0.5), _est(0.2), _est(0.3, (0.2, 0.4))))
    assert ok is False and "excludes 0" in text
    # one seed per P, real curves: judged on the fits' se, at the t threshold of their
    # degrees of freedom (normal when unknown), and said so
    text, ok = agreement(_R(_est(0.5), _est(0.49), _est(0.01, None, 0.002)))
    assert ok is False and "fits' errors" in text and "5.0 se (> 1.96, 95% normal)" in text
    text, ok = agreement(_R(_est(0.5), _est(0.49), _est(0.01, None, 0.006)))
    assert ok is True and "1.7 se (<= 1.96" in text
    few = Estimate(value=0.01, se=0.0045, dof=9.0)  # 2.2 se: beyond 1.96, within t_9 = 2.26
    text, ok = agreement(_R(_est(0.5), _est(0.49), few))
    assert ok is True and "2.2 se (<= 2.26, 95% t, 9 dof)" in text
    assert agreement(_R(_est(0.5), _est(0.49), few), level=0.9)[1] is False  # t_9 at 90%: 1.83
    # ... the theory: no judgement (the fit se of a noiseless curve is misfit)
    text, ok = agreement(_R(_est(0.5), _est(0.49), _est(0.01, None, 0.002), THEORY_GROUP))
    assert ok is None and "+0.01, 2.0% of gamma_pred, 5.0 fit se" in text
    text, ok = agreement(_R(_est(0.5), _est(np.nan), _est(np.nan)))
    assert ok is None and "not estimated" in text
    assert estimate_text(_est(np.nan)) == "not estimated"
    assert estimate_text(_est(0.5, (0.4, 0.6))) == "0.5 [0.4, 0.6]"


def test_compact_flags():
    flags = ["P=4 has 3 seeds (<5)", "window from the other P", "P=8 has 3 seeds (<5)"]
    assert compact_flags(flags, "alpha") == [
        "alpha=4, 8 has 3 seeds (<5)",
        "window from the other P",
    ]
    edge = ["minimum at the edge for P=5, seed=3", "minimum at the edge for P=7, seed=0"]
    assert compact_flags(edge, "alpha") == [
        "minimum at the edge for alpha=5, seed=3",
        "minimum at the edge for alpha=7, seed=0",
    ]
    assert compact_flags(["P=1: no seed reached its minimum"]) == [
        "P=1: no seed reached its minimum"
    ]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A report of two synthetic groups, one with too few P for gamma2 and gamma_meas."""
    root = tmp_path_factory.mktemp("layout")
    ok = synth.make_sweep(P_list=(1e3, 2e3, 4e3, 8e3), seeds_per_P=4, n_points=80, group=CNN)
    few = synth.make_sweep(P_list=(1e3, 2e3), seeds_per_P=4, n_points=80, seed=1, group=FEW)
    csv = root / "curves.csv"
    pd.concat([ok, few]).to_csv(csv, index=False)
    assert main(["--curves", str(csv), "--out", str(root / "out"), "--n-boot", "50",
                 "--quiet"]) == 0  # fmt: skip
    return root / "out"


def test_verdict_names_flags_and_no_nan(report):
    md = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    doc = json.loads((report / "results.json").read_text())
    assert {g["group"] for g in doc["groups"]} == {CNN, FEW}  # raw keys stay in results.json
    # the verdict comes first, with readable names
    assert md.index("## Verdict") < md.index("Table 1")
    assert "**CNN / MNIST / Adam**" in md and "gamma_pred agrees with gamma_meas" in md
    assert "class='verdict'" in html and html.index("Verdict") < html.index("Table 1")
    # the group with two P says why gamma2 is missing, in a list under its verdict
    few = md[md.index("**ResNet / CIFAR-10 / SGD / weight decay 0.0005**") :]
    assert "gamma2 not estimated" in few.splitlines()[0]
    assert "not estimated because: too few P values (2)" in few
    # tables show names, not keys; flags are a list under each group's heading
    table1 = md[md.index("Table 1") : md.index("Table 2")]
    assert "CNN / MNIST / Adam" in table1 and "cnn\\|mnist" not in table1
    assert "## ResNet / CIFAR-10 / SGD / weight decay 0.0005\n\nGroup key: " + FEW in md
    assert re.search(r"### Flags\n\n(- .+\n)+", md)
    assert "<ul><li>" in html
    assert not re.search(r"\bnan\b", md, re.I)
    assert "collapse (S ~ 1: within noise)" in md and "S = " in md
    # Table 2 counts the P each law took, out of the group's P values
    cnn_row = next(
        x for x in md.splitlines() if x.startswith("| CNN / MNIST / Adam") and "| 4 |" in x
    )
    n1, n2, n = re.search(r"\| (\d+) / (\d+) of (\d+) \|", cnn_row).groups()
    res = next(g for g in doc["groups"] if g["group"] == CNN)
    assert int(n) == 4 and int(n1) == sum(r["used"] for r in res["per_P"])
    assert int(n2) == sum(r["in_gamma2"] for r in res["per_P"]) and int(n2) >= int(n1)


def test_figures_in_a_grid_in_the_paper_order(report):
    html = (report / "report.html").read_text()
    assert html.count("<div class='grid'>") == 2  # one per group (no sweep-wide figures)
    order = re.findall(r"<figcaption>Fig\. (\d+)", html)
    assert order == ["3", "4", "11", "12"] * 2
    assert html.count("<figure class='wide'>") == 2  # Fig. 11: both panels in one grid row


def test_perceptron_axes_say_alpha(tmp_path):
    """Figures of a perceptron group are labelled alpha, on the P axis and the colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    from analysis import figures, fit

    curves = synth.make_sweep(P_list=(2.0, 4.0, 8.0, 16.0), seeds_per_P=3, n_points=60,
                              k2=2.0, group="perceptron|teacher|gd|wd=0.0|norm")  # fmt: skip
    r = fit.analyse(curves, fit.Choices(n_boot=20))[0]
    fig = figures.fig_eps_opt(r, label="Perceptron / logistic", p_label=r"$\alpha$")
    assert fig.axes[0].get_xlabel() == r"$\alpha$"
    assert fig.axes[0].get_title().startswith("Perceptron / logistic")
    fig = figures.fig_curves(curves, r, p_label=r"$\alpha$")
    assert fig.axes[1].get_ylabel() == r"$\alpha$"  # the colour bar


def test_fig1_colours_epochs_on_a_log_scale():
    from matplotlib.colors import LogNorm

    from analysis.figures import _epoch_norm

    assert isinstance(_epoch_norm(np.geomspace(1, 1e4, 30).round()), LogNorm)
    assert isinstance(_epoch_norm(np.r_[0, np.geomspace(1, 1e4, 30)]), LogNorm)  # epoch 0 ok
    assert not isinstance(_epoch_norm(np.arange(1, 6.0)), LogNorm)  # under a decade: linear


def test_no_nan_in_titles():
    from analysis.figures import _fmt

    assert _fmt(Estimate(value=float("nan"))) == "not estimated"


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install)")
def test_report_in_headless_chromium(report, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "report_screenshot", REPO / "benchmarks" / "report_screenshot.py"
    )
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    png = tmp_path / "report.png"
    assert shot.check(report / "report.html", png) == []
    assert png.stat().st_size > 10_000
    # the checker itself sees a broken image and a script error
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head></head><body><img src='data:image/png;base64,AAAA'>"
        "<script>undefinedFunction()</script></body></html>"
    )
    problems = shot.check(bad, tmp_path / "bad.png")
    assert any("images did not load" in p for p in problems)
    assert any("undefinedFunction" in p for p in problems)
