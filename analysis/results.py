"""Result types of the analysis and their JSON form (results.json, see analysis.report).

Choices (the user's knobs), Estimate (a value with its intervals), GroupResult (one group's
exponents, collapse, choices and per-P table), the laws' shape (power_law, Eq. 2/3) and the
collapsed curves (master_curve, Eq. 4). Nothing here fits; figures and the report import this
module, not the pipeline.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

Window = tuple[float | None, float | None]  # lambda/lambda_opt bounds; None = open


@dataclass(frozen=True)
class Choices:
    """Analysis knobs; None means the documented automatic rule (analysis.fit docstring)."""

    p_min: float | None = None
    # in units of lambda / lambda_opt; either bound may be None (open), e.g. (None, 0.3)
    window: Window | None = None
    paper_mode: bool = False
    n_boot: int = 2000
    # "percentile" | "bca". Percentile is the default: on synthetic sweeps (tests/
    # test_fit_coverage.py) BCa covered gamma1 2-4 points less often; its jackknife
    # acceleration and bias correction jump with the automatic window and P_min choices
    ci: str = "percentile"
    level: float = 0.95
    seed: int = 0
    n_jobs: int = 1  # bootstrap rows are processed in chunks by this many threads
    # paper mode only (analysis.paper): points of the log-spaced lambda grid of the mean
    # curves, and the P range of the gamma2 fit (None: every P with an optimum)
    grid_points: int = 50
    p_range2: tuple[float, float] | None = None


@dataclass
class Estimate:
    """A point estimate with its bootstrap interval(s) and standard errors."""

    value: float
    ci: tuple[float, float] | None = None
    se: float | None = None  # bootstrap std (paper_mode: the Appendix F sigma)
    se_delta: float | None = None  # delta method / least-squares covariance cross-check
    ci_percentile: tuple[float, float] | None = None
    ci_bca: tuple[float, float] | None = None
    se_boot: float | None = None
    dof: float | None = None  # effective seed degrees of freedom behind the interval (None: inf)

    def to_dict(self) -> dict:
        return json_safe(asdict(self))


def estimate_text(
    e: Estimate | None,
    fmt: str = ".3g",
    missing: str = "not estimated",
    no_ci: str = "",
    with_se: bool = False,
) -> str:
    """An estimate as text for tables, titles and the verdict, never "nan": "v [lo, hi]";
    without a finite interval "v +- se (fit se)" (with_se and a finite se) or v + no_ci;
    missing when there is no finite value."""
    if e is None or not np.isfinite(e.value):
        return missing
    v = format(e.value, fmt)
    if e.ci is not None and np.all(np.isfinite(e.ci)):
        return f"{v} [{format(e.ci[0], fmt)}, {format(e.ci[1], fmt)}]"
    if with_se and e.se is not None and np.isfinite(e.se):
        return f"{v} +- {e.se:.2g} (fit se)"
    return v + no_ci


@dataclass
class GroupResult:
    """Everything the report needs about one group (results.json entry via to_dict)."""

    group: str
    n_P: int
    seeds_per_P: dict[float, int]
    gamma1: Estimate
    gamma2: Estimate
    gamma_pred: Estimate
    gamma_meas: Estimate
    gamma_diff: Estimate
    q1: Estimate
    k1: Estimate
    q2: Estimate
    k2: Estimate
    collapse: dict
    choices: dict
    per_P: pd.DataFrame
    per_seed_opt: pd.DataFrame
    flags: list[str] = field(default_factory=list)
    k_meas: Estimate | None = None
    q_meas: Estimate | None = None

    def to_dict(self) -> dict:
        out = {"group": self.group, "n_P": self.n_P}
        out["seeds_per_P"] = {str(num(p)): n for p, n in self.seeds_per_P.items()}
        for name in ("gamma1", "gamma2", "gamma_pred", "gamma_meas", "gamma_diff"):
            out[name] = getattr(self, name).to_dict()
        for name in ("k1", "q1", "k2", "q2", "k_meas", "q_meas"):
            est = getattr(self, name)
            out[name] = est.to_dict() if est is not None else None
        out["collapse"] = json_safe(self.collapse)
        out["choices"] = json_safe(self.choices)
        out["flags"] = list(self.flags)
        out["per_P"] = json_safe(self.per_P.to_dict(orient="records"))
        return out


def power_law(x, k: float, gamma: float, q: float):
    """k x^-gamma + q (Eq. 2; Eq. 3 is power_law(P, k2, -gamma2, q2))."""
    return k * np.asarray(x, dtype=float) ** (-gamma) + q


def master_curve(curves_for_group: pd.DataFrame, per_P: pd.DataFrame) -> pd.DataFrame:
    """The collapsed curves (Eq. 4): x = lambda/lambda_opt(P), y = test_error/eps_opt(P).

    per_P is GroupResult.per_P; P values without an optimum are left out.
    """
    opt = per_P.dropna(subset=["lambda_opt", "eps_opt"]).set_index("P")
    df = curves_for_group[curves_for_group["P"].isin(opt.index)]
    return pd.DataFrame(
        {
            "P": df["P"].to_numpy(),
            "seed": df["seed"].to_numpy(),
            "x": df["lambda"].to_numpy() / opt.loc[df["P"], "lambda_opt"].to_numpy(),
            "y": df["test_error"].to_numpy() / opt.loc[df["P"], "eps_opt"].to_numpy(),
        }
    )


def as_float(x) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def num(p: float) -> int | float:
    """P as it reads best: 1000, not 1000.0."""
    return int(p) if float(p).is_integer() else float(p)


def json_safe(obj):
    """Dicts, lists and numpy scalars as strict JSON values (non-finite floats to None)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return as_float(obj)
    return obj
