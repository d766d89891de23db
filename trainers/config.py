"""One trial's validated configuration (DESIGN.md, "Data contract"; issue 3, item 1).

`TrialConfig` is frozen and forbids unknown fields, so a typo in a sweep preset fails before
any compute with an error that names the field. Derived values (P from alpha*N for the
perceptron, defaults that depend on the kind) are filled in *before* validation, so that
`cfg.model_dump()` always holds the concrete values that were run -- that dump is what goes
to Ray's param_space and to MLflow params, and `TrialConfig(**cfg.model_dump())` round-trips.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainers.datasets import dataset_train_size
from trainers.paper import PAPER_MODELS, augmentation, paper_spec

DATA_ROOT_ENV = "SCALING_SWEEPS_DATA"


def default_data_root() -> str:
    """Download root for torchvision datasets: $SCALING_SWEEPS_DATA or ~/.cache/..."""
    return os.environ.get(DATA_ROOT_ENV) or os.path.expanduser("~/.cache/scaling-sweeps/data")


# -----------------------------------------------------------------------------
# The config

LOG_POINTS_DEFAULT = 50  # the paper logs ~50 log-spaced epochs per curve


class TrialConfig(BaseModel):
    """All knobs of one training run. Fields follow the paper's symbols (P, alpha, N)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- what is trained on what
    kind: Literal["perceptron", "deep"] = "deep"
    model: Literal[
        "perceptron", "cnn", "resnet", "vit", "paper-cnn", "paper-resnet", "paper-vit"
    ] = Field(default="cnn", description="paper-*: the authors' nets (trainers/paper.py)")
    dataset: Literal["teacher", "digits", "mnist", "cifar10", "cifar100"] = "digits"
    P: int | None = Field(
        default=None, description="training-set size (perceptron: round(alpha*N))"
    )
    alpha: float | None = Field(default=None, description="perceptron only: P/N (Section 2)")
    N: int = Field(default=1000, gt=0, description="perceptron input dimension")
    seed: int = Field(default=0, ge=0)

    # --- optimisation
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float | None = Field(default=None, description="deep: 1e-3 (App. G); perceptron: 0 = auto")
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0, description="sgd only")
    weight_decay: float = Field(default=0.0, ge=0.0)
    epochs: int | None = Field(
        default=None, gt=0, description="perceptron: one epoch = one GD step"
    )
    batch_size: int = Field(default=128, gt=0, description="deep nets; perceptron is full batch")
    log_schedule: Literal["every", "log"] | int = Field(
        default="log", description="'every' epoch, 'log' (~50 log-spaced), or the count to log"
    )
    init_scale: float | None = Field(
        default=None,
        description="deep: factor on PyTorch's default init (1); perceptron: lambda(0)",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data_root: str = Field(default_factory=default_data_root)
    nested_subsets: bool = Field(
        default=False, description="subset drawn from the seed alone, so subsets nest across P"
    )
    # --- perceptron only (trainers/perceptron.py, issue 10)
    step_rule: Literal["adaptive", "constant"] | None = Field(
        default=None,
        description="perceptron: 'adaptive' (default; follows the gradient-flow path) or "
        "'constant' (lr, 0 = 1/L)",
    )
    step_tol: float = Field(
        default=1e-3, gt=0, lt=1, description="perceptron, adaptive: local path error / |w|"
    )
    lambda_stop: float | None = Field(
        default=None, description="perceptron: stop once lambda = |w|/sqrt(N) passes this"
    )
    loss: Literal["logistic", "mse"] | None = Field(
        default=None, description="perceptron: 'logistic' (Eq. 1, default) or 'mse' (App. C)"
    )
    norm_conv: Literal["operator", "reshaped"] = Field(
        default="operator", description="conv spectral norm: true operator, or paper's reshaped"
    )
    augment: bool = Field(
        default=False,
        description="deep: the authors' training augmentation for this model family and "
        "dataset (trainers/paper.py); refused where they used none. Never the test set",
    )
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32",
        description="deep: bf16 autocast of the forward passes (a speed knob; weights and "
        "optimizer stay fp32; benchmarks/bench_paper_speed.py measures its effect)",
    )
    norms: Literal["eq6", "paper", "both"] = Field(
        default="eq6",
        description="deep: which norm family to log: Eq. 6 as printed (norm/...), the "
        "authors' code (norm/paper/..., trainers/norms_paper.py), or both",
    )
    label_noise: float = Field(
        default=0.0,
        description="deep: fraction in [0, 1) of the P training labels replaced by a random "
        "different class, drawn from the seed (trainers/data.py, noisy_labels); test set clean",
    )

    # --- our models' sizes (LeNet-5-like CNN, ResNet-20, small ViT; trainers/models/);
    # the paper-* models take theirs from the data set (trainers/paper.py)
    cnn_channels: tuple[int, int] = (6, 16)
    cnn_hidden: tuple[int, int] = (120, 84)
    resnet_width: int = Field(default=16, gt=0, description="channels of the first stage")
    resnet_blocks: int = Field(default=3, gt=0, description="BasicBlocks per stage (3 stages)")
    vit_patch: int = Field(default=4, gt=0)
    vit_dim: int = Field(default=64, gt=0)
    vit_depth: int = Field(default=6, gt=0)
    vit_heads: int = Field(default=4, gt=0)
    vit_mlp_ratio: int = Field(default=2, gt=0)

    # -------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        """Fill kind-dependent defaults and derive P = round(alpha N) before validation."""
        if not isinstance(data, dict):
            return data
        d = dict(data)
        kind = d.get("kind", "deep")
        if kind == "perceptron":
            d.setdefault("model", "perceptron")
            d.setdefault("dataset", "teacher")
            d.setdefault("optimizer", "sgd")
            d.setdefault("epochs", 100_000)
            d.setdefault("init_scale", 1e-6)
            d.setdefault("step_rule", "adaptive")
            d.setdefault("loss", "logistic")
            if d.get("lr") is None:
                d["lr"] = 0.0  # auto: 1/L from the data's spectral norm (trainers/perceptron.py)
            alpha, N = d.get("alpha"), d.get("N", 1000)
            if alpha is not None and d.get("P") is None:
                if not isinstance(alpha, int | float) or not alpha > 0 or not math.isfinite(alpha):
                    raise ValueError(f"alpha: must be a positive number, got {alpha!r}")
                if not isinstance(N, int) or N <= 0:
                    raise ValueError(f"N: must be a positive integer, got {N!r}")
                d["P"] = max(1, round(alpha * N))
        else:
            d.setdefault("epochs", 20)
            d.setdefault("init_scale", 1.0)
            if d.get("lr") is None:
                d["lr"] = 1e-3
        return d

    @model_validator(mode="after")
    def _check(self) -> TrialConfig:
        if self.P is None:
            raise ValueError("P: required (or alpha with N for the perceptron)")
        if self.P <= 0:
            raise ValueError(f"P: must be positive, got {self.P}")
        if self.alpha is not None and not self.alpha > 0:
            raise ValueError(f"alpha: must be positive, got {self.alpha}")
        if not self.lr >= 0 or (self.kind == "deep" and self.lr == 0):
            raise ValueError(f"lr: must be positive, got {self.lr}")
        if not self.init_scale > 0:
            raise ValueError(f"init_scale: must be positive, got {self.init_scale}")
        if isinstance(self.log_schedule, int) and self.log_schedule < 2:
            raise ValueError(f"log_schedule: an int count must be >= 2, got {self.log_schedule}")
        if not 0.0 <= self.label_noise < 1.0:  # also refuses NaN
            raise ValueError(f"label_noise: must be a fraction in [0, 1), got {self.label_noise}")
        if self.momentum > 0 and self.optimizer != "sgd":
            raise ValueError(f"momentum: only used by optimizer=sgd, not {self.optimizer!r}")
        if self.kind == "perceptron":
            # Section 2 is plain full-batch GD on Eq. (1): refuse knobs it would silently ignore.
            for name, ok in [
                ("optimizer", self.optimizer == "sgd"),
                ("momentum", self.momentum == 0),
                ("weight_decay", self.weight_decay == 0),
                ("label_noise", self.label_noise == 0),
            ]:
                if not ok:
                    raise ValueError(
                        f"{name}: kind=perceptron is plain gradient descent "
                        "(optimizer=sgd, momentum=0, weight_decay=0, label_noise=0)"
                    )
            if self.model != "perceptron" or self.dataset != "teacher":
                raise ValueError(
                    "model/dataset: kind=perceptron needs model=perceptron, dataset=teacher"
                )
            if self.lambda_stop is not None and not self.lambda_stop > 0:  # also refuses NaN
                raise ValueError(f"lambda_stop: must be positive, got {self.lambda_stop}")
            if self.alpha is not None and self.P != max(1, round(self.alpha * self.N)):
                raise ValueError(f"P: {self.P} != round(alpha*N) = {round(self.alpha * self.N)}")
        else:
            if self.model == "perceptron" or self.dataset == "teacher":
                raise ValueError("model/dataset: perceptron/teacher need kind=perceptron")
            for name in ("step_rule", "lambda_stop", "loss"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: a perceptron-only field (kind=perceptron)")
            n_train = dataset_train_size(self.dataset)
            if self.P > n_train:
                raise ValueError(f"P: {self.P} exceeds the {self.dataset} training set ({n_train})")
            if self.model in PAPER_MODELS:
                paper_spec(self.model, self.dataset)  # no rule for this dataset: error
            if self.augment and augmentation(self.model, self.dataset) == "none":
                raise ValueError(
                    f"augment: the authors used no training augmentation for {self.model} "
                    f"on {self.dataset}"
                )
            if self.model == "vit" and self.vit_dim % self.vit_heads:
                raise ValueError(
                    f"vit_heads: {self.vit_heads} does not divide vit_dim {self.vit_dim}"
                )
        return self


# -----------------------------------------------------------------------------
# Log schedule


def logged_epochs(cfg: TrialConfig) -> list[int]:
    """Epochs (1-based, after that epoch's update) at which a record is reported.

    'every' logs 1..epochs; 'log' (or an int n) logs n ~log-spaced distinct epochs including
    the first and the last, as the paper does (~50 points per curve).
    """
    E = cfg.epochs
    if cfg.log_schedule == "every":
        return list(range(1, E + 1))
    n = LOG_POINTS_DEFAULT if cfg.log_schedule == "log" else int(cfg.log_schedule)
    if n >= E:
        return list(range(1, E + 1))
    # Rounding a geometric grid merges points at small epochs; grow the grid until n distinct.
    m = n
    while True:
        pts = sorted({round(E ** (i / (m - 1))) for i in range(m)})
        if len(pts) >= n or m > 4 * E:
            return pts
        m += 1
