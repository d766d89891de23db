"""The one MLflow writer: a driver-side Tune callback that batches per-epoch metrics.

Contract (DESIGN.md "Data contract"): one experiment per sweep, one run per trial tagged with
common.names.TRIAL_TAGS and all trial params, metrics with step=epoch, and at the trial's end
its whole curve as `curves.parquet`.

Exactly-once epochs. A run is found by its `trial_id` tag, the orchestrator's deterministic
trial key, so a retried, resumed or re-launched trial continues its own run. The set of epochs
already in a run is read back from MLflow (the `epoch` metric's history) the first time this
driver sees the trial; an epoch is logged only if it is not in that set. All metrics of one
epoch go into the same log_batch call, so an epoch is either fully logged or not at all.
Writes are buffered per run and flushed at 1000 metrics, after `flush_seconds`, or when the
trial ends. If the driver dies with unflushed epochs, the trial's final checkpoint still holds
its whole curve; at trial end the missing epochs are back-filled from it before the
`curves.parquet` artifact is written.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS

from common import names as N
from orchestrator.config import applicable_params
from orchestrator.trainable import read_curve, read_final_curve

MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call
MAX_PARAMS = 100  # ... and on params per call
# Tune adds these to every result; they are bookkeeping, not the trainer's record.
TUNE_KEYS = set(AUTO_RESULT_KEYS) | {"done", "trial_id", "experiment_tag", "should_checkpoint"}


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id, created if needed: tagged as model training (MLflow 3's UI
    otherwise opens an experiment without runs yet in its GenAI view), its artifacts beside a
    SQLite store's file (common.names.artifact_location), not in the working directory."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(
            name,
            artifact_location=N.artifact_location(client.tracking_uri, name),
            tags={N.TAG_EXPERIMENT_KIND: N.EXPERIMENT_KIND_TRAINING},
        )
    if N.TAG_EXPERIMENT_KIND not in exp.tags:  # created by an older version of this code
        client.set_experiment_tag(
            exp.experiment_id, N.TAG_EXPERIMENT_KIND, N.EXPERIMENT_KIND_TRAINING
        )
    return exp.experiment_id


def find_runs(client: MlflowClient, experiment_id: str, **tags: str) -> dict[str, Any]:
    """All runs of the experiment matching the tags, keyed by their trial_id tag."""
    where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs, token = {}, None
    while True:
        page = client.search_runs([experiment_id], where, max_results=1000, page_token=token)
        for r in page:
            runs.setdefault(r.data.tags.get(N.TAG_TRIAL_ID, r.info.run_id), r)
        token = page.token
        if not token:
            return runs


def record_of(result: dict[str, Any]) -> dict[str, float]:
    """The trainer's record inside a Tune result: its numeric, non-Tune keys."""
    return {
        k: float(v)
        for k, v in result.items()
        if k not in TUNE_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
    }


def trial_tags(sweep: str, key: str, params: dict[str, Any]) -> dict[str, str]:
    return {
        N.TAG_SWEEP: sweep,
        N.TAG_TRIAL_ID: key,
        N.TAG_KIND: params["kind"],
        N.TAG_MODEL: params["model"],
        N.TAG_DATASET: params["dataset"],
        N.TAG_P: str(params["P"]),
        N.TAG_SEED: str(params["seed"]),
        N.TAG_OPTIMIZER: params["optimizer"],
        N.TAG_WEIGHT_DECAY: str(params["weight_decay"]),
    }


def log_parquet(client: MlflowClient, run_id: str, df: pd.DataFrame, name: str) -> None:
    """Write a DataFrame as one parquet artifact (via a temp dir, so the file keeps its name)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        df.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path))


class MlflowTrialLogger(tune.Callback):
    """Driver-side Tune callback: one MLflow run per trial, batched metric writes."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        sweep: str,
        flush_seconds: float = 2.0,
        total_trials: int | None = None,
        progress_seconds: float = 0.0,  # 0: none (the sweep shows orchestrator.progress)
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.sweep = sweep
        self.flush_seconds = flush_seconds
        self.total = total_trials
        self.progress_seconds = progress_seconds
        self._connect()

    def _connect(self) -> None:
        """(Re)build all driver-side state from MLflow itself, never from a pickle."""
        self.client = MlflowClient(self.tracking_uri)
        self.experiment_id = get_or_create_experiment(self.client, self.experiment)
        self._existing = find_runs(self.client, self.experiment_id, **{N.TAG_SWEEP: self.sweep})
        self._run_of: dict[str, str] = {}  # trial key -> run id
        self._logged: dict[str, set[int]] = {}  # run id -> epochs in MLflow or in the buffer
        self._buffer: dict[str, list[Metric]] = {}
        self._rows: dict[str, dict[int, dict[str, float]]] = {}  # run id -> epoch -> record
        self._done_before: set[str] = set()  # runs already FINISHED when this driver started
        # the sweep's parent run (orchestrator.sweep opens it before any trial starts)
        parent = self._existing.get(N.SWEEP_RUN_ID)
        self.parent_run_id = parent.info.run_id if parent is not None else None
        self._last_flush = time.monotonic()
        self._last_progress = 0.0
        self.rows_written = 0

    # Tune pickles the callback into its experiment state (tuner.pkl) and a restored sweep
    # gets that copy back: keep only the settings, so that a restored driver re-reads the
    # runs from MLflow instead of trusting a stale snapshot (which would duplicate runs).
    _SETTINGS = (
        "tracking_uri",
        "experiment",
        "sweep",
        "flush_seconds",
        "total",
        "progress_seconds",
    )

    def __getstate__(self) -> dict[str, Any]:
        return {k: self.__dict__[k] for k in self._SETTINGS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._connect()

    # --- runs ---------------------------------------------------------------------------
    def _run_for(self, trial: Any) -> str:
        return self._run_for_spec(trial.config["trial"], trial.trial_id)

    def _run_for_spec(self, spec: dict[str, Any], tune_trial_id: str | None) -> str:
        key = spec["key"]
        if key in self._run_of:
            return self._run_of[key]
        params = spec["params"]
        old = self._existing.get(key)
        if old is not None:
            run_id = old.info.run_id
            history = self.client.get_metric_history(run_id, N.EPOCH)
            self._logged[run_id] = {int(m.step) for m in history}
            if old.info.status == "FINISHED":
                # Done in an earlier session (the trainable skips it): leave the run as is.
                self._done_before.add(run_id)
            else:
                self.client.update_run(run_id, status="RUNNING")
        else:
            tags = trial_tags(self.sweep, key, params)
            if self.parent_run_id is not None:
                tags[N.TAG_PARENT_RUN] = self.parent_run_id
            run = self.client.create_run(
                self.experiment_id, tags=tags, run_name=spec.get("name", key)
            )
            run_id = run.info.run_id
            items = [Param(k, str(v)) for k, v in sorted(applicable_params(params).items())]
            for i in range(0, len(items), MAX_PARAMS):
                self.client.log_batch(run_id, params=items[i : i + MAX_PARAMS])
            self._logged[run_id] = set()
        if tune_trial_id is not None:
            self.client.set_tag(run_id, N.TAG_TUNE_TRIAL_ID, tune_trial_id)
        self._run_of[key] = run_id
        return run_id

    # --- metrics ------------------------------------------------------------------------
    def _add(self, run_id: str, record: dict[str, float]) -> None:
        epoch = int(record[N.EPOCH])
        if epoch in self._logged[run_id]:
            return  # already in MLflow: a retried trial replays epochs after its checkpoint
        self._logged[run_id].add(epoch)
        ts = int(time.time() * 1000)
        metrics = [  # the stop reason, a string, is a tag (on_trial_result, _finish)
            Metric(k, v, ts, epoch)
            for k, v in record.items()
            if isinstance(v, int | float) and math.isfinite(v)
        ]
        buf = self._buffer.setdefault(run_id, [])
        if len(buf) + len(metrics) > MAX_BATCH:
            self._flush_run(run_id)
            buf = self._buffer.setdefault(run_id, [])
        buf.extend(metrics)

    def _flush_run(self, run_id: str) -> None:
        buf = self._buffer.pop(run_id, [])
        for attempt in range(3):
            try:
                self.client.log_batch(run_id, metrics=buf)
                break
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(0.5 * 2**attempt)  # e.g. SQLite "database is locked"
        self.rows_written += len(buf)

    def flush(self) -> None:
        for run_id in list(self._buffer):
            self._flush_run(run_id)
        self._last_flush = time.monotonic()

    # --- Tune hooks ---------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run_for(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        record = record_of(result)
        if N.EPOCH in record:
            run_id = self._run_for(trial)
            self._rows.setdefault(run_id, {})[int(record[N.EPOCH])] = record
            self._add(run_id, record)
            if isinstance(result.get(N.STOP_REASON), str):
                self.client.set_tag(run_id, N.STOP_REASON, result[N.STOP_REASON])

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self.flush_seconds:
            self.flush()
        if self.progress_seconds and now - self._last_progress >= self.progress_seconds:
            self._last_progress = now
            running = sum(t.status == "RUNNING" for t in trials)
            done = sum(t.status == "TERMINATED" for t in trials)
            total = self.total or len(trials)
            print(
                f"[sweep {self.sweep}] {done}/{total} trials done, {running} running, "
                f"{self.rows_written} metric rows in MLflow",
                file=sys.stderr,
                flush=True,
            )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_for(trial)
        if run_id in self._done_before:
            return  # its curve artifact is complete; a stale Tune checkpoint must not replace it
        # The final checkpoint holds the whole curve; what this driver saw is the fallback.
        seen = self._rows.pop(run_id, {})
        self._finish(run_id, self._final_curve(trial.checkpoint) or [seen[e] for e in sorted(seen)])

    def _finish(self, run_id: str, curve: list[dict[str, float]]) -> None:
        for record in curve:
            self._add(run_id, record)  # back-fills epochs whose writes died with a driver
        self._flush_run(run_id)
        if curve:
            log_parquet(self.client, run_id, pd.DataFrame(curve), N.CURVES_ARTIFACT)
            if isinstance(curve[-1].get(N.STOP_REASON), str):  # also when rebuilt from a checkpoint
                self.client.set_tag(run_id, N.STOP_REASON, curve[-1][N.STOP_REASON])
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))

    def complete_from_checkpoint(self, spec: dict[str, Any], checkpoint: Any) -> bool:
        """Write a trial Tune finished but MLflow lacks (lost or replaced store) from its
        final checkpoint, which holds the whole curve; True if a run was (re)written.

        Used after Tuner.restore: a restored TERMINATED trial never reaches the callbacks.
        """
        old = self._existing.get(spec["key"])
        if checkpoint is None or (old is not None and old.info.status == "FINISHED"):
            return False
        with checkpoint.as_directory() as d:
            curve = read_final_curve(d, int(spec["params"]["epochs"]))
        if not curve:
            return False  # an interrupted trial: Tune resumes it, its callback writes it
        self._finish(self._run_for_spec(spec, None), curve)
        return True

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_for(trial)
        if run_id in self._done_before:
            return
        self._flush_run(run_id)
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.flush()

    def _final_curve(self, checkpoint: Any) -> list[dict[str, float]]:
        if checkpoint is None:
            return []
        with checkpoint.as_directory() as d:
            return read_curve(d)
