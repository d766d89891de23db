"""Replica theory of the fixed-norm logistic perceptron (paper Sec. 2, App. A, B, D).

No torch, no MLflow: importable by the analysis on a laptop. Ray is imported lazily, only
by the actor pool (theory.pool).
"""

from theory.baselines import eps_bayes, eps_hebb, eps_maxstab
from theory.derived import local_slope, optimum
from theory.pool import optimum_table, solve_grid
from theory.potential import V, dV, prox
from theory.saddle import Solution, solve_point

__all__ = [
    "Solution",
    "V",
    "dV",
    "eps_bayes",
    "eps_hebb",
    "eps_maxstab",
    "local_slope",
    "optimum",
    "optimum_table",
    "prox",
    "solve_grid",
    "solve_point",
]
