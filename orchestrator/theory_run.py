"""The theory run of a perceptron sweep: the fixed-norm replica curves, logged to MLflow.

The `theory` package solves the saddle-point equations over a grid of (alpha, lambda) with a
Ray actor pool (it uses the running Ray session) and finds each curve's optimum; this module
only logs the two tables as one MLflow run tagged kind=theory. A finished theory run of the
same sweep is reused, so resuming or re-running a sweep does not solve the equations again.
"""

from __future__ import annotations

import pandas as pd
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from common import names as N
from orchestrator.config import SweepConfig, _expand
from orchestrator.mlflow_logger import find_runs, get_or_create_experiment, log_parquet

THEORY_TRIAL_ID = "theory"


def log_theory_run(
    cfg: SweepConfig, tracking_uri: str, experiment: str, progress: bool = True
) -> str | None:
    """Solve and log the theory grid unless a finished theory run exists; its run id.

    `progress`: tqdm bars for the grid and the optimum search (the sweep's --quiet hides them).
    """
    client = MlflowClient(tracking_uri)
    exp_id = get_or_create_experiment(client, experiment)
    tags = {N.TAG_SWEEP: cfg.name, N.TAG_KIND: N.KIND_THEORY}
    old = find_runs(client, exp_id, **tags).get(THEORY_TRIAL_ID)
    finished = RunStatus.to_string(RunStatus.FINISHED)
    if old is not None and old.info.status == finished:
        return old.info.run_id

    from theory import optimum_table, solve_grid  # imported late: Ray-pool machinery

    alphas = [float(a) for a in _expand(cfg.theory.alphas)]
    lambdas = [float(x) for x in _expand(cfg.theory.lambdas)]
    table: pd.DataFrame = solve_grid(alphas, lambdas, progress=progress)
    # the root of d eps/d lambda, not a grid minimum
    opt: pd.DataFrame = optimum_table(alphas, progress=progress)

    if old is not None:
        run_id = old.info.run_id  # an interrupted earlier attempt: complete that run
    else:
        parent = find_runs(client, exp_id, **{N.TAG_SWEEP: cfg.name}).get(N.SWEEP_RUN_ID)
        if parent is not None:  # nested under the sweep's parent run (orchestrator.parent_run)
            tags[N.TAG_PARENT_RUN] = parent.info.run_id
        run = client.create_run(
            exp_id, tags={**tags, N.TAG_TRIAL_ID: THEORY_TRIAL_ID}, run_name="theory"
        )
        run_id = run.info.run_id
        client.log_param(run_id, "n_alpha", len(alphas))
        client.log_param(run_id, "n_lambda", len(lambdas))
    log_parquet(client, run_id, table, N.THEORY_ARTIFACT)
    log_parquet(client, run_id, opt, N.THEORY_OPT_ARTIFACT)
    client.set_terminated(run_id, finished)
    return run_id
