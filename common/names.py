"""The data contract's names, defined once (DESIGN.md, "Data contract").

Trainers write records with these keys, the orchestrator logs them to MLflow under the same
names, and the analysis reads them back. Importing this module must stay free of torch, Ray
and MLflow so that `analysis` runs on a laptop without them.
"""

# --- per-logged-epoch record keys (one flat dict of floats) --------------------------------
EPOCH = "epoch"
TEST_ERROR = "test_error"
TEST_LOSS = "test_loss"
TRAIN_ERROR = "train_error"
TRAIN_LOSS = "train_loss"

# deep nets (Eq. 6 and Appendix J)
NORM_SPECTRAL_COMPLEXITY = "norm/spectral_complexity"
NORM_L1 = "norm/l1"
NORM_FROBENIUS = "norm/frobenius"
NORM_GROUP21 = "norm/group21"
NORM_SPECTRAL_PRODUCT = "norm/spectral_product"
DEEP_NORMS = (
    NORM_SPECTRAL_COMPLEXITY,
    NORM_L1,
    NORM_FROBENIUS,
    NORM_GROUP21,
    NORM_SPECTRAL_PRODUCT,
)

# deep nets, the same five as the authors' code computes them (trainers/norms_paper.py)
NORM_PAPER_SPECTRAL_COMPLEXITY = "norm/paper/spectral_complexity"
NORM_PAPER_L1 = "norm/paper/l1"
NORM_PAPER_FROBENIUS = "norm/paper/frobenius"
NORM_PAPER_GROUP21 = "norm/paper/group21"
NORM_PAPER_SPECTRAL_PRODUCT = "norm/paper/spectral_product"
PAPER_NORMS = (
    NORM_PAPER_SPECTRAL_COMPLEXITY,
    NORM_PAPER_L1,
    NORM_PAPER_FROBENIUS,
    NORM_PAPER_GROUP21,
    NORM_PAPER_SPECTRAL_PRODUCT,
)

# perceptron: lambda = |w| / sqrt(N), overlap R, test_error = arccos(R) / pi
NORM_PERCEPTRON = "norm"
OVERLAP = "overlap"

# the one string of a record, on the last record of every curve: how the trial ended
# ("<code>: <detail>", trainers/status.py); also a tag of the trial's MLflow run
STOP_REASON = "stop_reason"

# --- MLflow tags ---------------------------------------------------------------------------
TAG_SWEEP = "sweep"
TAG_TRIAL_ID = "trial_id"
TAG_KIND = "kind"  # perceptron | deep | theory | report
TAG_MODEL = "model"
TAG_DATASET = "dataset"
TAG_P = "P"
TAG_SEED = "seed"
TAG_OPTIMIZER = "optimizer"
TAG_WEIGHT_DECAY = "weight_decay"
TRIAL_TAGS = (
    TAG_SWEEP,
    TAG_TRIAL_ID,
    TAG_KIND,
    TAG_MODEL,
    TAG_DATASET,
    TAG_P,
    TAG_SEED,
    TAG_OPTIMIZER,
    TAG_WEIGHT_DECAY,
)

# Tune's own (random) trial id; TAG_TRIAL_ID is the orchestrator's deterministic trial key,
# stable across retries, resumes and re-launches of the same sweep.
TAG_TUNE_TRIAL_ID = "tune_trial_id"

KIND_PERCEPTRON = "perceptron"
KIND_DEEP = "deep"
KIND_THEORY = "theory"
KIND_REPORT = "report"
KIND_SWEEP = "sweep"  # the sweep's parent run; its trials (and theory run) are its children

# MLflow's own tags: nesting in the UI, the source commit, and the experiment's type, which
# MLflow 3's UI reads to open an experiment as model training rather than as GenAI (traces).
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
SWEEP_RUN_ID = "sweep"  # the parent run's TAG_TRIAL_ID (trial keys are 12 hex digits)

# --- MLflow artifacts ----------------------------------------------------------------------
CURVES_ARTIFACT = "curves.parquet"  # one trial's whole curve, one row per logged epoch
THEORY_ARTIFACT = "theory.parquet"  # alpha, lambda, R, x, epsilon, converged, residual, ...
THEORY_OPT_ARTIFACT = "theory_opt.parquet"  # alpha, lambda_opt, eps_opt, baselines

# --- theory table columns ------------------------------------------------------------------
THEORY_COLUMNS = (
    "alpha",
    "lambda",
    "R",
    "x",
    "epsilon",
    "converged",
    "residual",
    "eps_hebb",
    "eps_bayes",
    "eps_maxstab",
)

# optimum table (theory.optimum_table): one row per alpha
THEORY_OPT_COLUMNS = ("alpha", "lambda_opt", "eps_opt", "eps_hebb", "eps_bayes", "eps_maxstab")

# --- analysis input (tidy table) -----------------------------------------------------------
CURVE_COLUMNS = ("group", "P", "seed", "epoch", "lambda", "test_error")

# --- defaults ------------------------------------------------------------------------------
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow's own default store in the cwd
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own variable; cluster.yaml sets it


def resolve_tracking_uri(configured: str | None) -> str:
    """The one rule for the MLflow store: the value given, else $MLFLOW_TRACKING_URI, else
    MLflow's default SQLite file in the working directory."""
    import os

    return configured or os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: for a SQLite store, an `mlruns` folder
    beside the database file (MLflow's own default is ./mlruns in whatever directory the
    process runs in, which parts a store from its curves when the file is elsewhere); for
    any other store (a tracking server) None, the server's choice."""
    import re
    from pathlib import Path

    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri[len(prefix) :] in ("", ":memory:"):
        return None
    db = Path(tracking_uri[len(prefix) :]).expanduser().resolve()
    return str(db.parent / "mlruns" / re.sub(r"[^A-Za-z0-9._-]", "_", experiment))
