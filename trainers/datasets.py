"""Facts about the deep-net data sets, defined once (torch-free: config validation and the
orchestrator's cost model read them without importing torch).

`digits` is scikit-learn's 1797 handwritten 8x8 digits, split once into 1397 train / 400 test
(stratified, fixed seed; trainers/data.py). The others are torchvision's standard splits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    train_size: int  # the upper bound for P
    test_size: int
    n_classes: int
    in_shape: tuple[int, int, int]  # one image, (C, H, W)


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(1397, 400, 10, (1, 8, 8)),
    "mnist": DatasetInfo(60000, 10000, 10, (1, 28, 28)),
    "cifar10": DatasetInfo(50000, 10000, 10, (3, 32, 32)),
    "cifar100": DatasetInfo(50000, 10000, 100, (3, 32, 32)),
}
DATASETS_DEEP = tuple(DATASETS)
DIGITS_TEST_SIZE = DATASETS["digits"].test_size


def dataset_info(name: str) -> DatasetInfo:
    """The DatasetInfo of a deep-net data set; ValueError naming the choices otherwise."""
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown deep-net dataset {name!r}; choose from {DATASETS_DEEP}")
    return DATASETS[name]


def dataset_train_size(name: str) -> int:
    """Number of training examples of a deep-net dataset (the upper bound for P)."""
    return dataset_info(name).train_size
