"""ViT family: our small ViT and the authors' `PaperViT`, side by side.

- `ViT` (model "vit"): Dosovitskiy et al. (2021): conv patch embedding, class token, learned
  position embedding, pre-LayerNorm blocks (multi-head self-attention from nn.Linear
  qkv/proj, GELU MLP), LayerNorm, linear head on the class token. PyTorch's default init.
- `PaperViT` (model "paper-vit"): the authors' ViT (deep_norm vit/model.py) as ViT_train.py
  builds it (trainers/paper.py), mlp ratio 4, dropout 0. Their blocks use
  nn.MultiheadAttention; ours computes the same function with an nn.Linear `qkv` whose
  weight (3D, D) and bias (3D) are their packed in_proj_weight / in_proj_bias (rows q, k, v,
  heads contiguous within each) and `proj` = their out_proj, so the state_dict holds the
  same tensors in the same order. Their MLP is Linear-GELU-Dropout-Linear-Dropout. Init:
  class token and position embedding trunc-normal(0.02); patch conv Kaiming-normal
  (fan_out, relu) times the init factor, bias 0; every nn.Linear Xavier-uniform times the
  init factor, bias 0 -- their packed in_proj is not an nn.Linear, so it keeps
  MultiheadAttention's own Xavier-uniform init over the whole (3D, D) matrix and is *not*
  scaled by the factor (reproduced here); LayerNorm 1 / 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# -----------------------------------------------------------------------------
# Ours


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


def token_parts(
    in_shape: tuple[int, int, int], dim: int, patch: int, option: str
) -> tuple[nn.Conv2d, nn.Parameter, nn.Parameter]:
    """The patch conv, class token and position embedding both ViTs embed with (zeros; each
    ViT initialises them its own way). option: the setting named when patch does not divide
    the image."""
    c, h, w = in_shape
    if h % patch or w % patch:
        raise ValueError(f"{option}: {patch} does not divide the image size {h}x{w}")
    n_tokens = (h // patch) * (w // patch) + 1
    conv = nn.Conv2d(c, dim, patch, stride=patch)
    return conv, nn.Parameter(torch.zeros(1, 1, dim)), nn.Parameter(torch.zeros(1, n_tokens, dim))


def embed_tokens(
    x: torch.Tensor, patch_embed: nn.Conv2d, cls_token: torch.Tensor, pos_embed: torch.Tensor
) -> torch.Tensor:
    """Images (B, C, H, W) -> tokens (B, 1 + patches, dim): class token first, positions added
    (both ViTs embed the same way; only their blocks and init differ)."""
    x = patch_embed(x).flatten(2).transpose(1, 2)  # (B, patches, dim)
    return torch.cat([cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos_embed


class ViT(nn.Module):
    norm_family = "vit"  # which of the authors' norm rules applies (norms_paper.py)

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
        self.patch_embed, self.cls_token, self.pos_embed = token_parts(
            in_shape, dim, patch, "vit_patch"
        )
        with torch.no_grad():
            self.pos_embed.normal_(0.0, 0.02)
        self.blocks = nn.Sequential(
            *[TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = embed_tokens(x, self.patch_embed, self.cls_token, self.pos_embed)
        return self.head(self.norm(self.blocks(x))[:, 0])


# -----------------------------------------------------------------------------
# The authors'


class PaperTransformerBlock(TransformerBlock):
    """Pre-LN block with the authors' MLP layout (Linear, GELU, Dropout, Linear, Dropout)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float = 0.0):
        super().__init__(dim, heads, mlp_ratio)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )


class PaperViT(nn.Module):
    norm_family = "vit"  # which of the authors' norm rules applies (norms_paper.py)

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_classes: int,
        patch: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        init_factor: float = 1.0,
    ):
        super().__init__()
        self.patch_embed, self.cls_token, self.pos_embed = token_parts(
            in_shape, dim, patch, "patch"
        )
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(
            *[PaperTransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)
        with torch.no_grad():
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            for name, m in self.named_modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    m.weight.mul_(init_factor)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
                    if not name.endswith("attn.qkv"):  # their in_proj is no nn.Linear
                        m.weight.mul_(init_factor)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = embed_tokens(x, self.patch_embed, self.cls_token, self.pos_embed)
        x = self.blocks(self.pos_drop(x))
        return self.head(self.norm(x)[:, 0])
