"""CNN family: our LeNet-5-like `CNN` and the authors' `PaperCNN`, side by side.

- `CNN` (model "cnn"): LeNet-5-like (LeCun et al. 1998): conv5-relu-pool, conv5-relu-pool,
  3 linear layers. Both convs use 'same' padding (2), so one definition works for 8x8
  digits, 28x28 MNIST and 32x32 CIFAR (LeNet proper pads MNIST to 32 and leaves the second
  conv unpadded). PyTorch's default init.
- `PaperCNN` (model "paper-cnn"): the authors' CNNClassifier (deep_norm cnn/model.py) as
  CNN_train.py builds it per data set (trainers/paper.py): 3x3 'same' convs, each followed
  by ReLU, a 2x2 max-pool after every second conv; flatten; Linear-ReLU(-Dropout) hidden
  layers and a linear head. PyTorch's default init with every Conv2d/Linear *weight* (not
  bias) multiplied by the init factor. Parameters, in state_dict order: (conv weight, conv
  bias) per conv, then (weight, bias) per linear. MNIST: 12.85M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

# -----------------------------------------------------------------------------
# Ours


class CNN(nn.Module):
    norm_family = "cnn"  # which of the authors' norm rules applies (norms_paper.py)

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_classes: int,
        channels: tuple[int, int] = (6, 16),
        hidden: tuple[int, int] = (120, 84),
    ):
        super().__init__()
        c, h, w = in_shape
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        n_flat = c2 * (h // 4) * (w // 4)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n_flat, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Linear(hidden[1], n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# -----------------------------------------------------------------------------
# The authors'


class PaperCNN(nn.Module):
    norm_family = "cnn"  # which of the authors' norm rules applies (norms_paper.py)

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_classes: int,
        channels: tuple[int, ...],
        hidden: tuple[int, ...],
        dropout: float = 0.0,
        init_factor: float = 1.0,
        pool_every: int = 2,
    ):
        super().__init__()
        c, h, w = in_shape
        feats: list[nn.Module] = []
        for i, c_out in enumerate(channels):
            feats += [nn.Conv2d(c, c_out, 3, padding=1), nn.ReLU()]
            if (i + 1) % pool_every == 0:
                feats.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = c_out
        self.features = nn.Sequential(*feats)
        head: list[nn.Module] = []
        n_in = c * h * w
        for n_out in hidden:
            head += [nn.Linear(n_in, n_out), nn.ReLU()]
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            n_in = n_out
        head.append(nn.Linear(n_in, n_classes))
        self.classifier = nn.Sequential(*head)
        with torch.no_grad():  # the global init factor scales weights only, biases stay
            for m in self.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    m.weight.mul_(init_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
