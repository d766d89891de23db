"""Run a sweep: `python -m orchestrator.sweep [--config FILE] [--set key=value ...]`.

Order of work: validate everything that can be checked without creating anything (config
file and trials, the MLflow store, including a corrupt SQLite file, the Ray version, the Ray
address, which must answer within seconds) -> exit 2 with one line on bad input; --dry-run
prints the plan (and, with --cluster, the workers it would launch) and stops; otherwise
probe the storage path with a real write, take the sweep's locks (one sweep per sweep
directory, one writer per SQLite store), connect to Ray, refuse trials no node or node type
can host, log the theory run (perceptron sweeps), and run the trials with Tune, restoring an
unfinished sweep of the same name from its storage path.

Resume: Tune's experiment state (storage_path/<name>) restores unfinished trials from their
checkpoints (Tuner.restore). Independently, every trial whose MLflow run is FINISHED is skipped
by the trainable, so a trial that finished after Tune's last state snapshot is not retrained
either, and a fresh launch of a finished sweep (lost storage path) does no training. The
other way round, a trial Tune finished whose MLflow run is gone (mlflow.db deleted) is
written again from its final checkpoint (rebuild_missing_runs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sqlite3
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from common import names as N
from common.paths import OutputPathError, check_writable_dir
from orchestrator import cluster as C
from orchestrator.config import (
    TRACKING_URI_ENV,
    ConfigError,
    SweepConfig,
    expand_trials,
    load_config,
    tracking_uri,
    trial_key,
)
from orchestrator.resources import check_capacity, summarize, trial_resources

STATE_FILE = "sweep.json"  # the sweep's fingerprint, next to Tune's experiment state
# Token authentication exists from Ray 2.52 and is on by default from 2.59: with an older
# Ray a local sweep would listen unauthenticated on every interface.
RAY_MIN_VERSION = (2, 59)
CONNECT_TIMEOUT_S = 5.0  # for probing --address and an http(s) MLflow server
# Ray's single-machine switch (named for the OSes where it is the default): with "0", a Ray
# started here takes 127.0.0.1 as its node address and binds every service to loopback. It
# is read when ray is imported, so run_sweep sets it before that; set it to 1 yourself to
# make a local sweep reachable from other machines.
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOCK_WAIT_S = 3.0  # a store's lock is also taken for a moment by another sweep's checks


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
        db = sqlite_path(uri)
        parent = db.parent if db else Path.cwd()
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise ConfigError(f"mlflow.tracking_uri: directory {parent} is missing or read-only")
        if db and db.is_file() and db.stat().st_size > 0:
            check_sqlite_store(db)
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


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (None for an in-memory one)."""
    db = uri[len("sqlite:///") :]
    return Path(db).expanduser().resolve() if db and db != ":memory:" else None


def store_lock(db: Path) -> Path:
    """The lock file of a SQLite store: held by the sweep writing it (see sweep_lock)."""
    return db.with_name(db.name + ".lock")


def check_sqlite_store(db: Path) -> None:
    """Refuse a corrupt or foreign SQLite file before MLflow's migration trips over it.

    Read under the store's lock: a sweep creating the schema right now holds it, and its
    half-made file must not be called corrupt (sweep_lock then refuses this second sweep).
    """
    from filelock import FileLock, Timeout

    try:
        with FileLock(store_lock(db), timeout=0):
            _check_sqlite_content(db)
    except Timeout:
        return


def _check_sqlite_content(db: Path) -> None:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            ok = con.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        finally:
            con.close()
    except sqlite3.Error as e:
        ok, tables = str(e), {"experiments"}
    if ok != "ok" or "experiments" not in tables:
        what = "not an MLflow database" if ok == "ok" else f"corrupt ({ok})"
        raise ConfigError(
            f"mlflow.tracking_uri: {db} is {what}; move it aside (mv {db} {db}.bad) and run "
            "the same command again: finished trials are rebuilt from Tune's checkpoints"
        )


def check_storage(cfg: SweepConfig) -> None:
    """Tune's storage path must be writable before Ray starts (a local path is probed)."""
    root = storage_root(cfg)
    if "://" not in root:
        try:
            check_writable_dir(root, "tune.storage_path")
        except OutputPathError as e:
            raise ConfigError(str(e)) from None
        return
    try:
        fs, path = _fs_and_dir(cfg)
        fs.get_file_info(path)
    except Exception as e:  # pyarrow raises plain OSError/ArrowInvalid for bad URIs/credentials
        raise ConfigError(f"tune.storage_path: cannot use {root} ({_first_line(e)})") from None


@contextlib.contextmanager
def sweep_lock(cfg: SweepConfig, uri: str) -> Iterator[None]:
    """One sweep at a time per sweep directory, and one writer per SQLite store.

    Two drivers on one sweep would both train every trial (each sees the other's runs as
    unfinished) and two on a fresh SQLite file race in MLflow's schema migration. The locks
    are advisory file locks (released by the OS if the driver dies), so a killed sweep never
    blocks the next one.
    """
    from filelock import FileLock, Timeout

    root = storage_root(cfg)
    local = Path(root) if "://" not in root else Path.cwd()
    locks = [(local / f".{cfg.name}.lock", f"sweep {cfg.name!r} in {local}")]
    db = sqlite_path(uri) if urlparse(uri).scheme == "sqlite" else None
    if db is not None:
        locks.append((store_lock(db), f"MLflow store {db}"))
    with contextlib.ExitStack() as stack:
        for path, what in locks:
            lock = FileLock(path, timeout=LOCK_WAIT_S)
            try:
                stack.enter_context(lock)
            except Timeout:
                raise ConfigError(
                    f"another sweep is running on the {what} (lock {path}); wait for it to "
                    "finish, or use another name / tune.storage_path / mlflow.tracking_uri"
                ) from None
        yield


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


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


def print_plan(
    cfg: SweepConfig,
    trials: list[dict],
    requests: list[dict],
    node_types: list[C.NodeType] | None = None,
) -> None:
    """The plan: on the node types of --cluster, or else for a cluster with GPUs."""
    from trainers import TrialConfig, logged_epochs

    logged = [len(logged_epochs(TrialConfig(**p))) for p in trials]
    s = summarize(trials, requests, logged, cfg.cost_model)
    print(f"sweep {cfg.name}: {s['trials']} trials")
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(trials):
        g = (p["kind"], p["model"], p["dataset"], p["optimizer"], p["weight_decay"], p["epochs"])
        groups.setdefault(g, []).append(i)
    print(
        f"  {'kind':10} {'model':10} {'dataset':9} {'opt':5} {'wd':>7} {'epochs':>6} "
        f"{'trials':>6}  per-trial resources"
    )
    for (kind, model, ds, opt, wd, ep), idx in groups.items():
        shapes = sorted({f"{requests[i]['CPU']:g} CPU + {requests[i]['GPU']:g} GPU" for i in idx})
        print(
            f"  {kind:10} {model:10} {ds:9} {opt:5} {wd:>7g} {ep:>6} {len(idx):>6}  "
            + ", ".join(shapes)
        )
    print(
        f"estimated GPU-hours: {s['gpu_hours']:.1f}   CPU-hours: {s['cpu_hours']:.2f}  "
        "(cost model: orchestrator/resources.py)"
    )
    if node_types:
        for t, n, per in C.launch_plan(requests, node_types):
            res = ", ".join(f"{k}: {v:g}" for k, v in sorted(t.resources.items()))
            queued = f", capped at max_workers {t.max_workers}" if n > t.max_workers else ""
            packs = ", ".join(f"{k}: {v} per node" for k, v in per.items())
            print(
                f"would launch: {min(n, t.max_workers)} x {t.name} ({res}) for {packs} "
                f"({n} to run all trials at once{queued})"
            )
    elif cfg.resources.gpu == "auto" and any(r["GPU"] for r in requests):
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


def check_ray_version() -> None:
    import ray

    have = tuple(int(x) for x in ray.__version__.split(".")[:2] if x.isdigit())
    if have < RAY_MIN_VERSION:
        need = ".".join(map(str, RAY_MIN_VERSION))
        raise ConfigError(
            f"ray {ray.__version__} is older than {need}, whose token authentication is on "
            f"by default; pip install 'ray[tune]>={need}'"
        )


def resolve_address(address: str) -> str:
    """The HOST:PORT --address names ('auto': the cluster `ray start` left on this machine),
    checked to answer within seconds; Ray itself retries an absent cluster for minutes."""
    if address == "local":
        return address
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address_or_die

        try:
            address = canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, ValueError) as e:
            raise ConfigError(
                f"--address auto: no Ray cluster on this machine ({_first_line(e)})"
            ) from None
    hostport = address.removeprefix("ray://").rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(
            f"--address: expected HOST:PORT, auto or ray://HOST:PORT, got {address!r}"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(
            f"--address: no Ray cluster answers at {address} ({_first_line(e)})"
        ) from None
    return address


def connect_ray(address: str | None, uri: str, verbose: int) -> None:
    """Start a new Ray here (address None or "local") or join a cluster; one-line
    ConfigError on failure.

    Trials see the MLflow store in their environment (MLFLOW_TRACKING_URI), as on a cluster
    node configured by cluster.yaml. A local start has no dashboard, token authentication
    (Ray >= 2.59 turns it on unless RAY_AUTH_MODE=disabled) and, when run_sweep could set
    LOCAL_ONLY_ENV before Ray was imported, every port on 127.0.0.1.
    """
    import ray

    address = address or "local"  # never join a cluster unasked: --address auto does that
    if address == "local" and os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        print("warning: RAY_AUTH_MODE=disabled: this Ray instance accepts anyone", file=sys.stderr)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=verbose > 1,
            runtime_env={"env_vars": {TRACKING_URI_ENV: _absolute(uri)}},
        )
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = f"--address {address}" if address != "local" else "ray.init"
        raise ConfigError(f"{where}: cannot connect to Ray ({_first_line(e)})") from None


def _absolute(uri: str) -> str:
    """A relative sqlite:/// path made absolute: trial processes run in other directories."""
    db = sqlite_path(uri) if urlparse(uri).scheme == "sqlite" else None
    return f"sqlite:///{db}" if db is not None else uri


def open_store(uri: str, experiment: str) -> tuple[Any, str]:
    """(MlflowClient, experiment id), or one line saying why the store is unusable."""
    from mlflow.tracking import MlflowClient

    from orchestrator.mlflow_logger import get_or_create_experiment

    try:
        client = MlflowClient(uri)
        return client, get_or_create_experiment(client, experiment)
    except Exception as e:  # MlflowException, sqlalchemy errors: not ours to enumerate
        raise ConfigError(f"mlflow.tracking_uri: cannot use {uri} ({_first_line(e)})") from None


def _tuner(
    cfg: SweepConfig,
    fn: Any,
    todo: list[dict],
    uri: str,
    experiment: str,
    n_trials: int,
    restore: bool,
    verbose: int,
) -> Any:
    """A Tuner for the unfinished trials, or the saved one of this sweep restored."""
    from ray import tune

    from orchestrator.mlflow_logger import MlflowTrialLogger

    root = storage_root(cfg)
    if restore:
        # The restored Tuner brings back its pickled callback, which re-reads MLflow.
        path = f"{root.rstrip('/')}/{cfg.name}"
        return tune.Tuner.restore(path, trainable=fn, resume_errored=True)
    save_fingerprint(cfg)
    logger = MlflowTrialLogger(
        uri, experiment, cfg.name, cfg.mlflow.flush_seconds, total_trials=n_trials
    )
    return tune.Tuner(
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


def rebuild_missing_runs(grid: Any, cfg: SweepConfig, uri: str, experiment: str) -> int:
    """Write every trial Tune holds as finished but MLflow does not (the store was lost or
    replaced after it ended) from its final checkpoint, which holds the whole curve.

    Tuner.restore brings such trials back TERMINATED and never shows them to the callbacks,
    so without this a sweep whose mlflow.db was deleted could never finish again.
    """
    from orchestrator.mlflow_logger import MlflowTrialLogger

    writer = MlflowTrialLogger(uri, experiment, cfg.name, cfg.mlflow.flush_seconds)
    return sum(
        writer.complete_from_checkpoint(r.config["trial"], r.checkpoint)
        for r in grid
        if r.error is None and r.checkpoint is not None and "trial" in (r.config or {})
    )


def run_sweep(
    cfg: SweepConfig,
    *,
    address: str | None = None,
    resume: bool = False,
    trainable: Callable | None = None,
    verbose: int = 1,
    node_types: list[C.NodeType] | None = None,
) -> dict[str, int]:
    """Run (or resume) the sweep; returns counts of trial outcomes.

    `trainable` replaces orchestrator.trainable.train_trial (tests use tiny fake ones).
    `node_types`: what the autoscaler can launch (orchestrator/cluster.py); None reads the
    head's bootstrap config when joining a `ray up` cluster.
    Raises ConfigError on bad input, before any trial starts.
    """
    trials = expand_trials(cfg)
    uri = tracking_uri(cfg)
    experiment = cfg.mlflow.experiment or cfg.name
    check_tracking_uri(uri)
    if address in (None, "local") and "ray" not in sys.modules:
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")  # a local sweep listens on 127.0.0.1 only
    check_ray_version()
    import ray
    from ray import tune

    from orchestrator.mlflow_logger import find_runs
    from orchestrator.trainable import train_trial

    if address is not None and not ray.is_initialized():
        address = resolve_address(address)
    check_storage(cfg)  # creates the storage directory: after the checks that create nothing
    if node_types is None:
        node_types = C.default_node_types(address)
    with sweep_lock(cfg, uri):
        restore = check_saved_state(cfg, resume)
        client, exp_id = open_store(uri, experiment)
        print(
            f"sweep {cfg.name}: MLflow store {uri} (experiment {experiment!r}); "
            f"Tune state {storage_root(cfg).rstrip('/')}/{cfg.name}",
            file=sys.stderr,
        )
        started_ray = not ray.is_initialized()
        if started_ray:
            connect_ray(address, uri, verbose)
        try:
            shapes = C.node_shapes(ray.nodes(), node_types)
            entries = param_space_entries(cfg, trials, C.has_gpu(shapes))
            if cfg.resources.check_capacity:
                check_capacity([e["resources"] for e in entries], C.as_nodes(shapes))

            if cfg.theory.enabled and any(p["kind"] == "perceptron" for p in trials):
                from orchestrator.theory_run import log_theory_run

                log_theory_run(cfg, uri, experiment)

            # Trials whose MLflow run is FINISHED are done: never train them again.
            runs = find_runs(client, exp_id, **{N.TAG_SWEEP: cfg.name})
            finished = frozenset(k for k, r in runs.items() if r.info.status == "FINISHED")
            fn = tune.with_parameters(trainable or train_trial, finished=finished)
            fn = tune.with_resources(fn, _trial_bundle)

            todo = [e for e in entries if e["key"] not in finished]
            if not restore and not todo:
                print(f"sweep {cfg.name}: all {len(trials)} trials already finished")
                return {"trials": len(trials), "finished": len(trials), "errored": 0}
            tuner = _tuner(cfg, fn, todo, uri, experiment, len(trials), restore, verbose)
            grid = tuner.fit()
            errored = sum(1 for r in grid if r.error is not None)
            rebuilt = rebuild_missing_runs(grid, cfg, uri, experiment)
            if rebuilt:
                print(f"sweep {cfg.name}: rebuilt {rebuilt} MLflow runs from Tune's checkpoints")
            runs = find_runs(client, exp_id, **{N.TAG_SWEEP: cfg.name})
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
    p.add_argument(
        "--address",
        help="Ray cluster to join: HOST:PORT, 'auto' (the cluster on this machine) or "
        "ray://HOST:PORT (default: start Ray locally)",
    )
    p.add_argument(
        "--cluster",
        metavar="CLUSTER.yaml",
        help="Ray cluster launcher config whose node types the autoscaler can launch: the GPU "
        "share rule and the capacity check use them, and --dry-run prints what would be "
        "launched (default on a `ray up` head: ~/ray_bootstrap_config.yaml)",
    )
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
        check_tracking_uri(tracking_uri(cfg))
        types = C.load_node_types(args.cluster) if args.cluster else None
        if args.dry_run:
            shapes = C.node_shapes([], types or [])
            entries = param_space_entries(cfg, trials, has_gpu=C.has_gpu(shapes) or not types)
            if types and cfg.resources.check_capacity:
                check_capacity([e["resources"] for e in entries], C.as_nodes(shapes))
            print_plan(cfg, trials, [e["resources"] for e in entries], types)
            return 0
        counts = run_sweep(
            cfg,
            address=args.address,
            resume=args.resume,
            trainable=trainable,
            verbose=args.verbose,
            node_types=types,
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
