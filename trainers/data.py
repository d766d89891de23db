"""Datasets as in-memory tensors (Appendix G): MNIST, CIFAR-10/100 via torchvision, digits.

- `digits`: scikit-learn's embedded 8x8 handwritten digits (1797 images, no download), kept
  at 1x8x8, split once into 1397 train / 400 test, stratified, with a fixed seed (0).
- `mnist`, `cifar10`, `cifar100`: torchvision's own loaders, downloaded once per node into
  `data_root` under a file lock (several trials on one node start together).
Images are scaled to [0, 1] and standardised per channel with the *training set's* mean and
std (the authors' models: their fixed per-data-set mean and std, trainers/paper.py).
Nothing is augmented here (trainers/augment.py augments training batches on request; the
test set never).
The random training subset of size P is drawn from the trial's seed (`subset_indices`);
with `label_noise` > 0 a fraction of its labels is corrupted (`noisy_labels`), never the test
set's.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch

from trainers.datasets import DIGITS_TEST_SIZE, dataset_info

DIGITS_SPLIT_SEED = 0
# Third key of the label-noise generator: keeps its stream apart from the subset draw (keyed
# [seed] or [seed, P]) and from torch's model-init stream, so that label_noise=0 changes
# nothing and label_noise>0 changes only the labels.
LABEL_NOISE_KEY = 0x4C4E  # "LN"


@dataclass(frozen=True)
class Dataset:
    x_train: torch.Tensor  # (n_train, C, H, W) float32, standardised
    y_train: torch.Tensor  # (n_train,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    mean: tuple[float, ...] = ()  # per channel, of the [0, 1] images: x = (raw - mean) / std
    std: tuple[float, ...] = ()

    @property
    def fill(self) -> tuple[float, ...]:
        """The standardised value of a black (0) pixel, per channel (augmentation padding)."""
        return tuple(-m / s for m, s in zip(self.mean, self.std, strict=True))

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


# -----------------------------------------------------------------------------
# Raw loaders: uint8-range images (n, C, H, W) and integer labels


def _load_digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images[:, None, :, :] * (255.0 / 16.0)).astype(np.float32)  # 0..16 -> 0..255
    return tuple(
        train_test_split(
            x,
            d.target,
            test_size=DIGITS_TEST_SIZE,
            stratify=d.target,
            random_state=DIGITS_SPLIT_SEED,
        )
    )  # x_train, x_test, y_train, y_test


TORCHVISION_SETS = ("mnist", "cifar10", "cifar100")


def _torchvision_splits(name: str, root: str, download: bool = True) -> tuple:
    """torchvision's (train, test) datasets of `name` under root, downloaded if asked and
    missing. One download per node: the first caller downloads under a file lock, the others
    wait here, then find it. RuntimeError with the fix when it cannot load or download."""
    from filelock import FileLock
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}
    os.makedirs(root, exist_ok=True)
    with FileLock(os.path.join(root, f".{name}.lock")):
        try:
            return (
                cls[name](root, train=True, download=download),
                cls[name](root, train=False, download=download),
            )
        except (OSError, RuntimeError) as e:  # offline node, blocked mirror, corrupt archive
            if not download:
                raise
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise RuntimeError(
                f"dataset: cannot load or download {name} into data_root={root} ({msg}); "
                "download it once on a machine with internet access and copy it there"
            ) from e


def is_present(name: str, root: str) -> bool:
    """Whether torchvision data set `name` is already in root (no download tried)."""
    try:
        _torchvision_splits(name, os.path.expanduser(root), download=False)
        return True
    except (OSError, RuntimeError):
        return False


def download(name: str, root: str) -> None:
    """Download `name` into root (torchvision shows its own progress bar); RuntimeError with
    the fix when it cannot."""
    _torchvision_splits(name, os.path.expanduser(root), download=True)


def _load_torchvision(name: str, root: str) -> tuple[np.ndarray, ...]:
    train, test = _torchvision_splits(name, root)

    def arrays(ds) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(ds.data, dtype=np.float32)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # MNIST (n,H,W); CIFAR NHWC
        return x, np.asarray(ds.targets, dtype=np.int64)

    (xtr, ytr), (xte, yte) = arrays(train), arrays(test)
    return xtr, xte, ytr, yte


@functools.lru_cache(maxsize=4)
def load_dataset(
    name: str,
    root: str,
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> Dataset:
    """The whole dataset on the CPU, standardised per channel (cached).

    mean_std=None: with the training set's own mean and std (our models); else with the given
    fixed (mean, std) of the [0, 1] images, as the authors' scripts do (trainers/paper.py).
    """
    if name == "digits":
        xtr, xte, ytr, yte = _load_digits()
    elif name in ("mnist", "cifar10", "cifar100"):
        xtr, xte, ytr, yte = _load_torchvision(name, os.path.expanduser(root))
    else:
        raise ValueError(f"dataset: unknown deep-net dataset {name!r}")
    xtr, xte = xtr / 255.0, xte / 255.0
    if mean_std is None:
        mean = xtr.mean(axis=(0, 2, 3), keepdims=True)
        std = xtr.std(axis=(0, 2, 3), keepdims=True) + 1e-8
    else:
        c = xtr.shape[1]
        if any(len(v) != c for v in mean_std):
            raise ValueError(f"mean_std: needs {c} values per channel for {name}, got {mean_std}")
        mean, std = (np.asarray(v, dtype=np.float64).reshape(1, c, 1, 1) for v in mean_std)
    t = functools.partial(torch.as_tensor, dtype=torch.float32)
    return Dataset(
        x_train=t((xtr - mean) / std),
        y_train=torch.as_tensor(ytr, dtype=torch.int64),
        x_test=t((xte - mean) / std),
        y_test=torch.as_tensor(yte, dtype=torch.int64),
        n_classes=dataset_info(name).n_classes,
        mean=tuple(float(v) for v in mean.ravel()),
        std=tuple(float(v) for v in std.ravel()),
    )


# -----------------------------------------------------------------------------
# Training subsets


def subset_indices(n_train: int, P: int, seed: int, nested: bool = False) -> np.ndarray:
    """P distinct training indices drawn from the seed.

    nested=False: the permutation depends on (seed, P), so trials at different P are
    independent draws. nested=True: it depends on the seed alone and we take its first P
    entries, so for one seed the subsets grow by inclusion as P grows.
    """
    if not 0 < P <= n_train:
        raise ValueError(f"P: must be in [1, {n_train}], got {P}")
    key = [int(seed)] if nested else [int(seed), int(P)]
    return np.random.default_rng(key).permutation(n_train)[:P]


def noisy_labels(y: torch.Tensor, n_classes: int, fraction: float, seed: int) -> torch.Tensor:
    """y with round(fraction * len(y)) labels replaced by a uniformly random *different* class.

    The positions (without replacement) and the new classes are drawn from numpy's generator
    keyed [seed, len(y), LABEL_NOISE_KEY], independent of the subset draw and of the model
    init. fraction=0 returns y itself. Noisy training labels make a network memorise and so
    overfit, which gives test error vs norm a genuine minimum (Zhang et al. 2017; Nakkiran et
    al. 2019); the trainer applies this to the P training labels only.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"label_noise: must be a fraction in [0, 1), got {fraction}")
    if n_classes < 2:
        raise ValueError(f"label_noise: needs at least 2 classes, got {n_classes}")
    n = int(y.shape[0])
    k = round(fraction * n)
    if k == 0:
        return y
    rng = np.random.default_rng([int(seed), n, LABEL_NOISE_KEY])
    pos = torch.as_tensor(rng.choice(n, size=k, replace=False), dtype=torch.int64)
    shift = torch.as_tensor(rng.integers(1, n_classes, size=k), dtype=y.dtype)
    out = y.clone()
    out[pos] = (y[pos] + shift) % n_classes  # a shift in 1..C-1: uniform over the other classes
    return out
