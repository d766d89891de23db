"""Synthetic learning curves drawn from the paper's scaling laws (Eq. 2-4), with known truth.

The generator builds every curve as eps(lam; P) = eps_opt(P) * Phi(lam / lam_opt(P)) (Eq. 4), with

    lam_opt(P) = k2 P^gamma2 + q2                         (Eq. 3)
    eps_opt(P) = k3 P^-gamma + q3,  gamma = gamma1 gamma2 by default (Eq. 5 at large P)
    Phi(x)     = k1 x^-gamma1 + q1 + c x^b                (early law Eq. 2, in collapsed units)

where c and b are fixed by asking the master curve to have its minimum at x = 1 with Phi(1) = 1:
Phi'(1) = 0 gives b c = gamma1 k1 and Phi(1) = 1 gives c = 1 - k1 - q1 (so k1 + q1 < 1). The early
regime of Phi is therefore exactly k1 x^-gamma1 + q1 with the k1, q1 given here (collapsed units).

Seed noise is multiplicative and log-normal: per seed, lam_opt and eps_opt are scaled by
exp(sigma_opt z); per logged point eps is scaled by exp(sigma_point z). Constant factors shift k's
and q's together and never the exponents, so the exponents stay the truth.

Optional departures used by the tests: `lam0` adds a small-lambda plateau (eps ~ (lam + lam0)^-g1,
like the perceptron's Hebbian limit; it breaks the collapse at small P), `x_end` < 1 stops curves
before their minimum (edge minima), `wd_dip` makes the norm fall at the end (non-monotone).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from common.names import CURVE_COLUMNS


def master_phi(x: np.ndarray, gamma1: float, k1: float, q1: float) -> np.ndarray:
    """The synthetic master curve Phi(x) of Eq. 4: minimum 1 at x = 1, early law Eq. 2."""
    c = 1.0 - k1 - q1
    if not (k1 > 0 and q1 >= 0 and c > 0 and gamma1 > 0):
        raise ValueError(f"need k1 > 0, q1 >= 0, k1 + q1 < 1, gamma1 > 0; got {k1=}, {q1=}")
    b = gamma1 * k1 / c
    x = np.asarray(x, dtype=float)
    return k1 * x**-gamma1 + q1 + c * x**b


def make_sweep(
    P_list: Sequence[float] = (1e3, 2e3, 4e3, 8e3, 16e3, 32e3),
    seeds_per_P: int | Sequence[int] = 10,
    gamma1: float = 0.5,
    gamma2: float = 1.0,
    k1: float = 0.7,
    q1: float = 0.2,
    k2: float = 0.05,
    q2: float = 0.0,
    k3: float = 1.0,
    q3: float = 0.0,
    gamma: float | None = None,
    n_points: int = 200,
    x_start: float = 1e-3,
    x_end: float | Sequence[float] = 5.0,
    sigma_opt: float = 0.03,
    sigma_point: float = 0.01,
    lam0: float = 0.0,
    wd_dip: float = 0.0,
    group: str = "synthetic",
    seed: int = 0,
) -> pd.DataFrame:
    """A tidy sweep (columns common.names.CURVE_COLUMNS), one row per (P, seed, logged epoch).

    Each curve runs over log-spaced lam from x_start * lam_opt(P) to x_end * lam_opt(P) (x_end may
    be one value per P). `gamma` (default gamma1 * gamma2) is the exponent of eps_opt(P).
    With `wd_dip` > 0 the norm reaches x_end after 80% of the epochs and then falls by that
    fraction (weight decay), so lambda is not monotone in the epoch.
    """
    rng = np.random.default_rng(seed)
    gamma = gamma1 * gamma2 if gamma is None else gamma
    seeds = np.broadcast_to(np.asarray(seeds_per_P), (len(P_list),))
    x_ends = np.broadcast_to(np.asarray(x_end, dtype=float), (len(P_list),))
    t = np.arange(n_points, dtype=float)
    frames = []
    for P, n_seeds, x_hi in zip(P_list, seeds, x_ends, strict=True):
        lam_opt = k2 * P**gamma2 + q2
        eps_opt = k3 * P**-gamma + q3
        for s in range(int(n_seeds)):
            lo = lam_opt * np.exp(sigma_opt * rng.standard_normal())
            eo = eps_opt * np.exp(sigma_opt * rng.standard_normal())
            if wd_dip > 0:
                # weight decay: the norm grows over 80% of training, then falls by wd_dip
                n_up = int(0.8 * n_points)
                lam = lam_opt * np.geomspace(x_start, x_hi, n_up)
                fall = 1.0 - wd_dip * np.linspace(0, 1, n_points - n_up + 1)[1:]
                lam = np.concatenate([lam, lam[-1] * fall])
            else:
                lam = lam_opt * np.geomspace(x_start, x_hi, n_points)
            x = (lam + lam0) / lo
            eps = eo * master_phi(x, gamma1, k1, q1)
            eps = eps * np.exp(sigma_point * rng.standard_normal(n_points))
            frames.append(
                pd.DataFrame(
                    {
                        "group": group,
                        "P": float(P),
                        "seed": s,
                        "epoch": t,
                        "lambda": lam,
                        "test_error": eps,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)[list(CURVE_COLUMNS)]


def truth(
    gamma1: float = 0.5, gamma2: float = 1.0, gamma: float | None = None, **_: object
) -> dict[str, float]:
    """The exponents a sweep made with these arguments must give (gamma_meas = gamma)."""
    g = gamma1 * gamma2 if gamma is None else gamma
    return {"gamma1": gamma1, "gamma2": gamma2, "gamma_pred": gamma1 * gamma2, "gamma_meas": g}
