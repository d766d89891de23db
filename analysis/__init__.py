"""Analysis of learning-curve sweeps: exponents (Eq. 2-5), bootstrap intervals, collapse.

Kept import-light on purpose: nothing here imports torch, Ray or MLflow; import the public API
from the submodules (analysis.fit: Choices, analyse, GroupResult, Estimate, master_curve,
power_law; analysis.synth: make_sweep).
"""
