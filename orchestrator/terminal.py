"""What a sweep prints: one live progress line by default, Tune's table with -v, all with -vv.

Verbosity levels of `python -m orchestrator.sweep` (issue 12, item 1):
  0 (default)  the project's own lines and one progress line per sweep; nothing from Ray,
               Tune, MLflow or Python warnings (Ray's logs stay in its session directory,
               /tmp/ray/session_*/logs)
  1 (-v)       plus Tune's status table, with the parameter columns of the trials' kinds
  2 (-vv)      everything: Tune's full output, the trials' own output, warnings, INFO logs

The progress line itself is orchestrator/progress.py. This module imports neither Ray nor
MLflow, so the CLI can quiet them before they are imported.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from common import names as N

# Tune's table columns per kind (flattened config keys -> header), shown with -v
PARAM_COLUMNS = {
    N.KIND_PERCEPTRON: {"trial/params/alpha": "alpha", "trial/params/N": "N"},
    N.KIND_DEEP: {
        "trial/params/model": "model",
        "trial/params/dataset": "dataset",
        "trial/params/P": "P",
        "trial/params/optimizer": "opt",
        "trial/params/weight_decay": "wd",
    },
}
SEED_COLUMN = {"trial/params/seed": "seed"}
METRIC_COLUMNS = {N.EPOCH: "epoch", N.TEST_ERROR: "test_error", N.TRAIN_LOSS: "train_loss"}
NOISY_LOGGERS = ("ray", "mlflow", "alembic", "py.warnings", "filelock")


def quiet_down(verbose: int) -> None:
    """Silence the libraries' own chatter in this (driver) process below -vv.

    Call before MLflow is imported: it configures its logger from MLFLOW_LOGGING_LEVEL then.
    """
    if verbose >= 2:
        return
    warnings.filterwarnings("ignore")
    level = logging.WARNING if verbose == 1 else logging.ERROR
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", logging.getLevelName(level))
    # Tune's new output engine prints a configuration box, a TensorBoard hint and a results
    # path even at verbose=0; the classic reporter prints nothing at 0 and takes columns at 1.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def tune_reporter(kinds: set[str]) -> Any:
    """Tune's CLI table with the columns that matter for these kinds (for -v)."""
    from ray.tune import CLIReporter

    cols: dict[str, str] = {}
    for kind in sorted(kinds):
        cols |= PARAM_COLUMNS.get(kind, {})
    return CLIReporter(
        parameter_columns=cols | SEED_COLUMN,
        metric_columns=METRIC_COLUMNS,
        max_report_frequency=30,
    )
