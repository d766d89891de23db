"""ResNet family: our CIFAR ResNet and the authors' `PaperResNet`, side by side.

- `ResNet` (model "resnet"): the CIFAR ResNet of He et al. (2016, Sec. 4.2): 3x3 stem,
  three stages of `blocks` BasicBlocks with widths (w, 2w, 4w), strides (1, 2, 2), global
  average pool, linear head; projection (1x1 conv + BN) shortcuts where the shape changes.
  Defaults w=16, blocks=3 give ResNet-20. PyTorch's default init.
- `PaperResNet` (model "paper-resnet"): the authors' ResNetClassifier (deep_norm
  resnet/model.py) as ResNet_train.py builds it (trainers/paper.py): stem conv3x3-BN-ReLU,
  four stages of BasicBlocks with strides (1, 2, 2, 2), average pool, linear head. Init:
  Kaiming-normal (fan_out, relu) convs and N(0, 0.01) linear weights, both times the init
  factor; BN weight 1, bias 0; linear bias 0. Their block's `downsample` is our `shortcut`
  (same tensors, same place; an identity shortcut holds none), their optional Dropout2d
  after the first ReLU (0 in every script) is kept as `drop`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# -----------------------------------------------------------------------------
# Ours


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)) (He et al. 2016, Fig. 2)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    norm_family = "resnet"  # which of the authors' norm rules applies (norms_paper.py)

    def __init__(
        self, in_shape: tuple[int, int, int], n_classes: int, width: int = 16, blocks: int = 3
    ):
        super().__init__()
        c = in_shape[0]
        self.conv1 = nn.Conv2d(c, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, c_in = [], width
        for i, stride in enumerate((1, 2, 2)):
            c_out = width * 2**i
            for b in range(blocks):
                layers.append(BasicBlock(c_in, c_out, stride if b == 0 else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.pool(self.layers(out)).flatten(1)
        return self.linear(out)


# -----------------------------------------------------------------------------
# The authors'


class PaperBasicBlock(BasicBlock):
    """BasicBlock with the authors' optional Dropout2d after the first ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dropout: float = 0.0):
        super().__init__(c_in, c_out, stride)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop(F.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PaperResNet(nn.Module):
    norm_family = "resnet"  # which of the authors' norm rules applies (norms_paper.py)

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_classes: int,
        blocks: tuple[int, ...],
        widths: tuple[int, ...],
        dropout: float = 0.0,
        init_factor: float = 1.0,
    ):
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError(f"blocks {blocks} and widths {widths} differ in length")
        self.stem = nn.Sequential(
            nn.Conv2d(in_shape[0], widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages, c_in = [], widths[0]
        for i, (n, c_out) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if i == 0 else 2
            stage = [PaperBasicBlock(c_in, c_out, stride, dropout)]
            stage += [PaperBasicBlock(c_out, c_out, 1, dropout) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, n_classes)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    m.weight.mul_(init_factor)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.01)
                    m.weight.mul_(init_factor)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.fc(self.pool(x).flatten(1))
