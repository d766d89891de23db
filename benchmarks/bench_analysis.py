"""Speed of the analysis on a paper-scale synthetic sweep (issue 5, "Speed").

    python benchmarks/bench_analysis.py                 # 3,000 runs x 1,000 epochs, 2,000 resamples
    python benchmarks/bench_analysis.py --quick         # 60 runs x 200 epochs, 200 resamples
    python benchmarks/bench_analysis.py --file-only --against /work/main
                                  # report from the Parquet file only (no MLflow store build),
                                  # this checkout and another one side by side, alternating

Builds once (cached under --cache, default $TMPDIR/bench_analysis_<config>) a real MLflow sqlite
store the way the orchestrator writes one: one run per trial with the trial tags, per-epoch
metrics (test_error and the norm, step=epoch, in log_batch calls of at most 1000), and a
curves.parquet artifact; plus the same tidy table as one Parquet file. Then prints:

- load from MLflow with analysis.io (search + direct parquet reads) vs the naive path, one
  get_metric_history call per run and metric (timed on --naive-runs runs, scaled linearly);
- the full report (fit with bootstrap, figures, report files) from MLflow and from Parquet.

Targets (issue 5): full report within 2 minutes on the 2-core dev machine; loading >= 10x
faster than the naive path. Curves come from analysis.synth (Eq. 2-4 with known exponents).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from analysis import io
from analysis.fit import Choices
from analysis.report import run_report
from analysis.synth import make_sweep
from common import names as N

GROUPS = (("cnn", "mnist"), ("resnet", "cifar10"), ("vit", "cifar100"))
HISTORY_TAG = "bench_full_history"  # benchmark-only tag: this run has per-epoch metrics


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3000, help="trial runs (split over 3 groups x 10 P)")
    p.add_argument("--epochs", type=int, default=1000, help="logged epochs per run")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--naive-runs", type=int, default=60, help="runs timed on the naive path")
    p.add_argument("--n-jobs", type=int, default=2, help="bootstrap threads")
    p.add_argument("--cache", help="store directory (built once, reused)")
    p.add_argument("--quick", action="store_true", help="60 runs x 200 epochs, 200 resamples")
    p.add_argument("--file-only", action="store_true", help="time the report from Parquet only")
    p.add_argument("--against", help="with --file-only: another checkout, timed alternately")
    p.add_argument("--repeats", type=int, default=2, help="with --against: alternations")
    args = p.parse_args()
    if args.quick:
        args.runs, args.epochs, args.n_boot, args.naive_runs = 60, 200, 200, 20
    if args.runs < 3 * 10 * 2 or args.epochs < 10 or args.n_boot < 0:
        p.error("need --runs >= 60 (3 groups x 10 P x 2 seeds), --epochs >= 10, --n-boot >= 0")
    return args


def tidy_sweep(runs: int, epochs: int) -> pd.DataFrame:
    """3 groups x 10 P values x (runs / 30) seeds, each curve `epochs` points long."""
    seeds = runs // (len(GROUPS) * 10)
    frames = []
    for i, (model, dataset) in enumerate(GROUPS):
        group = f"{model}|{dataset}|adam|wd=0.0|{N.NORM_SPECTRAL_COMPLEXITY}"
        frames.append(
            make_sweep(
                P_list=[1000.0 * 2**j for j in range(10)],
                seeds_per_P=seeds,
                gamma1=0.3 + 0.2 * i,
                n_points=epochs,
                group=group,
                seed=i,
            )
        )
    return pd.concat(frames, ignore_index=True)


def build_store(root: Path, tidy: pd.DataFrame, history_runs: int) -> str:
    """Write the sweep into root/mlflow.db as the orchestrator would (batched client calls).

    Every run gets its tags, params, final metrics and curves.parquet. The full per-epoch
    metric history (what the naive path reads) is logged for the first `history_runs` runs
    only: on this machine sqlite takes ~0.5 s per 1000-metric log_batch, i.e. hours for all
    3,000 runs. A smaller metric table can only make the naive path faster (its lookups scan
    less), so the measured speed-up is a lower bound.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    from tqdm import tqdm

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("bench-sweep", str(root / "mlruns"))
    scratch = root / "scratch"
    scratch.mkdir(exist_ok=True)
    trials = tidy.groupby(["group", "P", "seed"], sort=False)
    for i, ((group, P, seed), df) in enumerate(tqdm(trials, desc="building store", unit="run")):
        model, dataset, optimizer, wd, _ = group.split("|")
        tags = {
            N.TAG_SWEEP: "bench-sweep",
            N.TAG_TRIAL_ID: f"{group}-{P:g}-{seed}",
            N.TAG_KIND: N.KIND_DEEP,
            N.TAG_MODEL: model,
            N.TAG_DATASET: dataset,
            N.TAG_P: f"{P:g}",
            N.TAG_SEED: str(seed),
            N.TAG_OPTIMIZER: optimizer,
            N.TAG_WEIGHT_DECAY: wd.removeprefix("wd="),
            HISTORY_TAG: str(int(i < history_runs)),
        }
        rid = client.create_run(exp, tags=tags).info.run_id
        epoch = (df["epoch"].to_numpy() + 1).astype(int)
        steps = slice(None) if i < history_runs else slice(-1, None)  # all epochs, or the last
        metrics = [
            Metric(key, float(v), 0, int(t))
            for key, col in ((N.TEST_ERROR, "test_error"), (N.NORM_SPECTRAL_COMPLEXITY, "lambda"))
            for v, t in zip(df[col].to_numpy()[steps], epoch[steps], strict=True)
        ]
        params = [Param("P", f"{P:g}"), Param("seed", str(seed)), Param("model", model)]
        for j in range(0, len(metrics), 1000):
            client.log_batch(rid, metrics=metrics[j : j + 1000], params=params if j == 0 else [])
        curves = pd.DataFrame(
            {
                N.EPOCH: epoch,
                N.TEST_ERROR: df["test_error"].to_numpy(),
                N.NORM_SPECTRAL_COMPLEXITY: df["lambda"].to_numpy(),
                N.TRAIN_ERROR: 0.0,
                N.TRAIN_LOSS: 0.0,
                N.TEST_LOSS: 0.0,
            }
        )
        curves.to_parquet(scratch / N.CURVES_ARTIFACT)
        client.log_artifact(rid, str(scratch / N.CURVES_ARTIFACT))
        client.set_terminated(rid)
    return uri


def naive_load(uri: str) -> tuple[float, int]:
    """Seconds for the metric-history path on the runs that have a full history, and their count.

    Search, then one get_metric_history call per run and metric, then one table.
    """
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    t0 = time.perf_counter()
    exp = client.get_experiment_by_name("bench-sweep")
    runs = client.search_runs([exp.experiment_id], f"tags.{HISTORY_TAG} = '1'", max_results=1000)
    frames = []
    for run in runs:
        cols = {}
        for key in (N.TEST_ERROR, N.NORM_SPECTRAL_COMPLEXITY):
            hist = client.get_metric_history(run.info.run_id, key)
            cols[key] = pd.Series({m.step: m.value for m in hist})
        frames.append(pd.DataFrame(cols).assign(run=run.info.run_id))
    pd.concat(frames)
    return time.perf_counter() - t0, len(runs)


REPORT_CODE = """
import sys, time
from pathlib import Path
from analysis import io
from analysis.fit import Choices
from analysis.report import run_report
t0 = time.perf_counter()
sweep = io.load_curves_file(sys.argv[1])
run_report(sweep, Choices(n_boot=int(sys.argv[3]), n_jobs=int(sys.argv[4])), Path(sys.argv[2]),
           progress=False)
print(time.perf_counter() - t0)
"""


def file_only(args) -> int:
    """Full report (load + fit + figures + files) from one Parquet file, in a fresh process per
    checkout, alternating so both see the same machine load; the best of --repeats each."""
    import subprocess

    path = Path(tempfile.gettempdir()) / f"bench_analysis_{args.runs}x{args.epochs}.parquet"
    if not path.exists():
        tidy_sweep(args.runs, args.epochs).to_parquet(path)
    trees = {"this checkout": Path(__file__).resolve().parents[1]}
    if args.against:
        trees["--against " + args.against] = Path(args.against).resolve()
    best = dict.fromkeys(trees, float("inf"))
    for _ in range(args.repeats):
        for name, tree in trees.items():
            with tempfile.TemporaryDirectory() as out:
                env = {**os.environ, "PYTHONPATH": str(tree)}
                cmd = [sys.executable, "-c", REPORT_CODE, str(path), out + "/r"]
                cmd += [str(args.n_boot), str(args.n_jobs)]
                r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                best[name] = min(best[name], float(r.stdout.strip().splitlines()[-1]))
    rows = [
        (
            "sweep",
            f"{args.runs} runs x {args.epochs} epochs, {args.n_boot} resamples, "
            f"{args.n_jobs} threads, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        )
    ]
    rows += [(f"report from Parquet, {k}", f"{v:8.1f} s") for k, v in best.items()]
    if len(best) == 2:
        a, b = best.values()
        rows.append(("ratio this / other", f"{a / b:8.2f}"))
    rows.append(("target: full report", "<= 120 s"))  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def main() -> int:
    args = parse_args()
    if args.file_only:
        return file_only(args)
    tag = f"{args.runs}x{args.epochs}h{args.naive_runs}"
    root = Path(args.cache or Path(tempfile.gettempdir()) / f"bench_analysis_{tag}")
    done = root / "complete.json"
    if not done.exists():
        root.mkdir(parents=True, exist_ok=True)
        tidy = tidy_sweep(args.runs, args.epochs)
        t0 = time.perf_counter()
        build_store(root, tidy, args.naive_runs)
        tidy.to_parquet(root / "curves.parquet")
        done.write_text(json.dumps({"runs": args.runs, "epochs": args.epochs,
                                    "build_s": time.perf_counter() - t0}))  # fmt: skip
    uri = f"sqlite:///{root / 'mlflow.db'}"
    build_s = json.loads(done.read_text())["build_s"]
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    t0 = time.perf_counter()
    sweep = io.load_mlflow("bench-sweep", tracking_uri=uri)
    t_load = time.perf_counter() - t0
    n_runs = sweep.source["trial_runs"]
    t_naive_sub, n_sub = naive_load(uri)
    t_naive = t_naive_sub * n_runs / n_sub

    choices = Choices(n_boot=args.n_boot, n_jobs=args.n_jobs)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run_report(sweep, choices, Path(out) / "mlflow", progress=False)
        t_report = time.perf_counter() - t0
        t0 = time.perf_counter()
        fsweep = io.load_curves_file(root / "curves.parquet")
        t_load_file = time.perf_counter() - t0
        doc = run_report(fsweep, choices, Path(out) / "file", progress=False)
        t_report_file = time.perf_counter() - t0 - t_load_file
    fit_s = doc["config"]["fit_seconds"]

    rows = [
        ("sweep", f"{n_runs} runs x {args.epochs} epochs, {len(sweep.curves):,} rows, "
                  f"{args.n_boot} resamples, {os.cpu_count()} CPUs"),
        ("store build (once, cached)", f"{build_s:8.1f} s"),
        ("load, analysis.io (MLflow)", f"{t_load:8.2f} s"),
        (f"load, naive get_metric_history (x{n_runs / n_sub:.0f} from {n_sub} runs)",
         f"{t_naive:8.2f} s"),
        ("load speed-up vs naive", f"{t_naive / t_load:8.1f} x   (target >= 10 x)"),
        ("load, Parquet file", f"{t_load_file:8.2f} s"),
        ("report from MLflow (load + fit + figures + files)", f"{t_load + t_report:8.1f} s"),
        ("report from Parquet (load + fit + figures + files)",
         f"{t_load_file + t_report_file:8.1f} s   (fit+bootstrap {fit_s:.1f} s)"),
        ("target: full report", "<= 120 s"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
