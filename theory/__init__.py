"""Replica theory of the fixed-norm logistic perceptron (paper Sec. 2, App. A, B, D).

No torch, no MLflow: importable by the analysis on a laptop. Ray is imported lazily, only
by the actor pool (theory.pool).
"""

from theory.saddle import Solution, solve_point

__all__ = ["Solution", "solve_point"]
