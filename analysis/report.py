"""`python -m analysis.report`: exponents with bootstrap intervals, collapse, figures, tables.

    python -m analysis.report                         # the sweep this directory ran last
    python -m analysis.report --experiment NAME       # a named sweep (MLflow experiment)
    python -m analysis.report --curves curves.csv     # a tidy file: group?, P, seed, lambda,
                                                      #   test_error, epoch?

Writes into --out (default reports/<name>/): report.html (self-contained, figures embedded
as base64 PNG), report.md, the figures as PNG, and results.json
`{"groups": [GroupResult.to_dict(), ...], "config": {...}, "versions": {...},
"perceptron": [...]}`. For an MLflow sweep the same files are logged as artifacts of a new
run tagged kind=report in the sweep's experiment. Bad input (options, files, an unwritable
--out) exits with code 2 and one line on stderr, before any computation. The files are
written into a staging folder next to --out and renamed onto it only once complete, so an
interrupted report never replaces a complete one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.io import THEORY_GROUP, InputError, Sweep, load_curves_file, load_mlflow
from analysis.results import estimate_text
from analysis.verdict import display_names, verdict
from common import cli
from common import names as N

# The fixed-norm perceptron's exponents (paper, Sec. 2 and Appendix D), for the comparison.
PERCEPTRON_TRUTH = {"gamma1": 0.5, "gamma2": 1.0}
# groups whose P axis is alpha = P/N (analysis.io: perceptron trials and the theory)
ALPHA_KINDS = (N.KIND_PERCEPTRON, N.KIND_THEORY)
ALPHA = r"$\alpha = P/N$"


# --- command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.parser(
        "analysis.report",
        "Fit the dynamical scaling exponents (gamma1, gamma2, gamma_pred, gamma_meas) "
        "with seed-bootstrap intervals, measure the collapse, draw the paper's figures, and "
        "write report.html, report.md, results.json and PNGs. Default input: the sweep this "
        "directory ran last (its own record), else the latest experiment in the MLflow store.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--experiment",
        help="MLflow experiment (sweep) name; default: the sweep this directory ran last",
    )
    src.add_argument(
        "--curves",
        help="tidy curves file (.csv/.parquet): group?, P, seed, lambda, test_error, epoch?",
    )
    cli.add_out(p, "output directory (default: reports/<name>/)", metavar="DIR")
    cli.add_tracking_uri(p)
    p.add_argument(
        "--norm",
        help="logged norm used as lambda (default: "
        f"{N.NORM_SPECTRAL_COMPLEXITY} for deep runs, {N.NORM_PERCEPTRON} for "
        f"perceptrons); the authors' definitions are {N.NORM_PAPER_SPECTRAL_COMPLEXITY} etc.",
    )
    p.add_argument("--p-min", type=float, help="smallest P used in the fits (default: automatic)")
    p.add_argument(
        "--window",
        help="early power-law window LO,HI in units of lambda/lambda_opt; either bound may be "
        "left empty (open): ',0.3' or '1e-30,' (default: automatic)",
    )
    p.add_argument(
        "--paper-mode",
        action="store_true",
        help="the authors' own procedure (analysis.paper): seed-mean curves on a log grid, "
        "per-P slopes in the window, no offsets, fit-based errors",
    )
    p.add_argument(
        "--grid-points",
        type=int,
        default=50,
        help="paper mode: points of the log-spaced lambda grid of the mean curves (default 50)",
    )
    p.add_argument(
        "--p-range2",
        help="paper mode: P range LO,HI of the gamma2 fit (default: every P)",
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument(
        "--ci",
        choices=("percentile", "bca"),
        default="percentile",
        help="interval type (both are in results.json; see analysis.fit.Choices)",
    )
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    p.add_argument("--n-jobs", type=int, default=1, help="threads for the bootstrap (default 1)")
    cli.add_verbosity(
        p,
        verbose_help="-v: the libraries' warnings too; -vv: also their INFO logs",
        quiet_help="no progress bars or messages: only the last line and errors",
    )
    p.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--no-log",
        action="store_true",
        help="do not log the report back to MLflow as a kind=report run",
    )
    args = p.parse_args(argv)
    args.no_progress = cli.verbosity(args) == cli.QUIET  # --no-progress: --quiet's old name
    cli.quiet_libraries(cli.verbosity(args))
    return args


def choices_from_args(args: argparse.Namespace):
    """Validate the analysis options (InputError on bad values) and build fit.Choices."""
    from analysis.fit import Choices

    window = parse_window(args.window) if args.window is not None else None
    p_range2 = parse_range("--p-range2", args.p_range2) if args.p_range2 is not None else None
    if not args.paper_mode and (p_range2 is not None or args.grid_points != 50):
        raise InputError("--p-range2 and --grid-points apply to --paper-mode only")
    if args.grid_points < 2:
        raise InputError(f"--grid-points must be >= 2, got {args.grid_points}")
    if args.p_min is not None and not (args.p_min > 0 and math.isfinite(args.p_min)):
        raise InputError(f"--p-min must be a positive number, got {args.p_min}")
    if args.n_boot < 0:
        raise InputError(f"--n-boot must be >= 0, got {args.n_boot}")
    if not 0 < args.level < 1:
        raise InputError(f"--level must be in (0, 1), got {args.level}")
    if args.n_jobs < 1:
        raise InputError(f"--n-jobs must be >= 1, got {args.n_jobs}")
    if args.curves and (args.norm or args.tracking_uri):
        raise InputError("--norm and --tracking-uri apply to MLflow input, not to --curves")
    return Choices(
        p_min=args.p_min,
        window=window,
        paper_mode=args.paper_mode,
        n_boot=args.n_boot,
        ci=args.ci,
        level=args.level,
        seed=args.seed,
        n_jobs=args.n_jobs,
        grid_points=args.grid_points,
        p_range2=p_range2,
    )


def _bound(text: str, what: str, spec: str) -> float | None:
    """One bound of LO,HI: empty = open (None), else a positive finite number."""
    if not text.strip():
        return None
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{what} bounds must be numbers or empty, got {spec!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise InputError(f"{what} bounds must be positive and finite, got {spec!r}")
    return v


def parse_window(spec: str) -> tuple[float | None, float | None]:
    """--window LO,HI (lambda/lambda_opt): either bound may be empty (open), not both."""
    parts = spec.split(",")
    if len(parts) != 2:
        raise InputError(f"--window must be LO,HI (either may be empty: ',0.3'), got {spec!r}")
    lo, hi = (_bound(t, "--window", spec) for t in parts)
    if lo is None and hi is None:
        raise InputError(f"--window needs at least one bound, got {spec!r}")
    if lo is not None and hi is not None and not lo < hi:
        raise InputError(f"--window needs 0 < LO < HI, got {spec!r}")
    return lo, hi


def parse_range(flag: str, spec: str) -> tuple[float, float]:
    """LO,HI with both bounds given, LO <= HI."""
    parts = spec.split(",")
    vals = [_bound(t, flag, spec) for t in parts] if len(parts) == 2 else []
    if len(vals) != 2 or None in vals or vals[0] > vals[1]:
        raise InputError(f"{flag} must be LO,HI with 0 < LO <= HI, got {spec!r}")
    return vals[0], vals[1]


def load(args: argparse.Namespace) -> Sweep:
    if args.curves:
        return load_curves_file(args.curves)
    return load_mlflow(args.experiment, args.tracking_uri, args.norm, progress=not args.no_progress)


def default_out(name: str) -> Path:
    return Path("reports") / re.sub(r"[^\w.-]+", "_", name).strip("_")


# --- the report ----------------------------------------------------------------------------


def staging_dir(out: Path) -> Path:
    """A fresh folder next to --out to write the report into (InputError if impossible).

    Called before any compute, so an unwritable --out (a file, /proc/..., no permission) is
    refused at once; publish() renames it onto out only when every file is written, so a
    crash or Ctrl-C never leaves a half-written report in place of a complete one.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        tmp.chmod(0o755)  # mkdtemp's 0700 would carry over to the published report
        (tmp / ".write-test").write_text("")
        (tmp / ".write-test").unlink()
    except OSError as err:
        raise InputError(f"--out {out} is not writable: {err.strerror or err}") from None
    return tmp


def publish(tmp: Path, out: Path) -> None:
    """Replace out by the complete report in tmp: two renames in one directory."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rmdir(old)
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_report(sweep: Sweep, choices, out: Path, progress: bool = True) -> dict:
    """Fit every group, draw the figures and write all report files into out (created if
    needed; the caller makes it a fresh staging folder, see staging_dir); return results.json."""
    from analysis import figures, perceptron

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n_groups = sweep.curves["group"].nunique()
    say(
        f"fitting {n_groups} group(s), {choices.n_boot} bootstrap resamples each "
        "(none for a group with one seed per P: its errors are the fits')",
        progress,
    )
    # issue 10 (analysis/perceptron.py): MSE perceptrons are described, not fitted, and a
    # perceptron group's gamma_meas is that of the relative error eps_opt/eps_0
    results = perceptron.analyse_fitted(sweep.curves, choices, sweep.group_kinds, progress)
    results = perceptron.with_relative_gamma_meas(
        sweep.curves, results, sweep.group_kinds, choices, progress
    )
    t_fit = time.perf_counter() - t0

    say("drawing figures", progress)
    figures.setup()
    figs = draw_figures(sweep, results, out)
    comparison = perceptron_comparison(results, sweep.group_kinds)
    doc = {
        "groups": [r.to_dict() for r in results],
        "config": {
            "source": sweep.source,
            "name": sweep.name,
            "kind": sweep.kind,
            "choices": _plain(asdict(choices)),
            "rows": int(len(sweep.curves)),
            "fit_seconds": round(t_fit, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "versions": versions(),
        "perceptron": comparison,
    }
    (out / "results.json").write_text(json.dumps(_plain(doc), indent=2, allow_nan=False))
    blocks = report_blocks(sweep, results, comparison, figs)
    blocks[3:3] = [  # issue 10: right after the verdict
        *perceptron.mse_blocks(sweep.curves),
        *perceptron.exponent_blocks(results, sweep.group_kinds),
    ]
    blocks = relabel(blocks, display_names([r.group for r in results]))
    (out / "report.md").write_text(render_md(blocks))
    (out / "report.html").write_text(
        render_html(blocks, out, title=f"Scaling report: {sweep.name}")
    )
    return doc


# The paper's order of its figures; the report draws them in this order in a grid.
FIGURE_ORDER = ("fig1", "fig2", "fig3", "fig4", "fig7", "fig8", "fig11", "fig12")
WIDE_FIGURES = ("fig1", "fig2", "fig11")  # two panels or more: a whole grid row


def draw_figures(sweep: Sweep, results: list, out: Path) -> list[tuple[str, str, str | None]]:
    """Write every figure as PNG; return (file name, caption, group or None for the sweep's
    own figures) in the paper's order (FIGURE_ORDER)."""
    from analysis import figures, perceptron

    names = display_names([r.group for r in results])
    made: list[tuple[str, str, str | None]] = []

    def save(fig, stem: str, caption: str, group: str | None = None) -> None:
        figures.save(fig, out / f"{stem}.png")
        made.append((f"{stem}.png", caption, group))

    by_group = {r.group: r for r in results}
    relative = perceptron._relative_groups(sweep.group_kinds)
    train = sweep.curves[sweep.curves["group"] != THEORY_GROUP]
    if sweep.kind in (N.KIND_PERCEPTRON, "mixed") and sweep.theory is not None:
        trained = [g for g, k in sweep.group_kinds.items() if k == N.KIND_PERCEPTRON]
        first = train[train["group"] == trained[0]] if trained else train.iloc[:0]
        if len(first):
            save(
                figures.fig_trajectories(first, sweep.theory),
                "fig1_trajectories",
                "Fig. 1: free-norm training trajectories over the fixed-norm theory",
            )
        if THEORY_GROUP in by_group:
            save(
                figures.fig_relative(sweep.theory, by_group[THEORY_GROUP]),
                "fig2_relative",
                "Fig. 2: relative error eps/eps_0 with optima; collapse with insets",
            )
        save(
            figures.fig_local_slope(sweep.theory),
            "fig8_local_slope",
            "Fig. 8: local slope of the theory curves",
        )
    if any(map(perceptron.is_counterexample, sweep.group_kinds)):  # issue 10, App. C
        save(perceptron.fig_mse(sweep.curves), "fig7_mse", "Fig. 7: the MSE counterexample")
    for i, r in enumerate(results):
        curves = sweep.curves[sweep.curves["group"] == r.group]
        curves = curves[(curves["lambda"] > 0) & (curves["test_error"] > 0)]  # log axes
        if r.n_P == 0 or len(curves) == 0:
            continue  # nothing usable in this group: its flags say why
        stem = f"g{i}_{re.sub(r'[^A-Za-z0-9]+', '_', r.group).strip('_')}"
        label = names[r.group]
        p_label = ALPHA if sweep.group_kinds.get(r.group) in ALPHA_KINDS else "P"
        kw = {"label": label, "p_label": p_label}
        save(
            figures.fig_curves(curves, r, **kw),
            f"{stem}_fig3_curves",
            "Fig. 3: learning curves",
            r.group,
        )
        if r.per_P["lambda_opt"].notna().sum() == 0:
            continue  # no optimum was found: nothing to collapse or fit (the flags say why)
        save(
            figures.fig_collapse(curves, r, **kw),
            f"{stem}_fig4_collapse",
            "Fig. 4: collapse",
            r.group,
        )
        save(figures.fig_fits(curves, r, **kw), f"{stem}_fig11_fits", "Fig. 11: fits", r.group)
        # perceptrons: gamma_meas is fitted on eps_opt/eps_0 (issue 10), so draw that
        eps0 = perceptron.eps_hebb if r.group in relative else None
        fig12 = figures.fig_eps_opt(r, **kw, eps0=eps0)
        save(fig12, f"{stem}_fig12_eps_opt", "Fig. 12: eps_opt(P)", r.group)
    return sorted(made, key=lambda m: FIGURE_ORDER.index(_figure_number(m[0])))


def _figure_number(file: str) -> str:
    """'fig12' from 'g0_cnn_..._fig12_eps_opt.png' or 'fig12_...png'."""
    return re.search(r"(?:^|_)(fig\d+)_", file).group(1)


def perceptron_comparison(results: list, group_kinds: dict) -> list[dict]:
    """gamma1, gamma2 of the theory and of perceptron training against 1/2 and 1."""
    rows = []
    for r in results:
        if group_kinds.get(r.group) not in (N.KIND_PERCEPTRON, N.KIND_THEORY):
            continue
        for name, truth in PERCEPTRON_TRUTH.items():
            est = getattr(r, name)
            ci = list(est.ci) if est.ci is not None else None
            rows.append(
                {
                    "group": r.group,
                    "exponent": name,
                    "value": est.value,
                    "ci": ci,
                    "expected": truth,
                    "rel_dev": (est.value - truth) / truth,
                    "expected_in_ci": bool(ci[0] <= truth <= ci[1]) if ci else None,
                }
            )
    return rows


# --- rendering: one list of blocks, two formats --------------------------------------------


def _est(e) -> str:
    return estimate_text(e, missing="n/a", no_ci=" (no CI)")


def _num(v, fmt: str = ".3g") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and np.isfinite(v) else "n/a"


COLLAPSE_NOTE = (
    "Collapse S (Houdayer & Hartmann 2004, analysis/collapse.py): the mean squared distance "
    "of each P's collapsed curve from the other P's, in units of their seed noise. S near 1: "
    "the curves agree within seed noise; S of 10 or more: systematic departures from one "
    "master curve (Eq. 4). With one seed per P there is no noise to measure S against; the "
    "root-mean-square deviation of log eps/eps_opt is given instead (0 = perfect)."
)


def _p_counts(r) -> str:
    """How many of the group's P values gamma1 (P >= P_min) and gamma2 (Eq. 3) took."""
    t = r.per_P
    if not len(t):
        return f"- of {r.n_P}"
    return f"{int(t['used'].sum())} / {int(t['in_gamma2'].sum())} of {r.n_P}"


def _interval_text(results: list, level: float) -> str:
    """What the intervals are: a bootstrap over seeds, or (one seed per P) fit-based errors."""
    one = [r for r in results if r.seeds_per_P and max(r.seeds_per_P.values()) == 1]
    boot = f"Intervals: {int(level * 100)}% bootstrap over seeds, stratified by P."
    fit = "standard errors of the fits (one seed per P: no bootstrap, no intervals)."
    if not one:
        return boot
    if len(one) == len(results):
        return "Errors: " + fit
    return f"{boot} Groups with one seed per P ({len(one)}): " + fit


def report_blocks(sweep: Sweep, results: list, comparison: list[dict], figs) -> list[tuple]:
    """The report as blocks: (h1|h2|h3|p, text), (table, header, rows), (verdict, [Verdict]),
    (list, [text]), (grid, [(file, caption, wide)]). Table cells still hold group keys:
    run_report shows them by their display names (relabel) once every block is in."""
    level = results[0].choices.get("level", 0.95) if results else 0.95
    names = display_names([r.group for r in results])
    blocks: list[tuple] = [
        ("h1", f"Scaling report: {sweep.name}"),
        (
            "p",
            f"Source: {_describe_source(sweep.source)}. {len(results)} group(s). "
            + _interval_text(results, level),
        ),
        ("verdict", [verdict(r, names[r.group]) for r in results]),
        ("h2", "Table 1: predicted vs measured exponent of eps_opt(P)"),
        (
            "table",
            [
                "group",
                "gamma_pred = gamma1 gamma2",
                "gamma_meas",
                "difference",
                "sigma (se of difference)",
            ],
            [
                [
                    r.group,
                    _est(r.gamma_pred),
                    _est(r.gamma_meas),
                    _est(r.gamma_diff),
                    _num(r.gamma_diff.se),
                ]
                for r in results
            ],
        ),
        ("h2", "Table 2: exponents of the two dynamical laws (Eq. 2, 3)"),
        (
            "table",
            [
                "group",
                "gamma1",
                "se",
                "gamma2",
                "se",
                "q1",
                "q2",
                "P in gamma1 / gamma2",
                "seeds/P",
            ],
            [
                [
                    r.group,
                    _est(r.gamma1),
                    _num(r.gamma1.se),
                    _est(r.gamma2),
                    _num(r.gamma2.se),
                    _num(r.q1.value),
                    _num(r.q2.value),
                    _p_counts(r),
                    _seeds(r.seeds_per_P),
                ]
                for r in results
            ],
        ),
        ("h2", "Choices and collapse quality"),
        (
            "table",
            ["group", "P_min", "window (lambda/lambda_opt)", "collapse (S ~ 1: within noise)"],
            [
                [
                    r.group,
                    _num(r.choices.get("p_min")),
                    _window(r.choices.get("window")),
                    _collapse(r.collapse),
                ]
                for r in results
            ],
        ),
        ("p", COLLAPSE_NOTE),
    ]
    if comparison:
        blocks += [
            ("h2", "Perceptron: exponents against gamma1 = 1/2, gamma2 = 1"),
            (
                "p",
                "For perceptrons gamma_pred = gamma1 gamma2 predicts the relative error "
                "eps/eps_0 (eps_0: Hebb, ~ alpha^-1/2), so Table 1's gamma_meas of a perceptron "
                "group is the exponent of eps_opt/eps_0 (analysis/perceptron.py); the raw "
                "eps_opt(alpha) falls one half faster (Bayes-optimal ~ 0.442/alpha). P is "
                "alpha = P/N for perceptron runs.",
            ),
            (
                "table",
                [
                    "group",
                    "exponent",
                    "estimate",
                    "expected",
                    "relative deviation",
                    "expected inside CI",
                ],
                [
                    [
                        c["group"],
                        c["exponent"],
                        _est_row(c),
                        f"{c['expected']:g}",
                        f"{c['rel_dev']:+.1%}" if np.isfinite(c["rel_dev"]) else "n/a",
                        {True: "yes", False: "no", None: "no CI"}[c["expected_in_ci"]],
                    ]
                    for c in comparison
                ],
            ),
        ]
    sweep_figs = [_cell(f) for f in figs if f[2] is None]
    if sweep_figs:
        blocks += [("h2", "Figures of the sweep"), ("grid", sweep_figs)]
    for r in results:
        blocks += [
            ("h2", names[r.group]),
            ("p", f"Group key: {r.group}"),
            ("h3", "Flags"),
            ("list", compact_flags(r.flags, _p_name(sweep, r.group)) or ["none"]),
        ]
        own = [_cell(f) for f in figs if f[2] == r.group]
        if own:
            blocks.append(("grid", own))
    return blocks


def _p_name(sweep: Sweep, group: str) -> str:
    return "alpha" if sweep.group_kinds.get(group) in ALPHA_KINDS else "P"


def compact_flags(flags: list[str], p_name: str = "P") -> list[str]:
    """One line per kind of per-P flag: "P=4, 8, 16 has 3 seeds (<5)" instead of three;
    p_name "alpha" for perceptron groups, whose P column is alpha = P/N (analysis.io)."""
    order: list[str] = []  # texts of plain flags and (as keys) of per-P ones, in flag order
    Ps: dict[str, list[str]] = {}
    for f in flags:
        if p_name != "P":
            f = re.sub(r"\bP=", f"{p_name}=", f)
        m = re.match(rf"{p_name}=(\S+?)(:? .*)$", f)
        text = m.group(2) if m else f
        if text not in order:
            order.append(text)
        if m:
            Ps.setdefault(text, []).append(m.group(1))
    return [f"{p_name}={', '.join(Ps[t])}{t}" if t in Ps else t for t in order]


def _cell(fig: tuple[str, str, str | None]) -> tuple[str, str, bool]:
    file, caption, _ = fig
    return file, caption, _figure_number(file) in WIDE_FIGURES


def relabel(blocks: list[tuple], names: dict[str, str]) -> list[tuple]:
    """Table cells holding a raw group key show its display name instead (results.json and
    the per-group "Group key" line keep the key)."""
    out = []
    for b in blocks:
        if b[0] == "table":
            b = (b[0], b[1], [[names.get(c, c) if isinstance(c, str) else c for c in row]
                              for row in b[2]])  # fmt: skip
        out.append(b)
    return out


def _est_row(c: dict) -> str:
    if c["ci"] is None:
        return f"{c['value']:.4g} (no CI)"
    return f"{c['value']:.4g} [{c['ci'][0]:.4g}, {c['ci'][1]:.4g}]"


def _seeds(s) -> str:
    if isinstance(s, dict):
        vals = sorted(set(s.values()))
        if not vals:  # a group with no usable curve (its flags say why)
            return "-"
        return str(vals[0]) if len(vals) == 1 else f"{min(vals)}-{max(vals)}"
    return str(s)


def _window(w) -> str:
    if w is None:
        return "n/a"
    lo, hi = (format(b, ".3g") if b is not None else "open" for b in w)
    return f"[{lo}, {hi}]"


def _collapse(c: dict) -> str:
    """S with its interval and point count; the rms log deviation where S is undefined (one
    seed per P: analysis.fit._collapse_dict stores it as the value, measure says which)."""
    parts = []
    rms = c.get("value") if c.get("measure") == "rms_log_deviation" else None
    if c.get("measure") == "houdayer_hartmann_S" and _finite(c.get("value")):
        ci = c.get("ci")
        ci = f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci and all(map(_finite, ci)) else ""
        parts.append(f"S = {c['value']:.3g}{ci}")
        rms = c.get("rms_log_deviation")
    if _finite(rms):
        parts.append(f"rms log deviation {rms:.2g}")
    if _finite(c.get("n_points")) and parts:
        parts.append(f"{int(c['n_points'])} points")
    return ", ".join(parts) or "not measured"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _describe_source(src: dict) -> str:
    if src.get("type") == "mlflow":
        chosen = f"; chosen: {src['chosen']}" if src.get("chosen") else ""
        return (
            f"MLflow experiment {src['experiment']!r} in the store {src['tracking_uri']} "
            f"({src['trial_runs']} trial runs, {src['runs_without_curves']} without curves"
            f"{chosen}); lambda is the logged norm {src.get('norm')}"
        )
    return f"file {src.get('path')}"


def render_md(blocks: list[tuple]) -> str:
    lines = []
    for b in blocks:
        if b[0] in ("h1", "h2", "h3"):
            lines += ["#" * int(b[0][1]) + " " + b[1], ""]
        elif b[0] == "p":
            lines += [b[1], ""]
        elif b[0] == "table":
            cells = lambda row: "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"  # noqa: E731
            lines += [cells(b[1]), "|" + "---|" * len(b[1])] + [cells(r) for r in b[2]] + [""]
        elif b[0] == "list":
            lines += [f"- {item}" for item in b[1]] + [""]
        elif b[0] == "verdict":
            lines += ["## Verdict", ""]
            for v in b[1]:
                exps = ", ".join(f"{k} {t}" for k, t in v.exponents.items())
                lines += [f"- **{v.name}**: {exps}. {v.agreement}."]
                lines += [f"  - not estimated because: {why}" for why in v.reasons]
            lines.append("")
        elif b[0] == "grid":
            lines += [f"![{caption}]({file})" for file, caption, _ in b[1]] + [""]
    return "\n".join(lines)


VERDICT_MARK = {True: ("agree", "&#10003;"), False: ("disagree", "&#10007;"), None: ("open", "?")}


def _verdict_html(verdicts: list) -> str:
    import html

    esc = html.escape
    items = []
    for v in verdicts:
        cls, mark = VERDICT_MARK[v.agrees]
        exps = "".join(
            f"<span class='exp'>{esc(k)} <b>{esc(t)}</b></span>" for k, t in v.exponents.items()
        )
        why = "".join(f"<li>{esc(r)}</li>" for r in v.reasons)
        why = f"<div class='why'>not estimated because:<ul>{why}</ul></div>" if why else ""
        items.append(
            f"<div class='v {cls}'><div class='vh'><span class='mark'>{mark}</span> "
            f"{esc(v.name)}</div><div>{exps}</div><div>{esc(v.agreement)}</div>{why}</div>"
        )
    return f"<section class='verdict'><h2>Verdict</h2>{''.join(items)}</section>"


def render_html(blocks: list[tuple], out: Path, title: str) -> str:
    import base64
    import html

    esc = html.escape
    body = []
    for b in blocks:
        if b[0] in ("h1", "h2", "h3", "p"):
            body.append(f"<{b[0]}>{esc(b[1])}</{b[0]}>")
        elif b[0] == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in b[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in b[2]
            )
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif b[0] == "list":
            body.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in b[1]) + "</ul>")
        elif b[0] == "verdict":
            body.append(_verdict_html(b[1]))
        elif b[0] == "grid":
            cells = []
            for file, caption, wide in b[1]:
                data = base64.b64encode((out / file).read_bytes()).decode()
                cls = " class='wide'" if wide else ""
                cells.append(
                    f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
                    f"<figcaption>{esc(caption)}</figcaption></figure>"
                )
            body.append(f"<div class='grid'>{''.join(cells)}</div>")
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}"
        ".grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:1em}"
        ".grid figure{margin:0}.grid figure.wide{grid-column:1/-1}img{max-width:100%}"
        "figcaption{font-size:85%;color:#555}"
        ".verdict{border:2px solid #888;border-radius:6px;padding:.5em 1em;background:#fafafa}"
        ".verdict h2{margin:.2em 0}.v{border-left:6px solid #bbb;padding:.3em .8em;margin:.6em 0}"
        ".v.agree{border-color:#2a9d4b}.v.disagree{border-color:#c0392b}.vh{font-weight:bold}"
        ".exp{display:inline-block;margin-right:1.5em}.mark{font-size:120%}.why{color:#8a5a00}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


# --- provenance ----------------------------------------------------------------------------


def versions() -> dict:
    """Python, the numeric stack and MLflow (from package metadata: no import), git commit."""
    out = {"python": sys.version.split()[0]}
    for pkg in ("numpy", "scipy", "pandas", "seaborn", "matplotlib", "mlflow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    try:
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def _plain(x):
    """JSON-safe: numpy scalars to Python, tuples to lists, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, pd.Timestamp):
        return x.isoformat()
    return x


def log_to_mlflow(sweep: Sweep, out: Path, doc: dict) -> str:
    """Log the report files as artifacts of a kind=report run in the sweep's experiment."""
    from mlflow import MlflowClient

    client = MlflowClient(sweep.tracking_uri)
    tags = {N.TAG_KIND: N.KIND_REPORT, N.TAG_SWEEP: sweep.name}
    run = client.create_run(sweep.experiment_id, tags=tags, run_name="report")
    rid = run.info.run_id
    for key, value in doc["config"]["choices"].items():
        client.log_param(rid, key, value)
    for g in doc["groups"]:
        name = re.sub(r"[^\w\-. /:]", "_", g["group"])
        for exp in ("gamma1", "gamma2", "gamma_pred", "gamma_meas"):
            value = g.get(exp, {}).get("value")
            if value is not None:
                client.log_metric(rid, f"{exp}/{name}", value)
    client.log_artifacts(rid, str(out))
    client.set_terminated(rid)
    return rid


def say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[analysis.report] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    progress = not args.no_progress
    tmp = None
    try:
        choices = choices_from_args(args)
        if args.out:  # refuse a bad --out before reading anything
            tmp = staging_dir(Path(args.out))
        sweep = load(args)
        out = Path(args.out) if args.out else default_out(sweep.name)
        tmp = tmp or staging_dir(out)
    except InputError as err:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"error: {err}", file=sys.stderr)
        return 2
    say(
        f"{sweep.name}: {len(sweep.curves):,} rows, {sweep.curves['group'].nunique()} group(s)",
        progress,
    )
    try:
        doc = run_report(sweep, choices, tmp, progress=progress)
        publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful publish
    if sweep.source.get("type") == "mlflow" and not args.no_log:
        rid = log_to_mlflow(sweep, out, doc)
        say(f"logged to MLflow run {rid} (kind=report)", progress)
    print(f"report written to {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
