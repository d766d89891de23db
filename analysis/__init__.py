"""Analysis of learning-curve sweeps: exponents (Eq. 2-5), bootstrap intervals, collapse.

Kept import-light on purpose: nothing here imports torch, Ray or MLflow; import the public API
from the submodules: analysis.results (Choices, Estimate, GroupResult, master_curve,
power_law), analysis.fit (analyse: the automatic pipeline), analysis.paper (the authors' own
procedure, Choices.paper_mode), analysis.optimum (per-seed optimum and grid), analysis.laws
(batched least squares), analysis.synth (make_sweep), analysis.authors (the authors' curves).
"""
