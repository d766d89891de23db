"""A tiny stand-in trainable for the orchestrator's Tune/MLflow tests (no tests here).

It honours the same contract as orchestrator.trainable.train_trial (config['trial'] spec,
`finished` keys, one checkpoint with the curve per logged epoch) but sleeps instead of
training, and appends JSON lines (start/epoch/end, with node and GPU ids and timestamps) to
a log file so tests can measure concurrency, placement and what was (re)trained.
make_fake_trial(log, sleep, crash_epoch) returns it as a closure: cloudpickle ships the knobs
with the function, so no environment has to reach the Ray workers.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import ray.cloudpickle
from ray import tune

from orchestrator.trainable import CURVE_FILE, read_curve

# Pickle these functions by value: Ray workers need not be able to import tests/.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_fake_trial(log: str, sleep: float = 0.05, crash_epoch: int = 0):
    """A trainable that sleeps `sleep` s per epoch; crashes once at `crash_epoch` if > 0."""

    def _log(event: dict) -> None:
        with open(log, "a") as f:
            f.write(json.dumps(event) + "\n")

    def fake_trial(config: dict, finished: frozenset = frozenset()) -> None:
        import ray as _ray

        spec = config["trial"]
        key, epochs = spec["key"], int(spec["params"]["epochs"])
        if key in finished:
            return
        curve: list[dict] = []
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                curve = read_curve(d)
        start = int(curve[-1]["epoch"]) if curve else 0
        ctx = _ray.get_runtime_context()
        gpus = [str(g) for g in _ray.get_gpu_ids()]
        res = ctx.get_assigned_resources()  # what Ray granted: the trial's CPU/GPU shares
        base = {"key": key, "node": ctx.get_node_id(), "gpus": gpus, "resources": res}
        _log({**base, "event": "start", "from_epoch": start, "t": time.time()})
        for epoch in range(start + 1, epochs + 1):
            time.sleep(sleep)
            marker = Path(f"{log}.crashed.{key}")
            if epoch == crash_epoch and not marker.exists():
                marker.touch()
                _log({**base, "event": "crash", "t": time.time()})
                raise RuntimeError(f"injected failure at epoch {epoch}")
            record = {"epoch": float(epoch), "test_error": 1 / (1 + epoch), "norm": float(epoch)}
            curve.append(record)
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / CURVE_FILE).write_text(json.dumps(curve))
                tune.report(record, checkpoint=tune.Checkpoint.from_directory(tmp))
        _log({**base, "event": "end", "t": time.time()})

    return fake_trial


def read_log(path: str | Path) -> list[dict]:
    p = Path(path)
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def mlflow_state(uri: str, experiment: str) -> dict[str, dict]:
    """Per trial_id tag: run count, status, logged epoch steps (with repeats), artifacts."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    out: dict[str, dict] = {}
    for r in c.search_runs([exp.experiment_id], max_results=10000):
        if r.data.tags.get("kind") == "sweep":
            continue  # the sweep's parent run (tests of it read it themselves)
        key = r.data.tags["trial_id"]
        hist = c.get_metric_history(r.info.run_id, "epoch")
        d = out.setdefault(key, {"runs": 0})
        d["runs"] += 1
        d.update(
            run_id=r.info.run_id,
            status=r.info.status,
            tags=r.data.tags,
            params=r.data.params,
            steps=sorted(int(m.step) for m in hist),
            stamps=sorted(m.timestamp for m in hist),
            artifacts=[a.path for a in c.list_artifacts(r.info.run_id)],
        )
    return out


def max_overlap(events: list[dict]) -> int:
    """Most trials running at once: start opens an interval, end or crash closes it."""
    marks = sorted((e["t"], e["event"] == "start") for e in events)  # closes sort first
    live = best = 0
    for _, is_start in marks:
        live += 1 if is_start else -1
        best = max(best, live)
    return best


def curve_epochs(uri: str, run_id: str, dst: str | Path) -> list[int]:
    """Epochs in a run's curves.parquet artifact, in order."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    path = MlflowClient(uri).download_artifacts(run_id, "curves.parquet", str(dst))
    return [int(e) for e in pd.read_parquet(path)["epoch"]]
