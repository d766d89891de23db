"""The deep nets of Section 3 / Appendix G, by name: one file per family, ours and the
authors' side by side (cnn.py, resnet.py, vit.py); `MODELS` maps a config's `model` to its
builder.

    name          class                 file        what
    cnn           CNN                   cnn.py      LeNet-5-like, any data set
    paper-cnn     PaperCNN              cnn.py      the authors' CNN per data set
    resnet        ResNet                resnet.py   CIFAR ResNet-20 (He et al. 2016)
    paper-resnet  PaperResNet           resnet.py   the authors' ResNet-18/34 layouts
    vit           ViT                   vit.py      a small ViT (Dosovitskiy et al. 2021)
    paper-vit     PaperViT              vit.py      the authors' ViT per data set

Conventions that trainers/norms.py relies on (keep them):
- every weight matrix of the network is an nn.Conv2d or an nn.Linear module (no functional
  weights, no nn.MultiheadAttention with packed parameters);
- a residual block has `.conv1, .bn1, .conv2, .bn2, .shortcut`, where `.shortcut` is an
  empty nn.Sequential (identity) or nn.Sequential(Conv2d 1x1, BatchNorm2d); a transformer
  block has `.norm1, .attn.qkv, .attn.proj, .norm2, .mlp` (an nn.Sequential, two Linear);
- non-linearities are ReLU/GELU modules, pooling is MaxPool2d/AdaptiveAvgPool2d.
Each class names its `norm_family`, the authors' norm rule for it (trainers/norms_paper.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from trainers.models.cnn import CNN, PaperCNN
from trainers.models.resnet import BasicBlock, PaperBasicBlock, PaperResNet, ResNet
from trainers.models.vit import PaperViT, ViT
from trainers.paper import paper_spec

Builder = Callable[..., nn.Module]  # (cfg, in_shape, n_classes) -> module


def _cnn(cfg, in_shape, n_classes) -> nn.Module:
    return CNN(in_shape, n_classes, tuple(cfg.cnn_channels), tuple(cfg.cnn_hidden))


def _resnet(cfg, in_shape, n_classes) -> nn.Module:
    return ResNet(in_shape, n_classes, cfg.resnet_width, cfg.resnet_blocks)


def _vit(cfg, in_shape, n_classes) -> nn.Module:
    return ViT(
        in_shape,
        n_classes,
        cfg.vit_patch,
        cfg.vit_dim,
        cfg.vit_depth,
        cfg.vit_heads,
        cfg.vit_mlp_ratio,
    )


def _paper(cls: type[nn.Module]) -> Builder:
    def build(cfg, in_shape, n_classes) -> nn.Module:
        arch = paper_spec(cfg.model, cfg.dataset).arch
        return cls(in_shape, n_classes, **arch, init_factor=cfg.init_scale)

    return build


MODELS: dict[str, Builder] = {
    "cnn": _cnn,
    "paper-cnn": _paper(PaperCNN),
    "resnet": _resnet,
    "paper-resnet": _paper(PaperResNet),
    "vit": _vit,
    "paper-vit": _paper(PaperViT),
}


def build_model(cfg, in_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The model named by cfg.model.

    Ours: PyTorch's default init (Kaiming-uniform), every Conv2d/Linear weight times
    cfg.init_scale (1 = as is). The authors': their own init, with cfg.init_scale as their
    global init factor (applied where their code applies it). The caller seeds the global
    RNG first so the initial condition follows the trial's seed.
    """
    if cfg.model not in MODELS:
        raise ValueError(f"model: unknown deep model {cfg.model!r}; choose from {tuple(MODELS)}")
    model = MODELS[cfg.model](cfg, in_shape, n_classes)
    if cfg.model in ("cnn", "resnet", "vit") and cfg.init_scale != 1.0:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    m.weight.mul_(cfg.init_scale)
    return model


__all__ = [
    "CNN",
    "MODELS",
    "BasicBlock",
    "PaperBasicBlock",
    "PaperCNN",
    "PaperResNet",
    "PaperViT",
    "ResNet",
    "ViT",
    "build_model",
]
