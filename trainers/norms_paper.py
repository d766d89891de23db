"""The authors' norm definitions (their code's compute_* methods), for any of our models.

`paper_code_norms(model)` returns the five `common.names.PAPER_NORMS` keys, computed exactly
as the authors' code (Francill99/deep_norm: cnn/model.py, resnet/model.py, vit/model.py,
latest stored versions) computes them for the model family of `model.norm_family`. Their
stored curves -- and so every exponent of the paper's tables -- use these, not Eq. 6 as
printed; trainers/norms.py computes the printed Eq. 6. Both are logged by the paper presets.

Notation: a layer's matrix W_i is its weight reshaped to (out, in*kh*kw) (a conv kernel as
their `view(out, -1)`; a Linear as is); s_i = sigma_max(W_i); c_i = sum of the l2 norms of
W_i's *columns*; r_i = sum of the l2 norms of its *rows*. Which layers count:

    family  layers W_1..W_L (in registration order)         l1 / frobenius over
    cnn     every Conv2d and Linear                          every parameter (biases too)
    resnet  only Conv2d/Linear outside residual blocks:      every parameter (biases, BN
            the stem conv and the head (their layer list      gamma/beta too)
            is built from stage children, which are blocks,
            so no block conv is ever added)
    vit     patch conv; per block Q, K, V (their packed      the layer matrices only
            in_proj split in three), O, MLP-1, MLP-2; head

    norm/paper/spectral_complexity
        cnn, resnet: (prod_i s_i) (sum_i (sum_{j>i} c_j)^{2/3} / max(s_i, 1e-12)^{2/3})^{3/2}
        vit:         (prod_i s_i) (sum_i r_i^{2/3} / (s_i^{2/3} + 1e-12) + 1e-12)^{3/2}
    norm/paper/l1            sum |theta|                       (vit: + 1e-12)
    norm/paper/frobenius     (sum theta^2)^{1/2}               (vit: (sum + 1e-12)^{1/2})
    norm/paper/group21       sum_i c_i                         (vit: + 1e-12)
    norm/paper/spectral_product   prod_i s_i

Their ViT methods return natural logarithms of these quantities (log R, log l1, ...); we
store the quantities themselves (exp of their logs, computed in log space), so that every
model's record holds norms in one unit and the analysis takes logs itself.

Differences from Eq. 6 (R_A = prod_i s_i (sum_i (||A_i^T - M_i^T||_{2,1} / s_i)^{2/3})^{3/2}
with A_i the layer's linear operator) and their effect:
1. Convolutions: s_i is the spectral norm of the reshaped kernel, not of the convolution
   operator; the two differ by a kernel-dependent factor of up to k (DESIGN.md), so R and
   the spectral product move by per-layer factors that change during training and so do
   not cancel in the fitted exponents.
2. (2,1) term, CNN and ResNet: layer i's numerator is the sum of the *column* (2,1) norms of
   all LATER layers (their "A_{>i}" approximation) instead of layer i's own ||A_i^T||_{2,1}
   (a sum over its rows); the last layer contributes 0. The sum is dominated by the big
   late layers (e.g. the CNN's 25088x512 FC), so R weights late layers far more than Eq. 6.
3. (2,1) term, ViT: layer i's own row sum r_i = ||A_i^T||_{2,1}, as printed, but with a
   1e-12 added to the denominator and to the sum; negligible.
4. Layers: the ResNet counts two layers (stem, head) and skips every residual block, so R,
   group21 and the spectral product ignore ~all of the network; Eq. 6 counts every layer
   (residual ones with M_i = I). The ViT splits the packed attention projection into Q, K
   and V (three layers, where one (3D, D) map is what the network applies).
5. Reference matrices: M_i = 0 everywhere (Eq. 6 allows M_i = I for residual layers).
6. Normalisation layers: BatchNorm and LayerNorm scales are not folded into any layer (they
   enter only the CNN/ResNet l1/frobenius, as parameters); Eq. 6's A_i is the operator the
   network applies, which includes them. Their R misses the BN scales.
7. Entry-wise norms: l1 and frobenius include biases and BN parameters for CNN and ResNet
   (not for the ViT); App. J defines them over the weight matrices A_i only.
8. Precision: their CNN/ResNet code works in float32 (ViT: float64); we sum in float64 and
   take s_i from a float32 Gram (see `sigma_max`): relative differences ~1e-6.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from common.names import (
    NORM_PAPER_FROBENIUS,
    NORM_PAPER_GROUP21,
    NORM_PAPER_L1,
    NORM_PAPER_SPECTRAL_COMPLEXITY,
    NORM_PAPER_SPECTRAL_PRODUCT,
)
from trainers.norms_ops import work_dtype

FAMILIES = ("cnn", "resnet", "vit")
_EPS = 1e-12  # their code's guard constant, kept where it enters the value


def _is_residual_block(m: nn.Module) -> bool:
    return all(hasattr(m, a) for a in ("conv1", "conv2", "shortcut"))


def paper_layers(model: nn.Module, family: str) -> list[Tensor]:
    """The weight matrices W_i (out, in*kh*kw) their code iterates over, in its order."""
    if family not in FAMILIES:
        raise ValueError(f"family: must be one of {FAMILIES}, got {family!r}")
    inside_block: set[int] = set()
    if family == "resnet":
        for m in model.modules():
            if _is_residual_block(m):
                inside_block.update(id(s) for s in m.modules())
    mats: list[Tensor] = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d | nn.Linear) or id(m) in inside_block:
            continue
        w = m.weight.detach()
        w = w.reshape(w.shape[0], -1)
        if family == "vit" and name.endswith("attn.qkv"):
            mats.extend(w.chunk(3, dim=0))  # their Q, K, V from the packed in_proj
        else:
            mats.append(w)
    if not mats:
        raise ValueError("model: has no Conv2d/Linear layer to take a norm of")
    return mats


def sigma_max(w: Tensor) -> float:
    """Largest singular value of a 2-D matrix: top eigenvalue of its smaller Gram matrix.

    The Gram product (the only O(out * in * min) step; 25088x512 for the MNIST CNN's FC
    layer) runs in the weight's own dtype promoted to at least float32 (trainers.norms_ops.
    work_dtype), like their float32 SVD; relative error ~1e-6. The small symmetric eigen-
    problem runs in float64 on one thread: LAPACK's tridiagonal reduction is memory-bound,
    and on shared cores two OpenMP threads made it 15x slower (1.1 s vs 0.07 s at 512).
    """
    w = w.to(work_dtype(w))
    g = (w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w).to(torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        top = float(torch.linalg.eigvalsh(g)[-1])
    finally:
        torch.set_num_threads(threads)
    return math.sqrt(max(top, 0.0))


def paper_code_norms(model: nn.Module, family: str | None = None) -> dict[str, float]:
    """The five norm/paper/... values of `model` (see the module docstring).

    `family` defaults to `model.norm_family` ("cnn", "resnet" or "vit"); a model without
    one is refused rather than measured by a guessed rule.
    """
    family = family or getattr(model, "norm_family", None)
    if family is None:
        raise ValueError(
            f"model: {type(model).__name__} has no norm_family; pass family= one of {FAMILIES}"
        )
    with torch.no_grad():
        mats = paper_layers(model, family)
        s = [sigma_max(w) for w in mats]
        mats = [w.to(torch.float64) for w in mats]  # entry-wise sums in float64
        c = [float(w.norm(dim=0).sum()) for w in mats]  # column (2,1) norms
        if family == "vit":
            params = mats
        else:
            params = [p.detach().to(torch.float64) for p in model.parameters()]
        l1 = math.fsum(float(p.abs().sum()) for p in params)
        fro2 = math.fsum(float(p.pow(2).sum()) for p in params)
    if any(not x > 0 for x in s) and family == "vit":
        raise ValueError("model: a layer matrix is zero; their ViT code takes log(0) here")
    log_prod = math.fsum(math.log(x) if x > 0 else -math.inf for x in s)
    if family == "vit":
        r = [float(w.norm(dim=1).sum()) for w in mats]  # row (2,1) norms = ||A_i^T||_{2,1}
        corr = (
            math.fsum(ri ** (2 / 3) / (si ** (2 / 3) + _EPS) for ri, si in zip(r, s, strict=True))
            + _EPS
        )
        l1, fro2, g21 = l1 + _EPS, fro2 + _EPS, math.fsum(c) + _EPS
    else:
        later = [math.fsum(c[i + 1 :]) for i in range(len(c))]
        corr = math.fsum(
            t ** (2 / 3) / max(si, _EPS) ** (2 / 3) for t, si in zip(later, s, strict=True)
        )
        g21 = math.fsum(c)
    return {
        NORM_PAPER_SPECTRAL_COMPLEXITY: math.exp(log_prod + 1.5 * math.log(corr))
        if corr > 0
        else 0.0,
        NORM_PAPER_L1: l1,
        NORM_PAPER_FROBENIUS: math.sqrt(fro2),
        NORM_PAPER_GROUP21: g21,
        NORM_PAPER_SPECTRAL_PRODUCT: math.exp(log_prod),
    }
