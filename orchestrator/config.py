"""Sweep configuration: a YAML preset, validated by pydantic, expanded into trial configs.

A sweep is a list of *blocks*; each block is a Cartesian product
models x datasets x (P values | alpha values x N) x seeds x optimizers x weight decays.
Blocks exist because the paper's grid is not one product: Appendix G gives different P values
per dataset/model. Trial fields not on a grid axis come from, in increasing precedence,
`trial` (sweep-wide) < `per_model[model]` < the block's own `trial`.

Every error names its field (pydantic's location, or "blocks.<i>.<axis>") so the CLI can
print one clear line and exit 2 before Ray starts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common import names as N
from common.cli import SetError, apply_sets, set_dotted
from trainers import TrialConfig

PRESETS_PACKAGE = "orchestrator.presets"  # NAME.yaml files shipped inside the package
DEFAULT_PRESET = "perceptron"


class ConfigError(ValueError):
    """Bad sweep input; the message is one line that names the field or the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Span(_Strict):
    """A range of values: linear `start..stop` (inclusive) by `step`, or `num` log-spaced."""

    start: float
    stop: float
    step: float | None = Field(default=None, gt=0)
    num: int | None = Field(default=None, gt=0)
    log: bool = False

    def values(self) -> list[float]:
        if self.log:
            if self.num is None or self.start <= 0 or self.stop <= 0:
                raise ValueError("log span needs num and positive start/stop")
            if self.num == 1:
                return [self.start]
            r = math.log(self.stop / self.start) / (self.num - 1)
            return [self.start * math.exp(r * i) for i in range(self.num)]
        if self.step is None:
            raise ValueError("linear span needs step (or log: true with num)")
        n = int(math.floor((self.stop - self.start) / self.step + 1e-9)) + 1
        return [self.start + i * self.step for i in range(max(n, 0))]


Values = list[float] | Span


def _expand(v: Values) -> list[float]:
    return list(v) if isinstance(v, list) else v.values()


class Block(_Strict):
    """One Cartesian product of the grid."""

    kind: Literal["perceptron", "deep"] = "deep"
    models: list[str] = Field(default_factory=lambda: ["cnn"])
    datasets: list[str] = Field(default_factory=lambda: ["digits"])
    P: Values | None = None  # deep nets: training-set sizes
    alpha: Values | None = None  # perceptron: P/N
    N: list[int] = Field(default_factory=lambda: [1000])  # perceptron input dimension
    seeds: list[int] | Span | None = None  # None: the sweep-wide seeds
    optimizers: list[str] | None = None  # None: from trial/per_model defaults
    weight_decays: list[float] | None = None
    trial: dict[str, Any] = Field(default_factory=dict)


class Resources(_Strict):
    """Per-trial resources; see orchestrator/resources.py for the GPU fraction rule."""

    cpus_per_trial: float = Field(default=1.0, gt=0)
    # "auto": the rule in resources.gpu_fraction_rule where the cluster has GPUs, else CPU;
    # a number: that fraction for every deep-net trial (perceptrons always run on the CPU).
    gpu: Literal["auto"] | float = "auto"
    max_concurrent_trials: int | None = Field(default=None, gt=0)
    # Refuse trials no node can host before launch. Nodes are the live ones plus the node
    # types the autoscaler can launch (--cluster, or ~/ray_bootstrap_config.yaml on the head
    # of a `ray up` cluster; orchestrator/cluster.py), so a fresh cluster needs no opt-out.
    check_capacity: bool = True

    @field_validator("gpu")
    @classmethod
    def _divides_one(cls, g: Any) -> Any:
        if g == "auto":
            return g
        if g < 0:
            raise ValueError(f"gpu fraction must be >= 0, got {g}")
        if g == 0 or (g >= 1 and float(g).is_integer()):
            return g
        inv = 1.0 / g
        if g > 1 or abs(inv - round(inv)) > 1e-9:
            raise ValueError(f"gpu fraction {g} does not divide 1 (use 1, 1/2, 1/4, 1/8, ...)")
        return g


class TuneSettings(_Strict):
    storage_path: str = "ray_results"  # relative paths resolve against the cwd
    max_failures: int = Field(default=3, ge=0)  # retries of a failed trial, from its checkpoint
    # A trial checkpoints at a logged epoch once this many seconds passed since its last
    # checkpoint, and always at its last epoch (so the final checkpoint holds the whole
    # curve). 0 = at every logged epoch. A retry replays at most this much work; the
    # replayed epochs are not logged twice.
    checkpoint_seconds: float = Field(default=10.0, ge=0)
    # Tune snapshots its experiment state whenever a trial has made num_to_keep checkpoints
    # since the last snapshot (so that no state points at a deleted checkpoint); keeping a
    # few bounds disk use while keeping those forced snapshots rare.
    num_to_keep: int = Field(default=5, gt=0)
    reuse_actors: bool = True


class MlflowSettings(_Strict):
    # None: $MLFLOW_TRACKING_URI if set (cluster.yaml sets it on every node to the head's
    # server), else common.names.DEFAULT_TRACKING_URI (SQLite in the cwd); see tracking_uri()
    tracking_uri: str | None = None
    experiment: str | None = None  # None: the sweep name
    flush_seconds: float = Field(default=2.0, ge=0)  # max age of buffered metrics


class TheorySettings(_Strict):
    """The fixed-norm replica curves epsilon(alpha, lambda) logged next to perceptron sweeps."""

    enabled: bool = True
    alphas: Values = Field(default_factory=lambda: Span(start=1e3, stop=1e5, num=5, log=True))
    lambdas: Values = Field(default_factory=lambda: Span(start=1e-2, stop=1e6, num=81, log=True))

    @field_validator("alphas", "lambdas")
    @classmethod
    def _positive(cls, v: Values) -> Values:
        vals = _expand(v)
        if not vals or min(vals) <= 0:
            raise ValueError("must be a non-empty list of positive numbers")
        return v


class SweepConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    seeds: list[int] | Span = Field(default_factory=lambda: [0])
    blocks: list[Block] = Field(min_length=1)
    trial: dict[str, Any] = Field(default_factory=dict)
    per_model: dict[str, dict[str, Any]] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    tune: TuneSettings = Field(default_factory=TuneSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    theory: TheorySettings = Field(default_factory=TheorySettings)
    # seconds of one full GPU per training sample, per model (resources.py, cost model)
    cost_model: dict[str, float] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _one_directory_level(cls, name: str) -> str:
        # The name is a directory under tune.storage_path and under reports/: '..' or '.'
        # would put Tune state in the working directory and overwrite ./results.json.
        if name.strip(".") == "" or name.startswith("."):
            raise ValueError(f"{name!r} cannot be a directory name (must not start with '.')")
        return name

    def fingerprint(self) -> str:
        """Hash of what determines the trials; a restored sweep must match it."""
        grid = {"seeds": self.seeds, "blocks": self.blocks, "trial": self.trial}
        grid["per_model"] = self.per_model
        blob = json.dumps(_jsonable(grid), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def tracking_uri(cfg: SweepConfig) -> str:
    """The sweep's MLflow store: mlflow.tracking_uri, else the environment, else the default
    (common.names.resolve_tracking_uri, the rule the analysis follows too)."""
    return N.resolve_tracking_uri(cfg.mlflow.tracking_uri)


def _jsonable(x: Any) -> Any:
    if isinstance(x, BaseModel):
        return x.model_dump()
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


# -----------------------------------------------------------------------------
# Loading: YAML file or preset name, plus --set overrides


def preset_names() -> list[str]:
    """The presets shipped in the package (orchestrator/presets/NAME.yaml), sorted."""
    files = resources.files(PRESETS_PACKAGE).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def _source_text(source: str | None) -> tuple[str, str]:
    """(text, what to call it in messages) of a YAML file path or a preset name.

    A file wins over a preset of the same name (a directory does not); anything that names
    neither is refused with the list of presets (or, if it looks like a path, as a missing
    file).
    """
    path = Path(source) if source else None
    if path is not None and path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError:
            raise ConfigError(f"config: {path} is not UTF-8 text") from None
        except OSError as e:
            raise ConfigError(f"config: cannot read {path} ({e.strerror or e})") from None
    name = source or DEFAULT_PRESET
    if name in preset_names():
        text = resources.files(PRESETS_PACKAGE).joinpath(f"{name}.yaml").read_text("utf-8")
        return text, f"preset {name!r}"
    if path is not None and path.is_dir():
        raise ConfigError(f"config: {path} is a directory, not a YAML file")
    if "/" in name or os.sep in name or name.endswith((".yaml", ".yml", ".json")):
        raise ConfigError(f"config: file not found: {name}")
    raise ConfigError(
        f"config: {name!r} is neither a file nor a preset; presets: {', '.join(preset_names())}"
    )


def load_raw(source: str | None) -> dict[str, Any]:
    """Read a YAML file or a preset (default: DEFAULT_PRESET) with the safe loader."""
    text, what = _source_text(source)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config: malformed YAML in {what}{where}: {_first_line(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {what} must hold a mapping at top level")
    return data


def parse_config(data: dict[str, Any]) -> SweepConfig:
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None


def load_config(
    source: str | None = None,
    sets: list[str] | None = None,
    flags: dict[str, Any] | None = None,
) -> SweepConfig:
    """The validated sweep: a YAML file or preset, then the `--set KEY=VALUE` items (parsed
    by common.cli, as every CLI's), then the values of dedicated flags by dotted key
    (`{"mlflow.tracking_uri": ...}`; None = flag not given)."""
    data = load_raw(source)
    try:
        apply_sets(data, sets or [])
        for key, value in (flags or {}).items():
            if value is not None:
                set_dotted(data, key.split("."), value)
    except SetError as e:
        raise ConfigError(str(e)) from None
    cfg = parse_config(data)
    expand_trials(cfg)  # validates every trial (P range, types) now, before Ray starts
    return cfg


def _describe(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "list[")))
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    msg = err["msg"].removeprefix("Value error, ")
    return f"config: {loc}: {msg}{more}" if loc else f"config: {msg}{more}"


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


# -----------------------------------------------------------------------------
# Expansion into trials


def trial_key(params: dict[str, Any]) -> str:
    """Deterministic id of a trial from its config (not from Tune's random trial id).

    It keys the trial's MLflow run, so a retried, resumed or even re-launched trial finds its
    own run. data_root and device are left out: they depend on the machine, not the trial.
    """
    ident = {k: v for k, v in params.items() if k not in ("data_root", "device")}
    blob = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _axis(i: int, name: str, values: Any, cast: Any) -> list[Any]:
    try:
        out = [cast(v) for v in (values if isinstance(values, list) else values.values())]
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config: blocks.{i}.{name}: {_first_line(e)}") from None
    if not out:
        raise ConfigError(f"config: blocks.{i}.{name}: empty grid axis")
    return out


def _int_value(v: float) -> int:
    if not float(v).is_integer():
        raise ValueError(f"P must be an integer, got {v}")
    return int(v)


def expand_trials(cfg: SweepConfig) -> list[dict[str, Any]]:
    """All trials of the sweep as validated TrialConfig dumps (each with explicit seed)."""
    trials: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, b in enumerate(cfg.blocks):
        seeds = _axis(i, "seeds", b.seeds if b.seeds is not None else cfg.seeds, int)
        models = _axis(i, "models", b.models, str)
        datasets = _axis(i, "datasets", b.datasets, str)
        if b.kind == "perceptron":
            if b.alpha is None:
                raise ConfigError(f"config: blocks.{i}.alpha: required for kind=perceptron")
            sizes = [
                {"alpha": a, "N": n}
                for a in _axis(i, "alpha", b.alpha, float)
                for n in _axis(i, "N", b.N, int)
            ]
            models, datasets = ["perceptron"], ["teacher"]
        else:
            if b.P is None:
                raise ConfigError(f"config: blocks.{i}.P: required for kind=deep")
            sizes = [{"P": p} for p in _axis(i, "P", b.P, _int_value)]
        # None on an axis: the value comes from trial/per_model defaults instead
        opts = [None] if b.optimizers is None else _axis(i, "optimizers", b.optimizers, str)
        wds = [None]
        if b.weight_decays is not None:
            wds = _axis(i, "weight_decays", b.weight_decays, float)
        for model, dataset, size, opt, wd, seed in itertools.product(
            models, datasets, sizes, opts, wds, seeds
        ):
            params = {**cfg.trial, **cfg.per_model.get(model, {}), **b.trial}
            params.update(kind=b.kind, model=model, dataset=dataset, seed=seed, **size)
            if opt is not None:
                params["optimizer"] = opt
            if wd is not None:
                params["weight_decay"] = wd
            try:
                dump = TrialConfig(**params).model_dump(mode="json")
            except ValidationError as e:
                what = ", ".join(f"{k}={params[k]}" for k in ("model", "dataset", "seed"))
                size_s = ", ".join(f"{k}={v}" for k, v in size.items())
                raise ConfigError(f"{_describe(e)} [blocks.{i}: {what}, {size_s}]") from None
            key = trial_key(dump)
            if key in seen:
                raise ConfigError(f"config: blocks.{i}: duplicate trial {params}")
            seen.add(key)
            trials.append(dump)
    if not trials:
        raise ConfigError("config: blocks: the grid is empty")
    return trials


# -----------------------------------------------------------------------------
# What a trial is called, and which of its fields say anything about it

# TrialConfig fields that only one kind reads (the other kind's value is a default that the
# trainer ignores, so logging it would only list e.g. vit_depth on a perceptron run).
PERCEPTRON_ONLY = ("alpha", "N", "step_rule", "step_tol", "lambda_stop", "loss")
DEEP_ONLY = (
    "batch_size", "augment", "precision", "norms", "norm_conv", "label_noise", "weight_decay",
    "momentum",
)  # fmt: skip
# architecture knobs of the project's own nets (trainers/models), by field prefix
ARCH_PREFIX = {"cnn": "cnn_", "resnet": "resnet_", "vit": "vit_"}


def applicable_params(params: dict[str, Any]) -> dict[str, Any]:
    """The trial's fields that its kind and model read (what the MLflow run logs)."""
    own = ARCH_PREFIX.get(params["model"])  # paper-* nets are fixed: no knob applies

    def applies(k: str) -> bool:
        if params["kind"] == N.KIND_PERCEPTRON and k in DEEP_ONLY:
            return False
        if params["kind"] != N.KIND_PERCEPTRON and k in PERCEPTRON_ONLY:
            return False
        if k == "momentum" and params.get("optimizer") != "sgd":
            return False
        arch = next((p for p in ARCH_PREFIX.values() if k.startswith(p)), None)
        return arch is None or arch == own

    return {k: v for k, v in params.items() if applies(k)}


def base_name(params: dict[str, Any]) -> str:
    """`perceptron-a32-N256-s3` or `cnn-mnist-P1000-s3`: kind/model, size, seed."""
    if params["kind"] == N.KIND_PERCEPTRON:
        return f"perceptron-a{params['alpha']:g}-N{params['N']}-s{params['seed']}"
    return f"{params['model']}-{params['dataset']}-P{params['P']}-s{params['seed']}"


def trial_names(trials: list[dict[str, Any]]) -> dict[str, str]:
    """trial_key -> a readable name, unique within the sweep, used in the terminal, as Tune's
    trial directory and as the MLflow run name.

    The base name (base_name) is extended by the optimizer and the weight decay only where
    the sweep varies them between trials of the same base name, and as a last resort by the
    trial key (two trials differing in some other field).
    """
    clash: dict[str, list[dict[str, Any]]] = {}
    for p in trials:
        clash.setdefault(base_name(p), []).append(p)
    names: dict[str, str] = {}
    for b, group in clash.items():
        for p in group:
            name = b
            if len({q.get("optimizer") for q in group}) > 1:
                name += f"-{p.get('optimizer')}"
            if len({q.get("weight_decay") for q in group}) > 1:
                name += f"-wd{p.get('weight_decay'):g}"
            names[trial_key(p)] = name
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    return {k: (n if counts[n] == 1 else f"{n}-{k[:6]}") for k, n in names.items()}
