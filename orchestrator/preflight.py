"""Pre-flight: everything a sweep checks or takes before any compute, each failure one line.

Order (orchestrator/sweep.py, run_sweep): the MLflow store (reachable; a SQLite file that is
not corrupt), the Ray version (token authentication on by default), the --address (answers
within seconds: Ray itself retries an absent cluster for minutes), the storage path (a real
write), then the locks (one sweep per sweep directory, one writer per SQLite store), the
store opened, and Ray started or joined. Every failure is a ConfigError whose message the
CLI prints as one `error:` line before exiting with 2. Last, before the trials, a local
sweep downloads the torchvision data sets its trials need (fetch_datasets).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from common.names import TRACKING_URI_ENV
from common.paths import OutputPathError, check_writable_dir
from orchestrator.config import ConfigError, SweepConfig

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
        fs, path = fs_and_dir(cfg)
        fs.get_file_info(path)
    except Exception as e:  # pyarrow raises plain OSError/ArrowInvalid for bad URIs/credentials
        raise ConfigError(f"tune.storage_path: cannot use {root} ({first_line(e)})") from None


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


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def storage_root(cfg: SweepConfig) -> str:
    """Tune's storage_path: a URI (s3://, gs://) as given, a local path made absolute."""
    sp = cfg.tune.storage_path
    return sp if "://" in sp else str(Path(sp).expanduser().resolve())


def fs_and_dir(cfg: SweepConfig) -> tuple[Any, str]:
    """(pyarrow filesystem, experiment directory on it) for local paths and URIs alike."""
    import pyarrow.fs

    root = storage_root(cfg)
    if "://" in root:
        fs, base = pyarrow.fs.FileSystem.from_uri(root)
    else:
        fs, base = pyarrow.fs.LocalFileSystem(), root
    return fs, f"{base.rstrip('/')}/{cfg.name}"


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
                f"--address auto: no Ray cluster on this machine ({first_line(e)})"
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
            f"--address: no Ray cluster answers at {address} ({first_line(e)})"
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
            log_to_driver=verbose > 1,  # the trials' output stays in Ray's log files
            logging_level=logging.INFO if verbose > 1 else logging.ERROR,
            runtime_env={"env_vars": {TRACKING_URI_ENV: _absolute(uri)}},
        )
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = f"--address {address}" if address != "local" else "ray.init"
        raise ConfigError(f"{where}: cannot connect to Ray ({first_line(e)})") from None


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
        raise ConfigError(f"mlflow.tracking_uri: cannot use {uri} ({first_line(e)})") from None


def fetch_datasets(trials: list[dict[str, Any]], name: str) -> None:
    """Download, on this machine and before any trial starts, the torchvision data sets the
    trials need and data_root lacks: torchvision's progress bar then shows the download that
    the first trial would otherwise do silently (a minute or more for CIFAR), and a node
    without internet fails here with one line instead of in every trial. For a local sweep
    only: on a cluster each node downloads into its own data_root (trainers/data.py)."""
    from trainers.data import TORCHVISION_SETS, download, is_present

    sets = TORCHVISION_SETS
    needed = sorted({(t["dataset"], t["data_root"]) for t in trials if t.get("dataset") in sets})
    for dataset, root in needed:
        if is_present(dataset, root):
            continue
        print(f"sweep {name}: downloading {dataset} into {root}", file=sys.stderr, flush=True)
        try:
            download(dataset, root)
        except RuntimeError as e:
            raise ConfigError(str(e)) from e
