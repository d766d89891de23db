"""The report's figures, after the paper's Fig. 1-4, 8, 11 and 12 (seaborn style, Agg backend).

Every figure uses log-log axes (the local slope of Fig. 8 excepted) and colours curves by P
(alpha for perceptrons) on one sequential palette with a logarithmic colour scale, so the same
P has the same colour in every panel. Functions take the tidy curves of one group and that
group's `analysis.results.GroupResult` and return a matplotlib Figure; nothing here computes a
number the report states, it only draws what the fit returned.

Per-seed curves are drawn faintly and thinned to at most MAX_POINTS points each (a paper-scale
sweep has ~10^6 points per group). The bold "seed mean" is a display aid: the mean of all
seeds' points in log-spaced lambda bins, which needs no interpolation and tolerates
non-monotone norm trajectories. Estimates never use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (and work on headless machines)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation  # noqa: E402

from analysis.results import (  # noqa: E402
    GroupResult,
    estimate_text,
    master_curve,
    power_law,
)

MAX_POINTS = 150  # per faint per-seed line
BINS = 60  # log-lambda bins of the displayed seed mean
PALETTE = "viridis"  # sequential: small P dark blue, large P yellow
FIGSIZE = (5.2, 4.0)
NOT_ESTIMATED = "not estimated"  # what a title says instead of "nan"
ALPHA_MATCH = 0.1  # |log(alpha_train / alpha_theory)| below which Fig. 1 pairs them


def setup() -> None:
    sns.set_theme(style="ticks", context="paper", font_scale=1.1, rc={"axes.titlesize": 9})


class PColors:
    """One colour per P on a log scale, plus the colour bar that explains it."""

    def __init__(self, Ps, label: str = "P"):
        Ps = np.asarray(list(Ps), dtype=float)
        Ps = Ps[np.isfinite(Ps) & (Ps > 0)]
        lo, hi = (float(Ps.min()), float(Ps.max())) if len(Ps) else (1.0, 1.0)
        self.norm = LogNorm(lo, hi) if hi > lo else Normalize(lo - 1, hi + 1)
        self.cmap = sns.color_palette(PALETTE, as_cmap=True)
        self.label = label

    def __call__(self, P: float):
        return self.cmap(self.norm(P))

    def colorbar(self, fig: Figure, ax) -> None:
        sm = plt.cm.ScalarMappable(norm=self.norm, cmap=self.cmap)
        fig.colorbar(sm, ax=ax, label=self.label, pad=0.02)


def _thin(x: np.ndarray, y: np.ndarray, n: int = MAX_POINTS) -> np.ndarray:
    idx = np.unique(np.linspace(0, len(x) - 1, min(n, len(x))).astype(int))
    return np.column_stack([x[idx], y[idx]])


def _positive(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)


def faint_seeds(ax, df: pd.DataFrame, x: str, y: str, color, alpha: float = 0.18) -> None:
    """Every seed's curve as one thin line (a LineCollection: fast for thousands of runs)."""
    segs = []
    for _, one in df.groupby("seed", sort=False):
        xs, ys = one[x].to_numpy(float), one[y].to_numpy(float)
        ok = _positive(xs, ys)
        if ok.sum() > 1:
            segs.append(_thin(xs[ok], ys[ok]))
    if segs:
        ax.add_collection(LineCollection(segs, colors=[color], linewidths=0.6, alpha=alpha))
        ax.update_datalim(np.concatenate(segs))
        ax.autoscale_view()


def binned_mean(df: pd.DataFrame, x: str, y: str, bins: int = BINS) -> tuple[np.ndarray, ...]:
    """Mean of y in log-spaced bins of x over all seeds (display only; see module doc)."""
    xs, ys = df[x].to_numpy(float), df[y].to_numpy(float)
    ok = _positive(xs, ys)
    xs, ys = xs[ok], ys[ok]
    if len(xs) < 2:
        return xs, ys
    edges = np.geomspace(xs.min(), xs.max() * (1 + 1e-12), bins + 1)
    which = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    xm = np.exp(np.bincount(which, np.log(xs), bins) / np.maximum(count, 1))
    ym = np.bincount(which, ys, bins) / np.maximum(count, 1)
    return xm[count > 0], ym[count > 0]


def _loglog(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    _quiet_minor_x(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _quiet_minor_x(ax) -> None:
    """Label minor x ticks only below half a decade: wider, their long labels collide."""
    ax.xaxis.set_minor_formatter(LogFormatterSciNotation(minor_thresholds=(0.5, 0.2)))


def _window(result: GroupResult, x: np.ndarray) -> tuple[float, float] | None:
    """The fit window; an open bound (None) is drawn to the end of the collapsed data x."""
    w = result.choices.get("window")
    if w is None or len(x) == 0:
        return None
    lo = float(w[0]) if w[0] is not None else float(np.min(x))
    hi = float(w[1]) if w[1] is not None else float(np.max(x))
    return (lo, hi) if 0 < lo < hi else None


def _used(result: GroupResult) -> pd.DataFrame:
    per_P = result.per_P
    return per_P[per_P["used"].astype(bool)] if "used" in per_P else per_P


# --- deep groups (and any group): Fig. 3, 4, 11, 12 ----------------------------------------


def fig_curves(
    curves: pd.DataFrame, result: GroupResult, label: str | None = None, p_label: str = "P"
) -> Figure:
    """Fig. 3: eps against lambda(t) for every P; seed mean bold, each seed faint.

    label: the group's name in the title (default its key); p_label: the name of the P axis
    and colour bar (alpha = P/N for perceptrons), here and in Fig. 4, 11 and 12.
    """
    fig, ax = plt.subplots(figsize=FIGSIZE, constrained_layout=True)
    colors = PColors(curves["P"].unique(), label=p_label)
    for P, df in curves.groupby("P"):
        faint_seeds(ax, df, "lambda", "test_error", colors(P))
        ax.plot(*binned_mean(df, "lambda", "test_error"), color=colors(P), lw=1.6)
    _loglog(ax, r"norm $\lambda(t)$", r"test error $\epsilon$")
    ax.set_title(f"{label or result.group}\nlearning curves (Fig. 3)", fontsize=9)
    colors.colorbar(fig, ax)
    return fig


def _collapse_axes(ax, curves: pd.DataFrame, result: GroupResult, colors: PColors) -> None:
    """Master curve eps/eps_opt vs lambda/lambda_opt (Eq. 4) with the Eq. 2 fit in its window."""
    mc = master_curve(curves, result.per_P)
    used = set(_used(result)["P"])
    for P, df in mc.groupby("P"):
        faint_seeds(ax, df, "x", "y", colors(P), alpha=0.12 if P in used else 0.05)
        ax.plot(*binned_mean(df, "x", "y"), color=colors(P), lw=1.4, alpha=1 if P in used else 0.4)
    window = _window(result, mc["x"].to_numpy())
    if window is not None and np.isfinite(result.gamma1.value):
        x = np.geomspace(*window, 50)
        y = power_law(x, result.k1.value, result.gamma1.value, result.q1.value)
        label = rf"Eq. 2 fit: $\gamma_1$ = {result.gamma1.value:.3g}"
        ax.plot(x, y, "k--", lw=1.5, label=label)
        for edge in window:
            ax.axvline(edge, color="0.5", lw=0.6, ls=":")
        ax.legend(loc="best", fontsize=8)
    ax.axvline(1.0, color="0.7", lw=0.6)
    _loglog(ax, r"$\lambda/\lambda_{opt}$", r"$\epsilon/\epsilon_{opt}$")


def fig_collapse(
    curves: pd.DataFrame, result: GroupResult, label: str | None = None, p_label: str = "P"
) -> Figure:
    """Fig. 4: the collapse; P below P_min (not used in the fits) are drawn faded. The title
    gives the collapse score S with its scale (analysis/collapse.py: ~1 = within seed noise)."""
    fig, ax = plt.subplots(figsize=FIGSIZE, constrained_layout=True)
    colors = PColors(curves["P"].unique(), label=p_label)
    _collapse_axes(ax, curves, result, colors)
    ax.set_title(f"{label or result.group}\ncollapse (Fig. 4): {_quality(result)}", fontsize=8)
    colors.colorbar(fig, ax)
    return fig


def fig_fits(
    curves: pd.DataFrame, result: GroupResult, label: str | None = None, p_label: str = "P"
) -> Figure:
    """Fig. 11: left the gamma1 fit on the collapse, right lambda_opt(P) with the Eq. 3 fit."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    colors = PColors(curves["P"].unique(), label=p_label)
    _collapse_axes(left, curves, result, colors)
    left.set_title(rf"$\gamma_1$ = {_fmt(result.gamma1)}", fontsize=9)
    # paper mode fits Eq. 3 on lambda0, the seeds' own argmins (analysis/paper.py)
    col = "lambda0" if "lambda0" in result.per_P else "lambda_opt"
    _opt_axes(right, result, col, colors, p_label, law="in_gamma2")
    if np.isfinite(result.gamma2.value):
        P = np.geomspace(result.per_P["P"].min(), result.per_P["P"].max(), 50)
        y = power_law(P, result.k2.value, -result.gamma2.value, result.q2.value)
        right.plot(P, y, "k--", lw=1.4)
    right.set_ylabel(r"$\lambda_{opt}$")
    right.set_title(rf"$\gamma_2$ = {_fmt(result.gamma2)}  (Eq. 3)", fontsize=9)
    fig.suptitle(f"{label or result.group}: exponent fits (Fig. 11)", fontsize=9)
    return fig


def fig_eps_opt(
    result: GroupResult,
    label: str | None = None,
    p_label: str = "P",
    eps0: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Figure:
    """Fig. 12: eps_opt(P) measured (its fit k P^-gamma_meas + q) against the prediction.

    As in the paper, only the predicted exponent gamma_pred is known, so its line is anchored
    at the geometric mean of the used points. eps0: for perceptron groups, whose gamma_meas
    (and k_meas, q_meas) is that of eps_opt/eps_0 (analysis/perceptron.py), the baseline
    eps_0(alpha); the points are then drawn relative to it, on the fit's own scale.
    """
    if eps0 is not None:
        per_P = result.per_P.copy()
        base = eps0(per_P["P"].to_numpy(float))
        for col in ("eps_opt", "eps_opt_lo", "eps_opt_hi"):
            if col in per_P:
                per_P[col] = per_P[col] / base
        result = dataclasses.replace(result, per_P=per_P)
    fig, ax = plt.subplots(figsize=FIGSIZE, constrained_layout=True)
    colors = PColors(result.per_P["P"], label=p_label)
    _opt_axes(ax, result, "eps_opt", colors, p_label, law="in_gamma_meas")
    # the anchor takes the P the fit of eps_opt(P) took
    used = result.per_P[result.per_P["in_gamma_meas"].astype(bool)]
    used = used[_positive(used["P"].to_numpy(float), used["eps_opt"].to_numpy(float))]
    P = np.geomspace(result.per_P["P"].min(), result.per_P["P"].max(), 50)
    meas, pred = result.gamma_meas, result.gamma_pred
    if result.k_meas is not None and np.isfinite(meas.value):
        q = result.q_meas.value if result.q_meas is not None else 0.0
        y = power_law(P, result.k_meas.value, meas.value, q)
        ax.plot(P, y, "k-", lw=1.3, label=rf"measured $\gamma_{{meas}}$ = {_fmt(meas)}")
    if len(used) and np.isfinite(pred.value):
        P0 = float(np.exp(np.log(used["P"]).mean()))
        e0 = float(np.exp(np.log(used["eps_opt"]).mean()))
        legend = rf"predicted $\gamma_{{pred}}$ = {_fmt(pred)}"
        ax.plot(P, e0 * (P / P0) ** -pred.value, "r--", lw=1.3, label=legend)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_ylabel(r"$\epsilon_{opt}/\epsilon_0$" if eps0 is not None else r"$\epsilon_{opt}$")
    ax.set_title(f"{label or result.group}\nmeasured vs predicted (Fig. 12)", fontsize=9)
    return fig


def _opt_axes(ax, result: GroupResult, col: str, colors: PColors, p_label: str, law: str) -> None:
    """Points of lambda_opt or eps_opt against P with their bootstrap intervals as error bars;
    the P that the law in P (per_P column law: in_gamma2, in_gamma_meas) left out are crosses."""
    per_P = result.per_P
    for (_, row), used in zip(per_P.iterrows(), per_P[law].to_numpy(bool), strict=True):
        y = row[col]
        lo, hi = row.get(f"{col}_lo", np.nan), row.get(f"{col}_hi", np.nan)
        yerr = [[max(y - lo, 0)], [max(hi - y, 0)]] if np.isfinite(lo) and np.isfinite(hi) else None
        ax.errorbar(
            row["P"],
            y,
            yerr=yerr,
            fmt="o" if used else "x",
            color=colors(row["P"]),
            alpha=1.0 if used else 0.45,
            capsize=2,
            ms=5,
        )
    p_min = result.choices.get("p_min")
    if p_min is not None:
        ax.axvline(float(p_min), color="0.6", ls=":", lw=0.8)
    _loglog(ax, p_label, {"eps_opt": r"$\epsilon_{opt}$"}.get(col, r"$\lambda_{opt}$"))


# --- perceptron sweeps: Fig. 1, 2, 8 -------------------------------------------------------


def _nearest(values, target: float) -> float:
    values = np.asarray(sorted(set(values)), dtype=float)
    return float(values[np.argmin(np.abs(np.log(values / target)))])


def _left_alpha(train_alphas, theory_alphas, alpha0: float) -> tuple[float, float | None]:
    """The training alpha for Fig. 1 (left) and the theory alpha drawn with it (None: none close).

    Prefer a training alpha that the theory also solved (within ALPHA_MATCH in log), the one
    nearest alpha0 among those; the theory grid may be much coarser or elsewhere.
    """
    train = np.asarray(sorted(set(train_alphas)), dtype=float)
    if theory_alphas is not None:
        theory = np.asarray(sorted(set(theory_alphas)), dtype=float)
        gap = np.min(np.abs(np.log(train[:, None] / theory[None, :])), axis=1)
        matched = train[gap <= ALPHA_MATCH]
        if len(matched):
            a = _nearest(matched, alpha0)
            return a, _nearest(theory, a)
    return _nearest(train, alpha0), None


def _converged(theory: pd.DataFrame) -> pd.DataFrame:
    return theory[theory["converged"].astype(bool)] if "converged" in theory else theory


def _baselines(theory: pd.DataFrame, alpha: float) -> dict[str, float]:
    row = theory[theory["alpha"] == alpha]
    names = {"eps_hebb": "Hebb", "eps_bayes": "Bayes-optimal", "eps_maxstab": "max-stability"}
    return {label: float(row[c].iloc[0]) for c, label in names.items() if c in row and len(row)}


def fig_trajectories(
    train: pd.DataFrame, theory: pd.DataFrame | None, alpha0: float = 5.0
) -> Figure:
    """Fig. 1: free-norm training trajectories eps(lambda(t)) over the fixed-norm theory.

    Left, at the alpha nearest alpha0 (the paper uses 5): each seed's trajectory coloured by
    epoch, the theory curve, and the Hebb / Bayes-optimal / max-stability errors. Right, every
    alpha: theory solid, training (seed mean) dashed, on one alpha colour scale.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    alpha, ta = _left_alpha(train["P"], None if theory is None else theory["alpha"], alpha0)
    one = train[train["P"] == alpha]
    time = _epoch_norm(one["epoch"].to_numpy(float))
    for _, df in one.groupby("seed"):
        xy = df[["lambda", "test_error"]].to_numpy(float)
        ok = _positive(xy[:, 0], xy[:, 1])
        xy, t = xy[ok], df["epoch"].to_numpy(float)[ok]
        lc = LineCollection(np.stack([xy[:-1], xy[1:]], axis=1), cmap="plasma", norm=time)
        lc.set_array(np.maximum(t[:-1], time.vmin))  # epoch 0 gets the first colour
        lc.set_linewidth(1.2)
        left.add_collection(lc)
        left.update_datalim(xy)
    left.autoscale_view()
    fig.colorbar(plt.cm.ScalarMappable(norm=time, cmap="plasma"), ax=left, label="epoch (log)")
    all_alphas = set(train["P"])
    if theory is not None:
        all_alphas |= set(theory["alpha"])
    if ta is not None:
        th = _converged(theory)
        th = th[th["alpha"] == ta]
        left.plot(
            th["lambda"], th["epsilon"], color="tab:blue", lw=2, label=f"fixed norm, α={ta:g}"
        )
        for (label, eps), ls in zip(
            _baselines(theory, ta).items(), ("--", "-.", ":"), strict=False
        ):
            left.axhline(eps, color="0.3", ls=ls, lw=1, label=label)
    left.legend(fontsize=7, loc="lower left")
    _loglog(left, r"$\lambda$", r"$\epsilon$")
    left.set_title(f"free norm, α = {alpha:g} (Fig. 1, left)", fontsize=9)

    colors = PColors(all_alphas, label=r"$\alpha$")
    if theory is not None:
        for a, th in theory.groupby("alpha"):
            th = _converged(th)
            right.plot(th["lambda"], th["epsilon"], color=colors(a), lw=1.5)
    for a, df in train.groupby("P"):
        right.plot(*binned_mean(df, "lambda", "test_error"), color=colors(a), lw=1.2, ls="--")
    _loglog(right, r"$\lambda$", r"$\epsilon$")
    right.set_title("theory (solid) vs training (dashed) (Fig. 1, right)", fontsize=9)
    colors.colorbar(fig, right)
    return fig


def fig_relative(theory: pd.DataFrame, result: GroupResult) -> Figure:
    """Fig. 2: eps/eps_0 vs lambda with optimum stars; the collapse; lambda_opt and eps_opt.

    eps_0 is the Hebb error at each alpha (the theory table's eps_hebb); the optima are the
    fit's per-alpha estimates for the theory group. The paper's two insets are drawn as side
    panels (they overlap the curves otherwise): lambda_opt(alpha) with the fitted Eq. 3 law and
    the relative optimum eps_opt/eps_0 with slope -gamma1 gamma2 (anchored at the points).
    """
    fig = plt.figure(figsize=(13, 4.4), constrained_layout=True)
    grid = fig.add_gridspec(2, 3, width_ratios=[1, 1.15, 0.6])
    left, right = fig.add_subplot(grid[:, 0]), fig.add_subplot(grid[:, 1])
    top, bottom = fig.add_subplot(grid[0, 2]), fig.add_subplot(grid[1, 2])
    th = _converged(theory)
    colors = PColors(th["alpha"].unique(), label=r"$\alpha$")
    eps0 = th.groupby("alpha")["eps_hebb"].first()
    opt = result.per_P.set_index("P")
    for a, df in th.groupby("alpha"):
        left.plot(df["lambda"], df["epsilon"] / eps0[a], color=colors(a), lw=1.4)
        if a in opt.index:
            star = (opt.loc[a, "lambda_opt"], opt.loc[a, "eps_opt"] / eps0[a])
            left.plot(*star, "*", color=colors(a), ms=11, mec="k", mew=0.5)
    _loglog(left, r"$\lambda$", r"$\epsilon/\epsilon_0$")
    left.set_title(r"relative error; stars: $(\lambda_{opt}, \hat\epsilon_{opt})$ (Fig. 2)")
    curves = pd.DataFrame(
        {"group": result.group, "P": th["alpha"], "seed": 0, "epoch": 0.0,
         "lambda": th["lambda"], "test_error": th["epsilon"]}
    )  # fmt: skip
    _collapse_axes(right, curves, result, colors)
    right.set_title("collapse (Fig. 2, right)")
    colors.colorbar(fig, right)

    per = opt[opt.index.isin(eps0.index)].dropna(subset=["lambda_opt", "eps_opt"])
    a = per.index.to_numpy(float)
    ax_a = np.geomspace(a.min(), a.max(), 50) if len(a) else a
    top.loglog(a, per["lambda_opt"], "o", ms=4, color="k")
    if len(a) and np.isfinite(result.gamma2.value):
        law = power_law(ax_a, result.k2.value, -result.gamma2.value, result.q2.value)
        top.loglog(ax_a, law, "r--", lw=1)
    top.set_title(rf"$\lambda_{{opt}}(\alpha)$: $\gamma_2$ = {_fmt(result.gamma2)}")
    rel = (per["eps_opt"] / eps0[per.index]).to_numpy(float)
    bottom.loglog(a, rel, "o", ms=4, color="k")
    ok = _positive(a, rel)
    g = result.gamma_pred.value
    if ok.any() and np.isfinite(g):
        a0, y0 = np.exp(np.log(a[ok]).mean()), np.exp(np.log(rel[ok]).mean())
        bottom.loglog(ax_a, y0 * (ax_a / a0) ** -g, "r--", lw=1)
    slope = f"{-g:.3g}" if np.isfinite(g) else NOT_ESTIMATED
    bottom.set_title(rf"$\hat\epsilon_{{opt}}(\alpha)$: slope $-\gamma_1\gamma_2$ = {slope}")
    for ax in (top, bottom):
        _quiet_minor_x(ax)
        ax.set_xlabel(r"$\alpha$")
    return fig


def fig_local_slope(theory: pd.DataFrame) -> Figure:
    """Fig. 8: d log eps / d log lambda of the theory curves, with the -1/2 asymptote."""
    fig, ax = plt.subplots(figsize=FIGSIZE, constrained_layout=True)
    th = _converged(theory)
    colors = PColors(th["alpha"].unique(), label=r"$\alpha$")
    for a, df in th.groupby("alpha"):
        df = df.sort_values("lambda")
        df = df[_positive(df["lambda"].to_numpy(float), df["epsilon"].to_numpy(float))]
        if len(df) < 3:
            continue
        slope = np.gradient(np.log(df["epsilon"]), np.log(df["lambda"]))
        ax.plot(df["lambda"], slope, color=colors(a), lw=1.4)
    ax.axhline(-0.5, color="red", ls="--", lw=1.2, label="-1/2")
    ax.axhline(0.0, color="k", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(r"$\lambda$")
    ax.set_ylabel(r"$d\log\epsilon / d\log\lambda$")
    ax.legend(fontsize=8)
    ax.set_title("local slope of the theory curves (Fig. 8)", fontsize=9)
    colors.colorbar(fig, ax)
    return fig


# --- helpers -------------------------------------------------------------------------------


def _epoch_norm(epochs: np.ndarray) -> Normalize:
    """A log colour scale over the logged epochs (the schedule is log-spaced: a linear scale
    gives one colour to all but the last decade); linear if they span less than a decade."""
    pos = epochs[np.isfinite(epochs) & (epochs > 0)]
    if len(pos) and pos.max() >= 10 * pos.min():
        return LogNorm(pos.min(), pos.max())
    finite = epochs[np.isfinite(epochs)]
    lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    return Normalize(lo, hi if hi > lo else lo + 1)


def _quality(result: GroupResult) -> str:
    """The collapse score with its scale (analysis/collapse.py)."""
    c = result.collapse
    if not _is_number(c.get("value")):
        return "score not measured"
    if c.get("measure") == "rms_log_deviation":  # one seed per P: S is undefined
        return f"rms log deviation {c['value']:.2g} (0 = perfect)"
    return f"S = {c['value']:.3g} (1 = within seed noise)"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _fmt(est) -> str:
    """A value with its interval for a title; never "nan"."""
    return estimate_text(est, missing=NOT_ESTIMATED)


def save(fig: Figure, path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)
