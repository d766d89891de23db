"""Finite-N check of the theory: minimise the loss of Eq. 1 on the sphere |w|^2 = N.

Teacher w* uniform on the sphere, inputs Rademacher (as in Sec. 2) or Gaussian, labels
y = sign(w* . x). The student is w = sqrt(N) v / |v| and L(v) is minimised by L-BFGS from
the Hebb vector; eps = arccos(R) / pi with R = w . w* / N. Pure numpy/scipy: no torch.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from theory._checks import check_positive


def simulate_once(
    alpha: float, lam: float, N: int, rng: np.random.Generator, inputs: str = "rademacher"
) -> float:
    """eps of one minimiser of Eq. 1 at fixed norm for one draw of teacher and data."""
    alpha, lam = check_positive("alpha", alpha), check_positive("lam", lam)
    P = max(1, round(alpha * N))
    teacher = rng.standard_normal(N)
    teacher *= math.sqrt(N) / np.linalg.norm(teacher)
    if inputs == "rademacher":
        X = rng.integers(0, 2, size=(P, N), dtype=np.int8).astype(float) * 2.0 - 1.0
    elif inputs == "gaussian":
        X = rng.standard_normal((P, N))
    else:
        raise ValueError(f"inputs must be 'rademacher' or 'gaussian', got {inputs!r}")
    y = np.sign(X @ teacher)
    y[y == 0] = 1.0
    Xy = X * y[:, None] / math.sqrt(N)  # margins Delta = Xy @ w

    def loss_grad(v):
        nv = np.linalg.norm(v)
        w = math.sqrt(N) * v / nv
        delta = Xy @ w
        loss = np.logaddexp(0.0, -2.0 * lam * delta).sum() / lam  # Eq. 1
        gw = Xy.T @ (-2.0 * expit(-2.0 * lam * delta))  # V'(Delta) = -2 sigma(-2 lam Delta)
        gv = math.sqrt(N) / nv * (gw - (gw @ v) * v / nv**2)  # tangent to the sphere
        return loss / P, gv / P

    v0 = Xy.sum(axis=0)  # Hebb start: the lam -> 0 minimiser
    res = minimize(
        loss_grad, v0, jac=True, method="L-BFGS-B", options={"maxiter": 20000, "gtol": 1e-10}
    )
    w = math.sqrt(N) * res.x / np.linalg.norm(res.x)
    R = float(w @ teacher) / N
    return math.acos(min(1.0, max(-1.0, R))) / math.pi


def simulate(
    alpha: float, lam: float, N: int = 1000, samples: int = 8, seed: int = 0, **kw
) -> tuple[float, float]:
    """(mean eps, standard error of the mean) over independent samples."""
    rng = np.random.default_rng(seed)
    eps = np.array([simulate_once(alpha, lam, N, rng, **kw) for _ in range(samples)])
    return float(eps.mean()), float(eps.std(ddof=1) / math.sqrt(samples))
