"""The authors' per-data-set choices for their three deep nets, as data (torch-free).

Facts read from the authors' public code (Francill99/deep_norm: cnn/model.py, resnet/model.py,
vit/model.py and CNN_train.py / ResNet_train.py / ViT_train.py, latest stored versions): each
script picks the architecture, the input normalisation and the training augmentation from
the data set alone, so a table keyed (family, dataset) holds everything. A data set the
scripts do not name (here: `digits`) has no rule and is refused before any compute.

Normalisation is a fixed per-data-set mean/std (not the training-set statistics our own
models use): the CNN script normalises MNIST with (0.5, 0.5), the ResNet and ViT scripts with
(0.1307, 0.3081); CIFAR-10 and CIFAR-100 share (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994,
0.2010) in all three. Augmentation (training set only, here; their scripts also applied it
to the test set, DESIGN.md "Known pitfalls"): ResNet and ViT on MNIST use RandomAffine(10
degrees, translate 0.1); ResNet on CIFAR uses RandomCrop(32, padding 4) + horizontal flip;
the CNN and the CIFAR ViT use none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Augment = Literal["none", "affine", "crop_flip"]

PAPER_MODELS = ("paper-cnn", "paper-resnet", "paper-vit")

_MNIST_HALF = ((0.5,), (0.5,))
_MNIST = ((0.1307,), (0.3081,))
_CIFAR = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


@dataclass(frozen=True)
class PaperSpec:
    """One (model, dataset) rule of the authors' scripts."""

    arch: dict = field(default_factory=dict)  # keyword arguments of the model's constructor
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    augment: Augment = "none"  # their training augmentation


SPECS: dict[str, dict[str, PaperSpec]] = {
    # CNN_train.py: 3x3 convs, 'same' padding, a 2x2 max-pool after every 2nd conv, ReLU MLP.
    "paper-cnn": {
        "mnist": PaperSpec(dict(channels=(32, 64, 128), hidden=(512,), dropout=0.0), *_MNIST_HALF),
        "cifar10": PaperSpec(dict(channels=(32, 64, 128), hidden=(512,), dropout=0.0), *_CIFAR),
        "cifar100": PaperSpec(
            dict(channels=(64, 128, 256, 512), hidden=(1024, 512), dropout=0.1), *_CIFAR
        ),
    },
    # ResNet_train.py: BasicBlock stages with strides (1, 2, 2, 2).
    "paper-resnet": {
        "mnist": PaperSpec(dict(blocks=(2, 2, 2, 2), widths=(16, 32, 64, 128)), *_MNIST, "affine"),
        "cifar10": PaperSpec(
            dict(blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512)), *_CIFAR, "crop_flip"
        ),
        "cifar100": PaperSpec(
            dict(blocks=(3, 4, 6, 3), widths=(64, 128, 256, 512)), *_CIFAR, "crop_flip"
        ),
    },
    # ViT_train.py: mlp ratio 4, dropout 0 everywhere.
    "paper-vit": {
        "mnist": PaperSpec(dict(patch=7, dim=128, depth=4, heads=4), *_MNIST, "affine"),
        "cifar10": PaperSpec(dict(patch=4, dim=192, depth=6, heads=3), *_CIFAR),
        "cifar100": PaperSpec(dict(patch=4, dim=256, depth=6, heads=4), *_CIFAR),
    },
}

# The training augmentation of each of *our* model families, for `augment: true` on them:
# the same rule as the authors' model of that family.
FAMILY_OF = {"cnn": "paper-cnn", "resnet": "paper-resnet", "vit": "paper-vit"}


def paper_spec(model: str, dataset: str) -> PaperSpec:
    """The authors' rule for (model, dataset); ValueError naming both if there is none."""
    rules = SPECS.get(model)
    if rules is None:
        raise ValueError(f"model: {model!r} is not one of the paper models {PAPER_MODELS}")
    if dataset not in rules:
        raise ValueError(
            f"model/dataset: the authors' scripts define no {model} for dataset {dataset!r} "
            f"(they define it for {', '.join(rules)})"
        )
    return rules[dataset]


def augmentation(model: str, dataset: str) -> Augment:
    """The authors' training augmentation for this model's family on this data set."""
    family = FAMILY_OF.get(model, model)
    rule = SPECS.get(family, {}).get(dataset)
    return rule.augment if rule is not None else "none"
