"""What a reader needs first: readable group names and one verdict per group (issue 12).

A group key (analysis.io.group_name) is `model|dataset|optimizer|wd=...|[label_noise=...|]
[loss=...|]norm`; results.json keeps it as is, the report shows `display_names` instead:
`CNN / MNIST / Adam`, `Perceptron / logistic`, plus the parts that are not defaults (weight
decay, label noise, a non-default norm) and, where two groups would still read alike, the raw
key. The verdict says whether gamma_pred = gamma1 gamma2 (Eq. 5) agrees with gamma_meas: the
interval of their difference covers 0. With one seed per P (e.g. the authors' published
seed-averaged curves) there is no interval: the difference is judged against the fits'
standard error, as the paper judges its own (App. F), at the Student t threshold of the
level for the fits' degrees of freedom (Welch-Satterthwaite; 2.26 at 9), and the text says
so; not for the theory, whose noiseless curves make a fit's se a measure of misfit, not of
noise: there the difference is only stated. Where an exponent is not estimated the verdict
lists the fit's own reasons (its flags).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis import results
from analysis.bootstrap import critical
from analysis.io import THEORY_GROUP
from common import names as N

MODELS = {"cnn": "CNN", "resnet": "ResNet", "vit": "ViT", "mlp": "MLP", "perceptron": "Perceptron"}
MODELS |= {f"paper-{k}": f"{v} (authors')" for k, v in MODELS.items()}
DATASETS = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "digits": "digits"}
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "gd": "GD"}
DEFAULT_NORMS = (N.NORM_SPECTRAL_COMPLEXITY, N.NORM_PERCEPTRON)
EXPONENTS = ("gamma1", "gamma2", "gamma_pred", "gamma_meas")
# words by which the fit's flags explain a missing estimate (analysis/fit.py, analysis/paper.py)
REASON_WORDS = ("not estimated", "nothing estimated", "too few", "no usable", "no seed reached")


def display_name(group: str) -> str:
    """`CNN / MNIST / Adam` for `cnn|mnist|adam|wd=0.0|norm/spectral_complexity`; a key of
    another shape (a file's group, the theory) is returned with its `|` as ` / `."""
    parts = group.split("|")
    if len(parts) < 5 or not parts[3].startswith("wd="):
        return " / ".join(p[:1].upper() + p[1:] if i == 0 else p for i, p in enumerate(parts))
    model, dataset, optimizer, wd, *extra, norm = parts
    extras = dict(e.split("=", 1) for e in extra if "=" in e)
    if model == "perceptron":  # the teacher and full-batch GD are the perceptron's setting
        words = ["Perceptron", extras.pop("loss", "logistic")]
        if optimizer not in ("gd", "?"):
            words.append(OPTIMIZERS.get(optimizer, optimizer))
    else:
        words = [
            MODELS.get(model, model),
            DATASETS.get(dataset, dataset),
            OPTIMIZERS.get(optimizer, optimizer),
        ]
    if _number(wd[3:]) not in (0.0, None):
        words.append(f"weight decay {wd[3:]}")
    words += [f"{k.replace('_', ' ')} {v}" for k, v in extras.items()]
    if norm not in DEFAULT_NORMS:
        words.append(f"lambda = {norm}")
    return " / ".join(words)


def display_names(groups: list[str]) -> dict[str, str]:
    """group key -> readable name, unique: names that collide get their raw key appended."""
    names = {g: display_name(g) for g in groups}
    seen: dict[str, int] = {}
    for n in names.values():
        seen[n] = seen.get(n, 0) + 1
    return {g: n if seen[n] == 1 else f"{n} ({g})" for g, n in names.items()}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Verdict:
    """One group's line in the report's verdict box."""

    group: str  # the raw key (results.json)
    name: str  # display_names
    exponents: dict[str, str]  # gamma1 .. gamma_meas -> "0.51 [0.48, 0.55]" or "not estimated"
    agreement: str  # one sentence: agrees / disagrees / cannot be judged, with the numbers
    agrees: bool | None  # None: not judged
    reasons: tuple[str, ...]  # why an exponent is missing (the fit's flags), if one is


def estimate_text(e) -> str:
    """A value with its interval, or "not estimated" (never "nan")."""
    return results.estimate_text(e, with_se=True)


def agreement(r, level: float = 0.95) -> tuple[str, bool | None]:
    """Does gamma_pred = gamma1 gamma2 agree with gamma_meas (Eq. 5)? Text and True/False/None.
    level: of the interval (one seed per P: of the Student t threshold on the fits' se)."""
    d = r.gamma_diff
    if not (np.isfinite(r.gamma_pred.value) and np.isfinite(r.gamma_meas.value)):
        return "cannot be compared: an exponent is not estimated", None
    diff = d.value if np.isfinite(d.value) else r.gamma_pred.value - r.gamma_meas.value
    if d.ci is not None and np.all(np.isfinite(d.ci)):
        lo, hi = sorted(d.ci)
        ok = bool(lo <= 0 <= hi)
        how = "covers" if ok else "excludes"
        verb = "agrees with" if ok else "disagrees with"
        return (
            f"gamma_pred {verb} gamma_meas: the interval of gamma_pred - gamma_meas "
            f"[{lo:.3g}, {hi:.3g}] {how} 0",
            ok,
        )
    # One seed per P: no interval. Real curves (independent runs at each P): the fits' se
    # carry the noise between P and judge, at Student t. The theory's noiseless curves: the se
    # measures the laws' misfit, not noise, so the size of the difference is stated instead.
    rel = f", {abs(diff) / abs(r.gamma_pred.value):.1%} of gamma_pred" if r.gamma_pred.value else ""
    has_se = d.se is not None and np.isfinite(d.se) and d.se > 0
    if has_se and r.group != THEORY_GROUP:
        dof = d.dof if d.dof is not None else np.inf
        crit = critical(level, dof)  # Student t: the fits' se rest on a few P
        ok = bool(abs(diff) <= crit * d.se)
        verb = "agrees with" if ok else "disagrees with"
        t = f"t, {dof:.0f} dof" if np.isfinite(dof) else "normal"
        return (
            f"gamma_pred {verb} gamma_meas by the fits' errors (one seed per P, no bootstrap): "
            f"difference {diff:+.3g} = {abs(diff) / d.se:.1f} se "
            f"({'<=' if ok else '>'} {crit:.2f}, {level:.0%} {t})",
            ok,
        )
    se = f", {abs(diff) / d.se:.1f} fit se" if has_se else ""
    return f"One seed per P, no interval to judge by: difference {diff:+.3g}{rel}{se}", None


def verdict(r, name: str) -> Verdict:
    exps = {k: estimate_text(getattr(r, k)) for k in EXPONENTS}
    missing = [k for k in EXPONENTS if not np.isfinite(getattr(r, k).value)]
    reasons: tuple[str, ...] = ()
    if missing:
        why = [f for f in r.flags if any(w in f for w in (*REASON_WORDS, *missing))]
        reasons = tuple(why) or ("the fit gave no reason; see the group's flags",)
    text, ok = agreement(r, r.choices.get("level", 0.95) if r.choices else 0.95)
    return Verdict(r.group, name, exps, text, ok, reasons)
