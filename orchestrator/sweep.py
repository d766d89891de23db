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

Names and records (issue 12): a trial is called by its parameters (config.trial_names, e.g.
perceptron-a32-N256-s3) in the terminal, as its Tune directory and as its MLflow run, which
is a child of the sweep's parent run (orchestrator/parent_run.py). At the end the sweep
writes .scaling-sweeps/last-sweep.json (common/last_sweep.py) and prints the report command.
What the terminal shows at each -v level: orchestrator/terminal.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from common import cli
from common import names as N
from common.last_sweep import report_command, write_last_sweep
from orchestrator import cluster as C
from orchestrator.config import (
    DEFAULT_PRESET,
    ConfigError,
    SweepConfig,
    expand_trials,
    load_config,
    preset_names,
    tracking_uri,
    trial_key,
    trial_names,
)
from orchestrator.preflight import (
    LOCAL_ONLY_ENV,
    check_ray_version,
    check_storage,
    check_tracking_uri,
    connect_ray,
    fetch_datasets,
    fs_and_dir,
    open_store,
    resolve_address,
    storage_root,
    sweep_lock,
)
from orchestrator.resources import (
    COST_ASSUMPTIONS,
    check_capacity,
    summarize,
    trial_resources,
    wall_clock,
)
from orchestrator.terminal import quiet_down

PROG = ("python", "-m", "orchestrator.sweep")
STATE_FILE = "sweep.json"  # the sweep's fingerprint, next to Tune's experiment state
TUNE_VERBOSITY = {cli.QUIET: 0, 0: 0, 1: 1, 2: 3}  # our level -> Tune's verbose (terminal.py)


# -----------------------------------------------------------------------------
# The saved sweep (pre-flight checks that need no saved state: orchestrator/preflight.py)


def check_saved_state(cfg: SweepConfig, resume: bool) -> bool:
    """Whether a sweep of this name exists to restore; refuse one with another grid."""
    from ray import tune

    fs, path = fs_and_dir(cfg)
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
    fs, path = fs_and_dir(cfg)
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
    print_grid(trials)
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
        f"estimated GPU-hours: {s['gpu_hours']:.3g}   CPU-hours: {s['cpu_hours']:.3g}  "
        "(cost model: orchestrator/resources.py)"
    )
    if any(p["model"].startswith("paper-") for p in trials):
        print(f"cost model assumptions: {COST_ASSUMPTIONS}")
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
    print_wall_clock(cfg, trials, logged, node_types)


def _values(vals: list) -> str:
    """A sorted axis, shortened past 8 values: `100, 200, ..., 51200 (10 values)`."""
    v = [f"{x:g}" if isinstance(x, float) else str(x) for x in sorted(set(vals))]
    return ", ".join(v) if len(v) <= 8 else f"{', '.join(v[:3])}, ..., {v[-1]} ({len(v)} values)"


def print_grid(trials: list[dict]) -> None:
    """The grid per model and data set: its P (alpha and N) values and seeds."""
    groups: dict[tuple, list[dict]] = {}
    for p in trials:
        groups.setdefault((p["kind"], p["model"], p["dataset"]), []).append(p)
    for (kind, model, ds), ps in groups.items():
        if kind == N.KIND_PERCEPTRON:
            size = f"alpha: {_values([p['alpha'] for p in ps])}; N: {_values([p['N'] for p in ps])}"
        else:
            size = f"P: {_values([p['P'] for p in ps])}"
        print(f"  grid {model}/{ds}: {size}; seeds: {_values([p['seed'] for p in ps])}")


def print_wall_clock(
    cfg: SweepConfig, trials: list[dict], logged: list[int], types: list[C.NodeType] | None
) -> None:
    """The wall-clock estimate where the sweep would run: the full --cluster, or this machine
    (where trials fall back to the CPU without a GPU)."""
    if types:
        nodes, where = C.fleet(types), f"the --cluster at full size ({len(C.fleet(types))} nodes)"
    else:
        m = C.local_machine()
        nodes, where = [m], f"this machine ({m['CPU']:g} CPU, {m['GPU']:g} GPU)"
    requests = [trial_resources(p, cfg.resources, C.has_gpu(nodes)) for p in trials]
    hours, packing = wall_clock(
        trials, requests, logged, cfg.cost_model, nodes, cfg.resources.max_concurrent_trials
    )
    packs = "; ".join(f"{n} trials of {shape}, {k} at once" for shape, n, k in packing)
    print(f"packing on {where}: {packs}")
    if math.isinf(hours):
        print("estimated wall clock: never (some trial fits on no node)")
    else:
        early = any(p.get("lambda_stop") for p in trials)  # perceptrons stopping at a norm
        bound = " at most" if early else ""
        print(
            f"estimated wall clock:{bound} {_hours(hours)} (cost model: orchestrator/resources.py)"
        )


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} days"


# -----------------------------------------------------------------------------
# Running


def param_space_entries(cfg: SweepConfig, trials: list[dict], has_gpu: bool) -> list[dict]:
    names = trial_names(trials)
    return [
        {
            "key": trial_key(p),
            "name": names[trial_key(p)],
            "params": p,
            "resources": trial_resources(p, cfg.resources, has_gpu),
            "checkpoint_seconds": cfg.tune.checkpoint_seconds,
        }
        for p in trials
    ]


def trial_name(trial: Any) -> str:
    """Tune's trial name and directory: the trial's own name (config.trial_names), so the
    terminal, ray_results/<sweep>/ and the MLflow run all say e.g. perceptron-a32-N256-s3."""
    spec = (trial.config or {}).get("trial") or {}
    return str(spec.get("name") or trial.trial_id)  # a sweep saved before names existed


def _trial_bundle(config: dict) -> Any:
    from ray.tune import PlacementGroupFactory

    r = config["trial"]["resources"]
    return PlacementGroupFactory([{k: v for k, v in r.items() if v > 0}])


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
    from orchestrator.progress import ProgressLine
    from orchestrator.terminal import tune_reporter

    root = storage_root(cfg)
    if restore:
        # The restored Tuner brings back its pickled callback, which re-reads MLflow.
        path = f"{root.rstrip('/')}/{cfg.name}"
        return tune.Tuner.restore(path, trainable=fn, resume_errored=True)
    save_fingerprint(cfg)
    logger = MlflowTrialLogger(
        uri, experiment, cfg.name, cfg.mlflow.flush_seconds, total_trials=n_trials
    )
    callbacks = [logger] + ([ProgressLine(cfg.name, n_trials)] if verbose >= 0 else [])
    reporter = None
    if verbose == 1:
        # Tune's classic table, whose columns can be chosen (the new output ignores them)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        reporter = tune_reporter({e["params"]["kind"] for e in todo})
    return tune.Tuner(
        fn,
        param_space={"trial": tune.grid_search(todo)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=cfg.resources.max_concurrent_trials,
            reuse_actors=cfg.tune.reuse_actors,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=cfg.name,
            storage_path=root,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=cfg.tune.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=cfg.tune.num_to_keep),
            verbose=TUNE_VERBOSITY[verbose],
            progress_reporter=reporter,
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
    verbose: int = 0,
    node_types: list[C.NodeType] | None = None,
    command: str | None = None,
) -> dict[str, int]:
    """Run (or resume) the sweep; returns counts of trial outcomes.

    `command`: the command line recorded on the sweep's parent MLflow run (default sys.argv).
    `verbose`: -1 (--quiet: no progress line or bar), 0, 1 (-v) or 2 (-vv); terminal.py.

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

    from orchestrator.parent_run import close_parent_run, open_parent_run

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

            parent = open_parent_run(client, exp_id, cfg, command or shlex.join(sys.argv))
            counts = {"trials": len(trials), "finished": 0, "errored": 0}
            try:
                store = (uri, experiment, client, exp_id)
                local = address in (None, "local")
                counts = _run_trials(cfg, trainable, entries, restore, verbose, store, local)
            finally:
                close_parent_run(client, parent, counts["finished"] == counts["trials"])
            return counts
        finally:
            if started_ray:
                ray.shutdown()


def _run_trials(
    cfg: SweepConfig,
    trainable: Callable | None,
    entries: list[dict],
    restore: bool,
    verbose: int,
    store: tuple[str, str, Any, str],
    local: bool = True,
) -> dict[str, int]:
    """The theory run, the data sets (local sweeps: preflight.fetch_datasets), then the
    unfinished trials through Tune; counts of trial outcomes.

    `store`: (tracking URI, experiment name, MlflowClient, experiment id).
    """
    from ray import tune

    from orchestrator.mlflow_logger import find_runs
    from orchestrator.trainable import train_trial

    uri, experiment, client, exp_id = store
    trials = [e["params"] for e in entries]
    if cfg.theory.enabled and any(p["kind"] == "perceptron" for p in trials):
        from orchestrator.theory_run import log_theory_run

        log_theory_run(cfg, uri, experiment, progress=verbose >= 0)

    # Trials whose MLflow run is FINISHED are done: never train them again.
    runs = find_runs(client, exp_id, **{N.TAG_SWEEP: cfg.name})
    finished = frozenset(k for k, r in runs.items() if r.info.status == "FINISHED")
    fn = tune.with_parameters(trainable or train_trial, finished=finished)
    fn = tune.with_resources(fn, _trial_bundle)

    todo = [e for e in entries if e["key"] not in finished]
    if local:
        fetch_datasets([e["params"] for e in todo], cfg.name)
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


# -----------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(
        "orchestrator.sweep",
        "Run a sweep of learning-curve trials on Ray Tune, tracked in MLflow; a finished or "
        "interrupted sweep is resumed by running the same command again. Without --config, "
        f"runs the small preset '{DEFAULT_PRESET}'.",
    )
    p.add_argument(
        "--config",
        metavar="NAME|FILE.yaml",
        help=f"a preset ({', '.join(preset_names())}) or a YAML file",
    )
    cli.add_set(
        p,
        "override a config value by dotted key, e.g. seeds=[0,1] or resources.gpu=0.25 or "
        "blocks.0.P=[100,200] (value parsed as YAML); repeatable",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the trial count, the grid (P or alpha values, seeds, models), per-trial "
        "resources, GPU-hours and the wall clock at the packing it would use; start nothing",
    )
    cli.add_out(
        p,
        "directory of Tune's state and checkpoints, a local path or s3://... "
        "(same as --set tune.storage_path=DIR; default: ./ray_results)",
        metavar="DIR",
    )
    cli.add_tracking_uri(p)
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
    cli.add_verbosity(
        p,
        verbose_help="default: one progress line and the project's own messages; -v: plus "
        "Tune's status table; -vv (or -v 2): everything, with Ray's, MLflow's and the trials' "
        "output",
        quiet_help="no progress line or bar: only the sweep's first and last lines and errors",
    )
    return p


def main(argv: list[str] | None = None, trainable: Callable | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = cli.verbosity(args)
    quiet_down(level)
    try:
        flags = {"tune.storage_path": args.out, "mlflow.tracking_uri": args.tracking_uri}
        cfg = load_config(args.config, args.set, flags)
        trials = expand_trials(cfg)
        check_tracking_uri(tracking_uri(cfg))
        types = C.load_node_types(args.cluster) if args.cluster else None
        if args.dry_run:
            shapes = C.node_shapes([], types or [])
            entries = param_space_entries(cfg, trials, has_gpu=C.has_gpu(shapes) or not types)
            if types and cfg.resources.check_capacity:
                check_capacity([e["resources"] for e in entries], C.as_nodes(shapes))
            print_plan(cfg, trials, [e["resources"] for e in entries], types)
            print(f"MLflow store: {tracking_uri(cfg)}; Tune state: {storage_root(cfg)}/{cfg.name}")
            return 0
        counts = run_sweep(
            cfg,
            address=args.address,
            resume=args.resume,
            trainable=trainable,
            verbose=level,
            node_types=types,
            command=shlex.join([*PROG, *(sys.argv[1:] if argv is None else argv)]),
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    uri = tracking_uri(cfg)
    experiment = cfg.mlflow.experiment or cfg.name
    record = write_last_sweep(cfg.name, experiment, uri)  # what analysis.report reads
    print(
        f"sweep {cfg.name}: {counts['finished']}/{counts['trials']} trials finished"
        + (f", {counts['errored']} errored" if counts["errored"] else "")
        + f"; MLflow store {uri}, experiment {experiment!r} (recorded in {record})"
    )
    unfinished = counts["finished"] < counts["trials"]
    if unfinished:
        # Interrupted (Ctrl-C) or failed trials: Tune saved its state, MLflow has every epoch.
        print("run the same command again (or with --resume) to continue")
    print(f"report: {report_command(experiment, uri)}")
    return 1 if unfinished else 0


if __name__ == "__main__":
    sys.exit(main())
