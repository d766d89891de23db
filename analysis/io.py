"""Load learning curves for the analysis: from an MLflow sweep or from a CSV/Parquet file.

Both paths end in the same tidy table (DESIGN.md, "Data contract"), one row per
(group, P, seed, epoch) with columns `common.names.CURVE_COLUMNS`:

    group       model|dataset|optimizer|wd=...|<norm>   (the norm is part of the group)
    P           dataset size; for perceptron runs alpha = P/N, so training and the
                theory table (which only knows alpha) share one axis
    seed        the unit of independence for the bootstrap
    epoch       logged epoch (for the theory group: position along the lambda grid)
    lambda      the chosen norm (`--norm`)
    test_error  epsilon

Speed: a finished trial stores its whole curve as one `curves.parquet` artifact, so we never
page through metric histories. When the artifact store is a local directory (the default
`mlruns/` next to `mlflow.db`) the files are read directly with pyarrow, in a thread pool;
otherwise each artifact is downloaded through MLflow, also in a thread pool.

MLflow is imported lazily, inside the loader, so `--curves` works without touching it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from common import names as N

THEORY_GROUP = "theory|fixed-norm perceptron"  # the e2e test looks for "theory" in the name
TRIAL_KINDS = (N.KIND_PERCEPTRON, N.KIND_DEEP)
REQUIRED_FILE_COLUMNS = ("P", "seed", "lambda", "test_error")
TIDY_NUMERIC = ["epoch", "lambda", "test_error"]  # what each run's curve contributes
RUN_THREADS = 8  # artifact reads are I/O bound and pyarrow releases the GIL


class InputError(ValueError):
    """Bad or missing input; the CLI prints the message as one line and exits with code 2."""


@dataclass
class Sweep:
    """What the report needs: the tidy curves plus, for perceptron sweeps, the theory tables."""

    name: str
    curves: pd.DataFrame
    kind: str  # perceptron | deep | mixed | file
    theory: pd.DataFrame | None = None  # theory.parquet as logged (common.names.THEORY_COLUMNS)
    theory_opt: pd.DataFrame | None = None  # theory_opt.parquet (alpha, lambda_opt, eps_opt, ...)
    source: dict = field(default_factory=dict)  # provenance, copied into results.json
    group_kinds: dict = field(default_factory=dict)  # group -> perceptron | deep | theory | file
    experiment_id: str | None = None
    tracking_uri: str | None = None


# --- file input ----------------------------------------------------------------------------


def load_curves_file(path: str | os.PathLike) -> Sweep:
    """Read `group?, P, seed, lambda, test_error, epoch?` from a .csv or .parquet file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"curves file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise InputError(f"curves file must be .csv or .parquet, got {path.name}")
    try:
        df = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as err:  # pandas/pyarrow raise many types for one cause: unreadable
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        kind = "CSV" if suffix == ".csv" else "Parquet"
        raise InputError(f"{path.name}: not a readable {kind} file ({first})") from None
    if len(df) == 0:
        raise InputError(f"{path.name}: no rows")
    missing = [c for c in REQUIRED_FILE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"{path.name} lacks column(s) {', '.join(missing)}; "
            f"need {', '.join(REQUIRED_FILE_COLUMNS)} (group and epoch optional)"
        )
    if "group" not in df.columns:
        df["group"] = path.stem  # one group, named after the file
    if "epoch" not in df.columns:
        # Without epochs, the row order within a (group, P, seed) curve is the training order.
        df["epoch"] = df.groupby(["group", "P", "seed"], sort=False).cumcount()
    curves = tidy(df, where=path.name)
    source = {"type": "file", "path": str(path.resolve()), "rows": len(curves)}
    kinds = dict.fromkeys(curves["group"].unique(), "file")
    return Sweep(name=path.stem, curves=curves, kind="file", source=source, group_kinds=kinds)


def _at(df: pd.DataFrame, bad) -> str:
    """Where the first bad row is: its group and P (as the file gives them)."""
    row = df[np.asarray(bad)].iloc[0]
    return f"(group {row['group']}, P={row['P']})"


def tidy(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Coerce to the tidy schema; refuse non-numeric or empty data with a clear message."""
    out = df.loc[:, list(N.CURVE_COLUMNS)].copy()
    # A categorical group: 3 million repeated strings cost seconds to build and compare.
    if not isinstance(out["group"].dtype, pd.CategoricalDtype):
        out["group"] = out["group"].astype(str).astype("category")
    for col in ("P", "seed", "epoch", "lambda", "test_error"):
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna() & out[col].notna()
        if bad.any():
            raise InputError(
                f"{where}: column {col} has non-numeric values, e.g. {out[col][bad].iloc[0]!r}"
                f" {_at(out, bad)}"
            )
        out[col] = values
    seed = out["seed"].to_numpy(float)
    bad = ~np.isfinite(seed) | (seed != np.round(seed))
    if bad.any():
        raise InputError(
            f"{where}: column seed needs whole numbers, has {seed[bad][0]} {_at(out, bad)}"
        )
    # NaNs, zeros and negatives in lambda/test_error are kept: the fit drops and flags them per
    # group and P instead of hiding them; only a table with nothing usable is refused here.
    lam, eps, P = (out[c].to_numpy(float) for c in ("lambda", "test_error", "P"))
    usable = np.isfinite(lam) & np.isfinite(eps) & np.isfinite(P)
    if not usable.any():
        raise InputError(f"{where}: no rows with finite P, lambda and test_error")
    if not (usable & (lam > 0) & (eps > 0) & (P > 0)).any():
        raise InputError(
            f"{where}: no rows with P, lambda and test_error > 0 (log scales need them)"
        )
    out["seed"] = out["seed"].astype(np.int64)
    return out.sort_values(["group", "P", "seed", "epoch"], kind="stable").reset_index(drop=True)


# --- MLflow input --------------------------------------------------------------------------


def last_sweep(cwd: Path | None = None):
    """The sweep this directory ran last, by the sweep's own record (common.last_sweep), or
    None. The record's module may be absent on older trees: then MLflow's latest decides."""
    try:
        from common.last_sweep import read_last_sweep
    except ImportError:
        return None
    try:
        return read_last_sweep(cwd)
    except ValueError as err:  # a record that is not one (LastSweepError): say so, exit 2
        raise InputError(f"{err} (pass --experiment NAME, or remove the file)") from None


def choose_experiment(experiment: str | None, uri: str, cwd: Path | None = None):
    """(experiment name or None, why) for the report: the name given; else the last sweep
    recorded in this directory if it wrote to the store we read; else None (MLflow's latest).

    The store itself always follows the one rule (common.names.resolve_tracking_uri); a record
    of a sweep that wrote elsewhere is named in `why` instead of being followed silently."""
    if experiment is not None:
        return experiment, f"experiment {experiment!r} (--experiment)"
    record = last_sweep(cwd)
    if record is None:
        return None, "the latest experiment in the store (no sweep recorded in this directory)"
    if record.tracking_uri == uri:
        return record.experiment, (
            f"experiment {record.experiment!r}, the sweep {record.name!r} this directory ran "
            f"last (finished {record.finished_at})"
        )
    return None, (
        f"the latest experiment in the store: this directory's last sweep {record.name!r} "
        f"wrote to {record.tracking_uri} (pass --tracking-uri {record.tracking_uri} for it)"
    )


def check_store_exists(uri: str) -> None:
    """Refuse a local store that does not exist yet (MLflow would silently create an empty one)."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        db = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else parsed.path
        if db and db != ":memory:" and not Path(db).is_file():
            raise InputError(
                f"no MLflow store at {Path(db).resolve()}: run `python -m orchestrator.sweep` "
                "first (or pass --tracking-uri / --curves FILE)"
            )
    elif parsed.scheme in ("", "file") and not Path(unquote(parsed.path)).exists():
        raise InputError(
            f"no MLflow store at {uri}: run `python -m orchestrator.sweep` first "
            "(or pass --tracking-uri / --curves FILE)"
        )


def load_mlflow(
    experiment: str | None = None,
    tracking_uri: str | None = None,
    norm: str | None = None,
    progress: bool = False,
) -> Sweep:
    """Load a sweep's curves (and theory tables) from MLflow: the named experiment, else the
    sweep this directory ran last (choose_experiment), else the latest experiment."""
    uri = N.resolve_tracking_uri(tracking_uri)
    check_store_exists(uri)
    experiment, why = choose_experiment(experiment, uri)
    if progress:
        print(f"[analysis.report] reading MLflow store {uri}: {why}", file=sys.stderr, flush=True)
    from mlflow import MlflowClient  # lazy: analysis must import without MLflow's start-up cost

    client = MlflowClient(tracking_uri=uri)
    exp = _find_experiment(client, experiment, uri)
    runs = _search_all_runs(client, exp.experiment_id)
    trials = [r for r in runs if r.data.tags.get(N.TAG_KIND) in TRIAL_KINDS]
    if not trials:
        raise InputError(
            f"experiment {exp.name!r} has no perceptron/deep trial runs yet: "
            "run `python -m orchestrator.sweep` first"
        )
    trials, n_dupes = _drop_duplicate_trials(trials)
    curves, n_missing = _load_trial_curves(client, trials, norm, progress)
    theory, theory_opt = _load_theory(client, runs)
    if theory is not None:
        curves = pd.concat([curves, theory_curves(theory)], ignore_index=True)
    kinds = {r.data.tags[N.TAG_KIND] for r in trials}
    group_kinds = {_run_meta(r, norm)["group"]: r.data.tags[N.TAG_KIND] for r in trials}
    if theory is not None:
        group_kinds[THEORY_GROUP] = N.KIND_THEORY
    source = {
        "type": "mlflow",
        "tracking_uri": uri,
        "experiment": exp.name,
        "experiment_id": exp.experiment_id,
        "chosen": why,
        "trial_runs": len(trials),
        "runs_without_curves": n_missing,
        "duplicate_trials_dropped": n_dupes,
        "theory": theory is not None,
        "norm": norm or f"{N.NORM_SPECTRAL_COMPLEXITY} (deep), {N.NORM_PERCEPTRON} (perceptron)",
    }
    return Sweep(
        name=exp.name,
        curves=tidy(curves, where=f"experiment {exp.name!r}"),
        kind=kinds.pop() if len(kinds) == 1 else "mixed",
        theory=theory,
        theory_opt=theory_opt,
        source=source,
        experiment_id=exp.experiment_id,
        tracking_uri=uri,
        group_kinds=group_kinds,
    )


def _find_experiment(client, name: str | None, uri: str):
    if name is not None:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            known = [e.name for e in client.search_experiments() if e.name != "Default"]
            hint = f"known: {', '.join(known)}" if known else "no sweeps yet"
            raise InputError(f"unknown experiment {name!r} in {uri} ({hint})")
        return exp
    # The latest sweep: the most recently created experiment that holds trial runs.
    for exp in _pages(client.search_experiments, order_by=["creation_time DESC"]):
        for kind in TRIAL_KINDS:
            hit = client.search_runs(
                [exp.experiment_id], f"tags.{N.TAG_KIND} = '{kind}'", max_results=1
            )
            if hit:
                return exp
    raise InputError(f"no sweep in {uri} yet: run `python -m orchestrator.sweep` first")


def _pages(search, *args, **kwargs):
    """Every item of a paged MLflow search, in order."""
    token = None
    while True:
        page = search(*args, max_results=1000, page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def _search_all_runs(client, experiment_id: str) -> list:
    # Filtering by kind happens in Python: MLflow's search grammar has no IN for tags.
    return list(_pages(client.search_runs, [experiment_id]))


def _drop_duplicate_trials(trials: list) -> tuple[list, int]:
    """Keep the latest run per trial_id: two runs of one trial would look like one odd seed."""
    latest: dict[str, object] = {}
    for run in trials:
        key = run.data.tags.get(N.TAG_TRIAL_ID) or run.info.run_id
        if key not in latest or run.info.start_time > latest[key].info.start_time:
            latest[key] = run
    return list(latest.values()), len(trials) - len(latest)


def group_name(tags: dict, norm: str, params: dict | None = None) -> str:
    """The paper's groups, model x dataset x optimizer x weight decay, plus the norm; trials
    on noisy labels (param label_noise > 0) form groups of their own per noise level."""
    get = tags.get
    name = (
        f"{get(N.TAG_MODEL, '?')}|{get(N.TAG_DATASET, '?')}|{get(N.TAG_OPTIMIZER, '?')}"
        f"|wd={get(N.TAG_WEIGHT_DECAY, '?')}"
    )
    noise = (params or {}).get("label_noise")
    if noise is not None and float(noise) != 0.0:
        name += f"|label_noise={float(noise):g}"
    loss = (params or {}).get("loss")  # issue 10: the App. C MSE perceptron is its own group
    if loss not in (None, "None", "logistic"):
        name += f"|loss={loss}"
    return f"{name}|{norm}"


def _run_meta(run, norm: str | None) -> dict:
    """Group, P (alpha for perceptrons), seed and the norm column of one trial run."""
    tags, params = run.data.tags, run.data.params
    kind = tags[N.TAG_KIND]
    norm_col = norm or (
        N.NORM_PERCEPTRON if kind == N.KIND_PERCEPTRON else N.NORM_SPECTRAL_COMPLEXITY
    )
    try:
        if kind == N.KIND_PERCEPTRON:
            # alpha = P/N puts training on the theory's axis (the theory knows only alpha).
            P = (
                float(params["alpha"])
                if "alpha" in params
                else float(tags[N.TAG_P]) / float(params["N"])
            )
        else:
            P = float(tags.get(N.TAG_P, params.get("P")))
        seed = int(float(tags.get(N.TAG_SEED, params.get("seed"))))
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(
            f"run {run.info.run_id} lacks a usable P/alpha or seed tag ({err})"
        ) from None
    group = group_name(tags, norm_col, params)
    return {"group": group, "P": P, "seed": seed, "norm": norm_col}


def local_path(artifact_uri: str) -> Path | None:
    """The directory behind a local artifact URI (plain path or file://), else None."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(unquote(parsed.path) if parsed.scheme == "file" else artifact_uri)
    return None


def _read_artifact(client, run, name: str, columns: list[str] | None, tmp: str) -> pa.Table | None:
    """One run's parquet artifact: a direct read when local, else a download. None if absent."""
    base = local_path(run.info.artifact_uri)
    if base is not None:
        path = base / name
        if not path.is_file():
            return None
    else:
        from mlflow.exceptions import MlflowException

        try:
            path = client.download_artifacts(
                run.info.run_id, name, os.path.join(tmp, run.info.run_id)
            )
        except (MlflowException, OSError):
            return None
    try:
        return pq.read_table(path, columns=columns)
    except (KeyError, ValueError) as err:  # pyarrow: a requested column is not in the file
        available = pq.read_schema(path).names
        raise InputError(
            f"run {run.info.run_id}: {name} lacks {columns} ({err.__class__.__name__}); "
            f"it has {', '.join(available)} (choose one with --norm)"
        ) from None


def _load_trial_curves(
    client, trials: list, norm: str | None, progress: bool
) -> tuple[pd.DataFrame, int]:
    metas = [_run_meta(r, norm) for r in trials]

    def read(i: int) -> pa.Table | None:
        cols = [N.EPOCH, metas[i]["norm"], N.TEST_ERROR]
        table = _read_artifact(client, trials[i], N.CURVES_ARTIFACT, cols, tmp)
        return None if table is None else table.select(cols).rename_columns(TIDY_NUMERIC)

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(RUN_THREADS) as pool:
        bar = tqdm(total=len(trials), desc="loading runs", unit="run", disable=not progress)
        tables = []
        for table in pool.map(read, range(len(trials))):
            tables.append(table)
            bar.update()
        bar.close()
    keep = [i for i, t in enumerate(tables) if t is not None and t.num_rows]
    if not keep:
        raise InputError(
            "no trial run has a curves.parquet artifact yet (are the trials finished?)"
        )
    # One Arrow concatenation and per-run labels by np.repeat: building thousands of small
    # DataFrames would cost more than reading the files.
    lengths = np.array([tables[i].num_rows for i in keep])
    groups = sorted({metas[i]["group"] for i in keep})
    for i in keep:
        metas[i]["code"] = groups.index(metas[i]["group"])
    data = pa.concat_tables([tables[i] for i in keep], promote_options="permissive")
    label = lambda key, dtype: np.repeat(np.array([metas[i][key] for i in keep], dtype), lengths)  # noqa: E731
    curves = pd.DataFrame(
        {
            "group": pd.Categorical.from_codes(label("code", np.int64), groups),
            "P": label("P", float),
            "seed": label("seed", np.int64),
            **{c: data.column(c).to_numpy().astype(float) for c in TIDY_NUMERIC},
        }
    )
    return curves, len(trials) - len(keep)


def _load_theory(client, runs: list) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The latest kind=theory run's theory.parquet and theory_opt.parquet (either may be None)."""
    theory_runs = [r for r in runs if r.data.tags.get(N.TAG_KIND) == N.KIND_THEORY]
    if not theory_runs:
        return None, None
    run = max(theory_runs, key=lambda r: r.info.start_time)
    with tempfile.TemporaryDirectory() as tmp:
        theory = _read_artifact(client, run, N.THEORY_ARTIFACT, None, tmp)
        theory_opt = _read_artifact(client, run, N.THEORY_OPT_ARTIFACT, None, tmp)
    return tuple(None if t is None else t.to_pandas() for t in (theory, theory_opt))


def theory_curves(theory: pd.DataFrame) -> pd.DataFrame:
    """The fixed-norm theory as one more group: P = alpha, one 'seed', converged points only."""
    missing = [c for c in ("alpha", "lambda", "epsilon") if c not in theory.columns]
    if missing:
        raise InputError(f"{N.THEORY_ARTIFACT} lacks column(s) {', '.join(missing)}")
    t = theory
    if "converged" in t.columns:
        t = t[t["converged"].astype(bool)]
    t = t.sort_values(["alpha", "lambda"])
    return pd.DataFrame(
        {
            "group": THEORY_GROUP,
            "P": t["alpha"].to_numpy(float),
            "seed": 0,
            # The theory has no time; the position along the lambda grid orders the curve.
            "epoch": t.groupby("alpha").cumcount().to_numpy(float),
            "lambda": t["lambda"].to_numpy(float),
            "test_error": t["epsilon"].to_numpy(float),
        }
    )
