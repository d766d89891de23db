"""Orchestrator speed: Tune overhead on many short trials, and the MLflow write path.

    python benchmarks/bench_orchestrator.py [--trials 100] [--concurrency 4] ...

1. Overhead. A sweep of `--trials` trials through the real orchestrator (run_sweep: Tune,
   per-epoch checkpoints, the MLflow callback), each trial sleeping `--epochs` x
   `--epoch-seconds`. Ideal makespan = ceil(trials / concurrency) x trial time: the same work
   at the same concurrency with zero overhead. Reported: makespan / ideal (target <= 1.3).
   Knobs in effect (stated, not hidden): TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1 (MLflow is the
   result store; Tune's per-trial CSV/JSON/TensorBoard files are skipped; --tune-loggers
   keeps them), reuse_actors=True, the product's checkpoint policy (every 10 s and at the last
   epoch), num_to_keep=5.
2. Write path. The same per-epoch records (--metrics keys) for --runs runs x --log-epochs
   epochs, written (a) by MlflowTrialLogger, batched with log_batch, and (b) naively, one
   log_metric call per metric per epoch; each into a fresh SQLite store. Reported: metric
   rows per second and the ratio (target >= 10x).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import ray
import ray.cloudpickle
from ray import tune

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.config import parse_config  # noqa: E402
from orchestrator.mlflow_logger import MlflowTrialLogger  # noqa: E402
from orchestrator.sweep import run_sweep  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_sleeper(epoch_seconds: float):
    """A trainable with the orchestrator's contract that sleeps instead of training."""
    import json

    def sleeper(config: dict, finished: frozenset = frozenset()) -> None:
        epochs = int(config["trial"]["params"]["epochs"])
        every_s = float(config["trial"]["checkpoint_seconds"])
        curve, last = [], time.monotonic()
        for epoch in range(1, epochs + 1):
            time.sleep(epoch_seconds)
            rec = {"epoch": float(epoch), "test_error": 1.0 / epoch, "norm": float(epoch)}
            curve.append(rec)
            # the product trainable's policy: checkpoint every `every_s` and at the end
            if time.monotonic() - last < every_s and epoch < epochs:
                tune.report(rec)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "curve.json").write_text(json.dumps(curve))
                tune.report(rec, checkpoint=tune.Checkpoint.from_directory(tmp))
            last = time.monotonic()

    return sleeper


def bench_overhead(args: argparse.Namespace, work: Path) -> dict:
    n_p = math.ceil(args.trials / 2)
    cfg = parse_config(
        {
            "name": "bench",
            "seeds": [0, 1],
            "blocks": [{"models": ["cnn"], "datasets": ["digits"], "P": list(range(10, 10 + n_p))}],
            "trial": {"epochs": args.epochs, "log_schedule": "every"},
            "resources": {"cpus_per_trial": 2 / args.concurrency},
            "tune": {"storage_path": str(work / "ray")},
            "mlflow": {"tracking_uri": f"sqlite:///{work}/bench.db", "flush_seconds": 2.0},
        }
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        t0 = time.perf_counter()
        out = run_sweep(cfg, trainable=make_sleeper(args.epoch_seconds), verbose=0)
        makespan = time.perf_counter() - t0
    finally:
        ray.shutdown()
    trial_s = args.epochs * args.epoch_seconds
    ideal = math.ceil(out["trials"] / args.concurrency) * trial_s
    return {
        "trials": out["trials"],
        "finished": out["finished"],
        "makespan": makespan,
        "ideal": ideal,
        "ratio": makespan / ideal,
    }


KEYS = [
    "test_error",
    "test_loss",
    "train_error",
    "train_loss",
    "norm/spectral_complexity",
    "norm/l1",
    "norm/frobenius",
    "norm/group21",
    "norm/spectral_product",
]


def _records(args: argparse.Namespace):
    keys = KEYS[: args.metrics - 1]
    for e in range(1, args.log_epochs + 1):
        yield {"epoch": float(e), **{k: 1.0 / (e + i) for i, k in enumerate(keys)}}


def bench_batched(args: argparse.Namespace, work: Path) -> tuple[int, float]:
    logger = MlflowTrialLogger(
        f"sqlite:///{work}/batched.db", "w", "w", flush_seconds=1e9, progress_seconds=0
    )
    trials = []
    for r in range(args.runs):
        params = {
            "kind": "deep",
            "model": "cnn",
            "dataset": "digits",
            "P": 100 + r,
            "seed": 0,
            "optimizer": "adam",
            "weight_decay": 0.0,
        }
        trials.append(
            SimpleNamespace(
                trial_id=f"t{r}",
                config={"trial": {"key": f"k{r}", "params": params}},
                checkpoint=None,
                status="RUNNING",
            )
        )
    for t in trials:
        logger.on_trial_start(0, trials, t)
    t0 = time.perf_counter()
    for rec in _records(args):  # Tune delivers results interleaved across trials
        for t in trials:
            logger.on_trial_result(0, trials, t, dict(rec))
    logger.flush()
    return logger.rows_written, time.perf_counter() - t0


def bench_naive(args: argparse.Namespace, work: Path) -> tuple[int, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work}/naive.db")
    exp = client.create_experiment("w")
    runs = [client.create_run(exp).info.run_id for _ in range(args.runs)]
    rows = 0
    t0 = time.perf_counter()
    for rec in _records(args):
        for run_id in runs:
            step = int(rec["epoch"])
            for k, v in rec.items():
                client.log_metric(run_id, k, v, step=step)
                rows += 1
    return rows, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=4, help="trials at once on 2 CPUs")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--epoch-seconds", type=float, default=0.2)
    p.add_argument("--runs", type=int, default=4, help="write path: runs")
    p.add_argument("--log-epochs", type=int, default=50, help="write path: epochs per run")
    p.add_argument("--metrics", type=int, default=10, help="write path: keys per record")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--skip-write", action="store_true")
    p.add_argument("--tune-loggers", action="store_true", help="keep Tune's per-trial files")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not args.tune_loggers:
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"

    logging.getLogger("ray.tune").setLevel(logging.ERROR)  # no per-trial missing-file notes
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_write:
            rows_b, t_b = bench_batched(args, work)
            rows_n, t_n = bench_naive(args, work)
            print("MLflow write path (SQLite, same records)")
            print(f"  {'path':30} {'rows':>7} {'seconds':>8} {'rows/s':>9}")
            for name, rows, t in (
                ("batched (log_batch)", rows_b, t_b),
                ("naive (log_metric)", rows_n, t_n),
            ):
                print(f"  {name:30} {rows:>7} {t:>8.2f} {rows / t:>9.0f}")
            print(f"  speed-up: {(rows_b / t_b) / (rows_n / t_n):.1f}x (target >= 10x)")
        if not args.skip_overhead:
            o = bench_overhead(args, work)
            print(
                f"\nOrchestration overhead ({o['trials']} trials x {args.epochs} epochs x "
                f"{args.epoch_seconds}s, concurrency {args.concurrency}, 2 CPUs)"
            )
            print(
                f"  finished {o['finished']}/{o['trials']}; makespan {o['makespan']:.1f}s, "
                f"ideal {o['ideal']:.1f}s, ratio {o['ratio']:.2f}x (target <= 1.3x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
