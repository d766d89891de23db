"""The three deep architectures of Section 3 / Appendix G, in their simplest standard form.

Conventions that trainers/norms.py relies on (keep them):
- every weight matrix of the network is an nn.Conv2d or an nn.Linear module (no functional
  weights, no nn.MultiheadAttention with packed parameters);
- a residual block is a `BasicBlock` with `.conv1, .bn1, .conv2, .bn2, .shortcut`, where
  `.shortcut` is an empty nn.Sequential (identity) or nn.Sequential(Conv2d 1x1, BatchNorm2d);
- non-linearities are ReLU/GELU modules, pooling is MaxPool2d/AdaptiveAvgPool2d.

Models:
- `CNN`: LeNet-5-like (LeCun et al. 1998): conv5-relu-pool, conv5-relu-pool, 3 linear layers.
  Both convs use 'same' padding (2), so one definition works for 8x8 digits, 28x28 MNIST
  and 32x32 CIFAR (LeNet proper pads MNIST to 32 and leaves the second conv unpadded).
- `ResNet`: the CIFAR ResNet of He et al. (2016, Sec. 4.2): 3x3 stem, three stages of
  `blocks` BasicBlocks with widths (w, 2w, 4w), strides (1, 2, 2), global average pool,
  linear head; projection (1x1 conv + BN) shortcuts where the shape changes. Defaults w=16,
  blocks=3 give ResNet-20.
- `ViT`: Dosovitskiy et al. (2021): conv patch embedding, class token, learned position
  embedding, pre-LayerNorm blocks (multi-head self-attention from nn.Linear qkv/proj, GELU
  MLP), LayerNorm, linear head on the class token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# -----------------------------------------------------------------------------
# CNN (LeNet-like)


class CNN(nn.Module):
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
# CIFAR ResNet


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
# Vision Transformer


class Attention(nn.Module):
    """Multi-head self-attention with explicit nn.Linear qkv and output projections."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, D/heads)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_classes: int,
        patch: int = 4,
        dim: int = 64,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: int = 2,
    ):
        super().__init__()
        c, h, w = in_shape
        if h % patch or w % patch:
            raise ValueError(f"vit_patch: {patch} does not divide the image size {h}x{w}")
        self.patch_embed = nn.Conv2d(c, dim, patch, stride=patch)
        n_tokens = (h // patch) * (w // patch) + 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, n_tokens, dim))
        self.blocks = nn.Sequential(
            *[TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, tokens, dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


# -----------------------------------------------------------------------------
# Factory


def build_model(cfg, in_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The model named by cfg.model, with every Conv2d/Linear weight scaled by cfg.init_scale.

    Initialisation is PyTorch's default (Kaiming-uniform); init_scale multiplies it (1 = as is).
    The caller seeds the global RNG first so the initial condition follows the trial's seed.
    """
    if cfg.model == "cnn":
        model = CNN(in_shape, n_classes, tuple(cfg.cnn_channels), tuple(cfg.cnn_hidden))
    elif cfg.model == "resnet":
        model = ResNet(in_shape, n_classes, cfg.resnet_width, cfg.resnet_blocks)
    elif cfg.model == "vit":
        model = ViT(
            in_shape,
            n_classes,
            cfg.vit_patch,
            cfg.vit_dim,
            cfg.vit_depth,
            cfg.vit_heads,
            cfg.vit_mlp_ratio,
        )
    else:
        raise ValueError(f"model: unknown deep model {cfg.model!r}")
    if cfg.init_scale != 1.0:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    m.weight.mul_(cfg.init_scale)
    return model
