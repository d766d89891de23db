"""Input validation shared by the theory package: fail early, naming the parameter."""

from __future__ import annotations

import math

import numpy as np


def check_positive(name: str, value: float) -> float:
    """Return `value` as a float if it is finite and > 0, else raise ValueError naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def check_positive_array(name: str, values) -> np.ndarray:
    """1-D float array of positive finite values, else ValueError naming the parameter."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be positive finite numbers, got {values!r}") from None
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    bad = ~np.isfinite(arr) | (arr <= 0.0)
    if bad.any():
        raise ValueError(f"{name} must be positive finite numbers, got {float(arr[bad][0])}")
    return arr
