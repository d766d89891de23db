"""The authors' training augmentations, on standardised batches already on the device.

Their scripts apply torchvision transforms to PIL images before ToTensor/Normalize
(ResNet_train.py, ViT_train.py; trainers/paper.py says which model and data set use which):

- "crop_flip": RandomCrop(32, padding=4) then RandomHorizontalFlip(0.5): pad 4 black
  pixels on each side, cut a window at a uniformly random integer offset in [0, 8]^2, flip
  left-right with probability 1/2.
- "affine": RandomAffine(degrees=10, translate=(0.1, 0.1)): rotate by an angle uniform in
  [-10, 10] degrees about the image centre and shift by integer pixels uniform in
  [-0.1 W, 0.1 W] x [-0.1 H, 0.1 H] (torchvision rounds the shift), nearest-neighbour
  sampling, black outside the image.

Black is 0 in raw pixel space, i.e. `fill` = -mean/std per channel after standardisation,
so padding here uses that value. Random draws come from a private CPU generator (the
trainer's, checkpointed with it) and travel to the device as small tensors: no host sync.
The sub-pixel resampling of a rotation is torch's grid_sample (nearest), not PIL's, so
individual augmented images differ from torchvision's by interpolation detail only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

CROP_PAD = 4
AFFINE_DEGREES = 10.0
AFFINE_TRANSLATE = 0.1


def _fill(x: Tensor, fill: tuple[float, ...]) -> Tensor:
    return torch.tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)


def crop_flip(x: Tensor, fill: tuple[float, ...], gen: torch.Generator) -> Tensor:
    """RandomCrop(H, padding=4) + RandomHorizontalFlip on a batch (B, C, H, W)."""
    B, C, H, W = x.shape
    xp = _fill(x, fill).expand(B, C, H + 2 * CROP_PAD, W + 2 * CROP_PAD).clone()
    xp[:, :, CROP_PAD:-CROP_PAD, CROP_PAD:-CROP_PAD] = x  # black border in raw pixel space
    off = torch.randint(0, 2 * CROP_PAD + 1, (2, B), generator=gen).to(x.device)
    flip = (torch.rand(B, generator=gen) < 0.5).to(x.device)
    rows = (off[0, :, None] + torch.arange(H, device=x.device))[:, None, :, None]
    cols = off[1, :, None] + torch.arange(W, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return xp[b, c, rows, cols]


def affine(x: Tensor, fill: tuple[float, ...], gen: torch.Generator) -> Tensor:
    """RandomAffine(degrees=10, translate=(0.1, 0.1)) on a batch (B, C, H, W)."""
    B, C, H, W = x.shape
    angle = (torch.rand(B, generator=gen, dtype=torch.float64) * 2 - 1) * AFFINE_DEGREES
    u = torch.rand(2, B, generator=gen, dtype=torch.float64) * 2 - 1
    tx = torch.round(u[0] * AFFINE_TRANSLATE * W)  # integer pixel shifts, as torchvision
    ty = torch.round(u[1] * AFFINE_TRANSLATE * H)
    a = angle * (math.pi / 180)
    cos, sin = torch.cos(a), torch.sin(a)
    # The sampling grid maps each output pixel back to its source: inverse rotation of
    # (output - shift), in grid_sample's [-1, 1] coordinates (pixel shift t -> 2t/size).
    tx_n, ty_n = 2 * tx / W, 2 * ty / H
    theta = torch.stack(
        [
            torch.stack([cos, sin * H / W, -(cos * tx_n + sin * ty_n * H / W)], 1),
            torch.stack([-sin * W / H, cos, -(-sin * tx_n * W / H + cos * ty_n)], 1),
        ],
        1,
    ).to(x.device, x.dtype)
    grid = F.affine_grid(theta, (B, C, H, W), align_corners=False)
    out = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(  # 1 where the source pixel lies in the image, 0 outside
        torch.ones_like(x[:, :1]), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return torch.where(inside > 0, out, _fill(x, fill))


AUGMENTATIONS = {"crop_flip": crop_flip, "affine": affine}
