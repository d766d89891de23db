"""Sweep orchestrator: the only package that imports Ray Tune and writes to MLflow.

Entry point: `python -m orchestrator.sweep` (see orchestrator/sweep.py). Public API:
load_config / run_sweep / main. Importing this package stays light (no Ray, no torch).
"""

from orchestrator.config import ConfigError, SweepConfig, expand_trials, load_config

__all__ = ["ConfigError", "SweepConfig", "expand_trials", "load_config"]
