"""Composite Gauss-Legendre rules on panels graded geometrically towards given centres.

The integrands of the saddle point (Eq. 14a, 14b) are smooth but have features on widely
different scales: a step of width sqrt(1 - R^2) (the teacher weight H) and a kink of width
1/lam (the logistic potential), next to the unit scale of the Gaussian measure. A fixed
Gauss-Hermite rule cannot resolve sqrt(1 - R^2) ~ 1e-5 at alpha ~ 1e5. Panels whose width
grows geometrically with the distance from each feature keep every panel "smooth on its
own scale", so a fixed number of nodes per panel gives uniform relative accuracy, with a
node count that grows only logarithmically with the scale ratio.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss-Legendre rule on [-1, 1]."""
    return np.polynomial.legendre.leggauss(n)


def graded_edges(
    lo: float, hi: float, centres: list[tuple[float, float]], ratio: float = 2.0
) -> np.ndarray:
    """Panel edges on [lo, hi]: each centre c with scale h adds c, c +- h ratio^k (k >= 0)."""
    pts = [lo, hi]
    log_r = math.log(ratio)
    for c, h in centres:
        far = max(hi - c, c - lo)
        if far <= 0.0 or h <= 0.0:
            continue
        k = max(0, math.ceil(math.log(max(far / h, 1.0)) / log_r)) + 1
        offs = h * ratio ** np.arange(k)
        pts.extend([c])
        pts.extend(c + offs)
        pts.extend(c - offs)
    edges = np.unique(np.clip(np.asarray(pts, dtype=float), lo, hi))
    # drop slivers created by rounding (they would only waste nodes)
    keep = np.concatenate([[True], np.diff(edges) > 1e-13 * (hi - lo)])
    edges = edges[keep]
    edges[-1] = hi
    return edges


def panel_rule(edges: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Flattened nodes and weights of the n-point Gauss-Legendre rule on each panel."""
    xg, wg = gauss_legendre(n)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    nodes = (mid[:, None] + half[:, None] * xg[None, :]).ravel()
    weights = (half[:, None] * wg[None, :]).ravel()
    return nodes, weights
