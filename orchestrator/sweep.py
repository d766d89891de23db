"""Run a sweep: `python -m orchestrator.sweep [--config FILE] [--set key=value ...]`.

Order of work: validate everything that can be checked offline (config, trials, MLflow URI,
the saved sweep's fingerprint) -> exit 2 with one line on bad input; --dry-run prints the plan
and stops; otherwise connect to Ray, refuse trials no node can host, log the theory run
(perceptron sweeps), and run the trials with Tune, restoring an unfinished sweep of the same
name from its storage path.

Resume: Tune's experiment state (storage_path/<name>) restores unfinished trials from their
checkpoints (Tuner.restore). Independently, every trial whose MLflow run is FINISHED is skipped
by the trainable, so a trial that finished after Tune's last state snapshot is not retrained
either, and a fresh launch of a finished sweep (lost storage path) does no training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from common import names as N
from orchestrator.config import ConfigError, SweepConfig, expand_trials, load_config, trial_key
from orchestrator.resources import (
    COST_ASSUMPTIONS,
    check_capacity,
    summarize,
    trial_resources,
)

STATE_FILE = "sweep.json"  # the sweep's fingerprint, next to Tune's experiment state


# -----------------------------------------------------------------------------
# Offline checks (before Ray starts)


def check_tracking_uri(uri: str) -> None:
    """Raise ConfigError if the MLflow store cannot be reached or created."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ConfigError(f"mlflow.tracking_uri: cannot reach {uri} ({reason})") from None
    elif parsed.scheme == "sqlite":
        db = uri[len("sqlite:///") :]
        parent = Path(db).expanduser().resolve().parent if db else Path.cwd()
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise ConfigError(f"mlflow.tracking_uri: directory {parent} is missing or read-only")
    elif parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else uri).expanduser().resolve()
        base = path if path.exists() else path.parent
        if not base.is_dir() or not os.access(base, os.W_OK):
            raise ConfigError(f"mlflow.tracking_uri: {base} is missing or read-only")
    else:  # e.g. postgresql://, databricks: ask the store itself
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as e:
            raise ConfigError(f"mlflow.tracking_uri: cannot use {uri} ({e})") from None


def storage_root(cfg: SweepConfig) -> str:
    """Tune's storage_path: a URI (s3://, gs://) as given, a local path made absolute."""
    sp = cfg.tune.storage_path
    return sp if "://" in sp else str(Path(sp).expanduser().resolve())


def _fs_and_dir(cfg: SweepConfig) -> tuple[Any, str]:
    """(pyarrow filesystem, experiment directory on it) for local paths and URIs alike."""
    import pyarrow.fs

    root = storage_root(cfg)
    if "://" in root:
        fs, base = pyarrow.fs.FileSystem.from_uri(root)
    else:
        fs, base = pyarrow.fs.LocalFileSystem(), root
    return fs, f"{base.rstrip('/')}/{cfg.name}"


def check_saved_state(cfg: SweepConfig, resume: bool) -> bool:
    """Whether a sweep of this name exists to restore; refuse one with another grid."""
    from ray import tune

    fs, path = _fs_and_dir(cfg)
    state = f"{path}/{STATE_FILE}"
    if fs.get_file_info(state).type.name == "File":
        with fs.open_input_stream(state) as f:
            saved = json.loads(f.read()).get("fingerprint")
        if saved != cfg.fingerprint():
            raise ConfigError(
                f"name: a different sweep called {cfg.name!r} exists at {path}; "
                "choose another name or tune.storage_path"
            )
    restorable = tune.Tuner.can_restore(path, storage_filesystem=fs)
    if resume and not restorable:
        raise ConfigError(f"--resume: no sweep to resume at {path}")
    return restorable


def save_fingerprint(cfg: SweepConfig) -> None:
    fs, path = _fs_and_dir(cfg)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{STATE_FILE}") as f:
        f.write(json.dumps({"fingerprint": cfg.fingerprint()}).encode())


# -----------------------------------------------------------------------------
# The plan (what --dry-run prints)


def print_plan(cfg: SweepConfig, trials: list[dict], requests: list[dict]) -> None:
    """The plan for a cluster with GPUs (--dry-run starts nothing, so it cannot look)."""
    from trainers import TrialConfig, logged_epochs

    logged = [len(logged_epochs(TrialConfig(**p))) for p in trials]
    s = summarize(trials, requests, logged, cfg.cost_model)
    print(f"sweep {cfg.name}: {s['trials']} trials")
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(trials):
        g = (p["kind"], p["model"], p["dataset"], p["optimizer"], p["weight_decay"], p["epochs"])
        groups.setdefault(g, []).append(i)
    print(
        f"  {'kind':10} {'model':12} {'dataset':9} {'opt':5} {'wd':>7} {'epochs':>6} "
        f"{'trials':>6}  per-trial resources"
    )
    for (kind, model, ds, opt, wd, ep), idx in groups.items():
        shapes = sorted({f"{requests[i]['CPU']:g} CPU + {requests[i]['GPU']:g} GPU" for i in idx})
        print(
            f"  {kind:10} {model:12} {ds:9} {opt:5} {wd:>7g} {ep:>6} {len(idx):>6}  "
            + ", ".join(shapes)
        )
    print(
        f"estimated GPU-hours: {s['gpu_hours']:.1f}   CPU-hours: {s['cpu_hours']:.2f}  "
        "(cost model: orchestrator/resources.py)"
    )
    if any(p["model"].startswith("paper-") for p in trials):
        print(f"cost model assumptions: {COST_ASSUMPTIONS}")
    if cfg.resources.gpu == "auto" and any(r["GPU"] for r in requests):
        print("note: on a cluster without GPUs these trials run on the CPU")


# -----------------------------------------------------------------------------
# Running


def param_space_entries(cfg: SweepConfig, trials: list[dict], has_gpu: bool) -> list[dict]:
    return [
        {
            "key": trial_key(p),
            "params": p,
            "resources": trial_resources(p, cfg.resources, has_gpu),
            "checkpoint_seconds": cfg.tune.checkpoint_seconds,
        }
        for p in trials
    ]


def _trial_bundle(config: dict) -> Any:
    from ray.tune import PlacementGroupFactory

    r = config["trial"]["resources"]
    return PlacementGroupFactory([{k: v for k, v in r.items() if v > 0}])


def run_sweep(
    cfg: SweepConfig,
    *,
    address: str | None = None,
    resume: bool = False,
    trainable: Callable | None = None,
    verbose: int = 1,
) -> dict[str, int]:
    """Run (or resume) the sweep; returns counts of trial outcomes.

    `trainable` replaces orchestrator.trainable.train_trial (tests use tiny fake ones).
    Raises ConfigError on bad input, before any trial starts.
    """
    import ray
    from ray import tune

    from orchestrator.mlflow_logger import MlflowTrialLogger, find_runs
    from orchestrator.mlflow_logger import get_or_create_experiment as runs_exp_id
    from orchestrator.trainable import train_trial

    trials = expand_trials(cfg)
    uri = cfg.mlflow.tracking_uri or N.DEFAULT_TRACKING_URI
    experiment = cfg.mlflow.experiment or cfg.name
    check_tracking_uri(uri)
    restore = check_saved_state(cfg, resume)

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose > 1)
    try:
        nodes = ray.nodes()
        has_gpu = any(n.get("Resources", {}).get("GPU", 0) > 0 for n in nodes if n.get("Alive"))
        entries = param_space_entries(cfg, trials, has_gpu)
        if cfg.resources.check_capacity:
            check_capacity([e["resources"] for e in entries], nodes)

        if cfg.theory.enabled and any(p["kind"] == "perceptron" for p in trials):
            from orchestrator.theory_run import log_theory_run

            log_theory_run(cfg, uri, experiment)

        # Trials whose MLflow run is FINISHED are done: never train them again.
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        runs = find_runs(client, runs_exp_id(client, experiment), **{N.TAG_SWEEP: cfg.name})
        finished = frozenset(k for k, r in runs.items() if r.info.status == "FINISHED")
        fn = tune.with_parameters(trainable or train_trial, finished=finished)
        fn = tune.with_resources(fn, _trial_bundle)

        root = storage_root(cfg)
        path = f"{root.rstrip('/')}/{cfg.name}"
        if restore:
            # The restored Tuner brings back its pickled callback, which re-reads MLflow.
            tuner = tune.Tuner.restore(path, trainable=fn, resume_errored=True)
        else:
            todo = [e for e in entries if e["key"] not in finished]
            if not todo:
                print(f"sweep {cfg.name}: all {len(trials)} trials already finished")
                return {"trials": len(trials), "finished": len(trials), "errored": 0}
            save_fingerprint(cfg)
            logger = MlflowTrialLogger(
                uri, experiment, cfg.name, cfg.mlflow.flush_seconds, total_trials=len(trials)
            )
            tuner = tune.Tuner(
                fn,
                param_space={"trial": tune.grid_search(todo)},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=cfg.resources.max_concurrent_trials,
                    reuse_actors=cfg.tune.reuse_actors,
                ),
                run_config=tune.RunConfig(
                    name=cfg.name,
                    storage_path=root,
                    callbacks=[logger],
                    failure_config=tune.FailureConfig(max_failures=cfg.tune.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=cfg.tune.num_to_keep),
                    verbose=verbose,
                ),
            )
        grid = tuner.fit()
        errored = sum(1 for r in grid if r.error is not None)
        runs = find_runs(client, runs_exp_id(client, experiment), **{N.TAG_SWEEP: cfg.name})
        keys = {e["key"] for e in entries}
        done = sum(1 for k, r in runs.items() if k in keys and r.info.status == "FINISHED")
        return {"trials": len(trials), "finished": done, "errored": errored}
    finally:
        if started_ray:
            ray.shutdown()


# -----------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m orchestrator.sweep",
        description="Run a sweep of learning-curve trials on Ray Tune, tracked in MLflow. "
        "Without --config, runs the small embedded preset 'perceptron'.",
    )
    p.add_argument(
        "--config",
        help="YAML file, or a preset name from configs/ "
        "(perceptron, digits-cnn, paper-table1, paper-weight-decay, paper-sgd)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted key, e.g. resources.gpu=0.25 or "
        "blocks.0.P=[100,200] (value parsed as YAML); repeatable",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print trials, per-trial resources and GPU-hours; start nothing",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="require an unfinished sweep of this name and continue it (an existing "
        "one is also resumed without this flag)",
    )
    p.add_argument("--address", help="Ray cluster address (default: start Ray locally)")
    p.add_argument(
        "-v",
        "--verbose",
        type=int,
        default=1,
        choices=[0, 1, 2],
        help="Tune verbosity (2 also streams trial logs)",
    )
    return p


def main(argv: list[str] | None = None, trainable: Callable | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        trials = expand_trials(cfg)
        check_tracking_uri(cfg.mlflow.tracking_uri or N.DEFAULT_TRACKING_URI)
        if args.dry_run:
            entries = param_space_entries(cfg, trials, has_gpu=True)
            print_plan(cfg, trials, [e["resources"] for e in entries])
            return 0
        counts = run_sweep(
            cfg, address=args.address, resume=args.resume, trainable=trainable, verbose=args.verbose
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"sweep {cfg.name}: {counts['finished']}/{counts['trials']} trials finished"
        + (f", {counts['errored']} errored" if counts["errored"] else "")
    )
    if counts["finished"] < counts["trials"]:
        # Interrupted (Ctrl-C) or failed trials: Tune saved its state, MLflow has every epoch.
        print("run the same command again (or with --resume) to continue", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
