"""Per-epoch weight norms of a deep net: Eq. 6 (spectral complexity) and Appendix J.

`NormTracker(model, input_shape)(model)` returns the five `common.names.DEEP_NORMS`:

    norm/spectral_complexity  R_A of Eq. 6 (Bartlett, Foster & Telgarsky 2017), rho_i = 1
    norm/spectral_product     prod_i ||A_i||_sigma                         (App. J, item 4)
    norm/l1                   sum_i sum_jk |(W_i)_jk|                       (App. J, item 1)
    norm/frobenius            (sum_i sum_jk (W_i)_jk^2)^(1/2)               (App. J, item 2)
    norm/group21              sum_i ||W_i||_{2,1} (sum over columns)        (App. J, item 3)

where W_i = A_i - M_i is the layer's learned matrix (the identity of a skip has no parameters).

How each part of a network is treated, and why:

- Layers. Every Conv2d and Linear is a layer (found by a traced forward pass, in execution
  order; a weight-bearing module of another type is refused, never skipped silently).
- Convolutions. ||A_i||_sigma is the spectral norm of the true convolution operator on the
  feature-map size the layer actually sees (power iteration alternating conv2d and its exact
  adjoint conv_transpose2d with output_padding; stride/padding/dilation/groups as used),
  warm-started from the previous call's vector and run to a relative tolerance `tol` (capped
  at `n_iter`). conv_mode="reshaped" instead uses sigma_max of the kernel reshaped to
  (out, in*k*k), the paper's code's choice, kept only for comparison. For the entry-wise
  norms (L1, Frobenius, both (2,1) norms) the matrix of a conv is the reshaped kernel
  (out, in/groups*k*k): each parameter counted once. (The unrolled operator would repeat
  every filter at each output position and tie these norms to the image size.)
- (2,1) norms. Bartlett et al.'s ||A||_{2,1} sums the l2 norms of the columns of A (with
  y = A x); App. J's G21 is exactly that. Eq. 6 applies it to A^T - M^T, i.e. it sums the l2
  norms of the rows (output units) of A - M. The paper's prose says "average"; we follow
  the formulas (sums), here and in App. J.
- Biases are excluded from A_i: they shift, not scale, and do not enter a Lipschitz bound.
  So are a ViT's class token and position embedding (additive, like biases).
- BatchNorm: its eval-mode map is the affine x -> gamma (x - mu)/sqrt(var + eps) + beta, a
  per-channel diagonal scale. When it directly follows a conv/linear (the standard pattern)
  the scale gamma/sqrt(running_var + eps) is folded into that layer's rows: A_i is then the
  exact linear part of conv+BN as the network computes at evaluation, and the product is
  tighter than counting BN as a separate layer. Running statistics are used because they
  define the test-time function whose error is measured. A BatchNorm that follows no
  conv/linear directly becomes its own diagonal layer (sigma = max |scale|).
- LayerNorm: the normalisation (x - mean)/std has no finite global Lipschitz constant; it is
  treated as part of the activation with rho = 1 (so for a ViT, R_A is a norm-based
  complexity measure, not a certified Lipschitz bound). Its gamma is an exact diagonal
  scale and is folded into the columns of the Linear layer(s) that consume its output
  directly; otherwise it is a separate diagonal layer (e.g. the ViT's final norm, whose
  class-token slice sits between it and the head).
- Attention: the qkv and output projections are Linear layers; softmax(QK^T)V is not
  globally Lipschitz either and is treated as part of the activation with rho = 1.
- Activations: rho_i = 1 for ReLU and GELU (GELU's true constant is about 1.13); pooling
  likewise (max-pool with non-overlapping windows is 1-Lipschitz, average pooling is a
  linear map of norm <= 1). Constant factors like these rescale R_A by a fixed number for
  the whole run, so they do not move the fitted exponents.
- Residual layers (M_i = I). A BasicBlock computes x -> relu(B2 K2 relu(B1 K1 x) + S x), a
  pre-LN transformer sub-block x -> x + W2 f(W1 LN(x)). Neither is a chain layer, but each
  is exactly two layers of a chain on the lifted state (h, x):
      carry:  x      -> (relu(B1K1 x), x)       A = [B1K1; I],  M = [0; I]
      merge:  (h, x) -> relu(B2K2 h + S x)       A = [B2K2, S],  M = [0, I] if S = I, else 0
  (the identity half of the activation is 1-Lipschitz), so Eq. 6 applies verbatim and both
  of the block's convolutions are counted. Then ||A||_sigma = sqrt(1 + ||B K||^2) for the
  carry and for an identity merge; a projection merge (1x1 conv + BN shortcut) uses power
  iteration on the output-space Gram map B2K2 (B2K2)^T + S S^T. ||A^T - M^T||_{2,1} is the
  row-wise sum over B1K1 (carry), B2K2 (identity merge) or [B2K2 | S] (projection merge).
  Blocks are recognised by duck typing: `.conv1 .bn1 .conv2 .bn2 .shortcut` (BasicBlock)
  and `.norm1 .attn.qkv .attn.proj .norm2 .mlp` (pre-LN transformer block); any other
  residual connection is not detected and its layers count as plain (M = 0) layers.

The authors' code computes these five otherwise; `paper_code_norms(model)` (trainers/
norms_paper.py, re-exported here) gives their values under `norm/paper/...` keys.

Everything runs under torch.no_grad on the model's device, reads weights only (after a
one-off traced forward pass at construction, in eval mode, restoring every module's
training flag), and draws initial vectors from a private torch.Generator, never the global
RNG. `state_dict()` holds the warm-start vectors, so a restored trial continues with the
same numbers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from common.names import (
    NORM_FROBENIUS,
    NORM_GROUP21,
    NORM_L1,
    NORM_SPECTRAL_COMPLEXITY,
    NORM_SPECTRAL_PRODUCT,
)
from trainers.norms_layers import Layer, Op, build_layers
from trainers.norms_ops import (
    DEFAULT_N_ITER,
    DEFAULT_TOL,
    PowerResult,
    check_iteration_args,
    conv_operator_norm,
    group21,
    matrix_operator_norm,
    power_iteration,
    random_unit,
    reshaped_kernel_matrix,
    reshaped_kernel_norm,
    spectral_complexity,
    work_dtype,
)
from trainers.norms_paper import paper_code_norms

__all__ = [
    "CONV_MODES",
    "NormTracker",
    "PowerResult",
    "conv_operator_norm",
    "group21",
    "matrix_operator_norm",
    "paper_code_norms",
    "power_iteration",
    "reshaped_kernel_matrix",
    "reshaped_kernel_norm",
    "spectral_complexity",
]

CONV_MODES = ("operator", "reshaped")


class NormTracker:
    """Computes the DEEP_NORMS of a model once per logged epoch, warm-starting each call.

    `input_shape` is one example's shape, (C, H, W) for images or (D,) for an MLP: the
    operator norm of a convolution depends on the size of the feature map it acts on.
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        conv_mode: str = "operator",
        n_iter: int = DEFAULT_N_ITER,
        tol: float = DEFAULT_TOL,
        seed: int = 0,
    ):
        if conv_mode not in CONV_MODES:
            raise ValueError(f"conv_mode must be one of {CONV_MODES}, got {conv_mode!r}")
        check_iteration_args(n_iter, tol)
        shape = tuple(input_shape) if isinstance(input_shape, tuple | list) else None
        if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"input_shape must be a tuple of positive ints, got {input_shape!r}")
        self.input_shape = shape
        self.conv_mode = conv_mode
        self.n_iter = n_iter
        self.tol = tol
        self.layers: list[Layer] = build_layers(model, shape)
        mods = dict(model.named_modules())
        self._types = {  # checked on every call: the model must be the same architecture
            n: type(mods[n])
            for lay in self.layers
            for op in lay.ops
            for n in (op.module, op.row_bn, op.col_ln)
            if n is not None
        }
        self._generator = torch.Generator().manual_seed(seed)
        self._vectors: dict[str, Tensor] = {}
        self.last_iterations: dict[str, int] = {}  # power iterations per layer, last call
        self.last_sigmas: dict[str, float] = {}  # ||A_i||_sigma per layer, last call

    # --- the per-epoch call -------------------------------------------------------------------

    def __call__(self, model: nn.Module) -> dict[str, float]:
        mods = dict(model.named_modules())
        wrong = [n for n, t in self._types.items() if type(mods.get(n)) is not t]
        if wrong:
            raise ValueError(
                f"model: differs from the one this NormTracker was built for at {wrong}"
            )
        sigmas: list[float] = []
        sums: list[Tensor] = []  # per layer: ||A^T - M^T||_{2,1}, L1, Frobenius^2, G21
        self.last_iterations = {}
        with torch.no_grad():
            for layer in self.layers:
                weights = [op.weight(mods) for op in layer.ops]
                mats = [
                    op.matrix(w).to(torch.float64) for op, w in zip(layer.ops, weights, strict=True)
                ]
                rows = torch.stack([m.pow(2).sum(1) for m in mats]).sum(0)
                sums.append(
                    torch.stack(
                        [
                            rows.sqrt().sum(),
                            sum(m.abs().sum() for m in mats),
                            sum(m.pow(2).sum() for m in mats),
                            sum(group21(m) for m in mats),
                        ]
                    ).cpu()
                )
                sigmas.append(self._sigma(layer, weights, mods))
        self.last_sigmas = {lay.name: s for lay, s in zip(self.layers, sigmas, strict=True)}
        dist21, l1, fro2, g21 = torch.stack(sums).T.tolist()
        return {
            NORM_SPECTRAL_COMPLEXITY: spectral_complexity(sigmas, dist21),
            NORM_SPECTRAL_PRODUCT: math.exp(math.fsum(math.log(s) for s in sigmas)),
            NORM_L1: math.fsum(l1),
            NORM_FROBENIUS: math.sqrt(math.fsum(fro2)),
            NORM_GROUP21: math.fsum(g21),
        }

    def _sigma(self, layer: Layer, weights: list[Tensor], mods: dict[str, nn.Module]) -> float:
        """||A_i||_sigma of one layer (residual roles as in the module docstring)."""
        if len(layer.ops) == 1:
            s = self._op_sigma(layer.name, layer.ops[0], weights[0], mods)
            return s if layer.role == "plain" else math.sqrt(1.0 + s * s)
        # Projection merge A = [B2K2, S]: sigma^2 = lambda_max(B2K2 (B2K2)^T + S S^T).
        (a, b), (wa, wb) = layer.ops, weights
        shape = a.vector_shape(wa, self.conv_mode, "out")
        if b.vector_shape(wb, self.conv_mode, "out") != shape:
            raise ValueError(f"layer {layer.name!r}: branch and shortcut outputs differ in shape")
        wa, wb = _work(wa), _work(wb)

        def gram(y: Tensor) -> Tensor:
            ya = a.apply(wa, a.adjoint(wa, y, mods, self.conv_mode), mods, self.conv_mode)
            yb = b.apply(wb, b.adjoint(wb, y, mods, self.conv_mode), mods, self.conv_mode)
            return ya + yb

        return self._iterate(layer.name, gram, shape, wa)

    def _op_sigma(self, key: str, op: Op, w: Tensor, mods: dict[str, nn.Module]) -> float:
        if op.kind == "diag":
            return float(w.abs().max())
        if op.kind == "conv" and self.conv_mode == "reshaped":
            # Exact SVD, as the paper's code; the (out, in*k*k) matrix is small.
            return reshaped_kernel_norm(w)
        w = _work(w)
        shape = op.vector_shape(w, self.conv_mode, "in")

        def gram(v: Tensor) -> Tensor:
            return op.adjoint(w, op.apply(w, v, mods, self.conv_mode), mods, self.conv_mode)

        return self._iterate(key, gram, shape, w)

    def _iterate(self, key: str, gram, shape: tuple[int, ...], like: Tensor) -> float:
        v0 = self._vectors.get(key)
        if v0 is None:
            v0 = random_unit(shape, self._generator, like)
        elif tuple(v0.shape) != shape:
            raise ValueError(
                f"warm-start vector for {key!r} has shape {tuple(v0.shape)}, expected {shape}"
            )
        res = power_iteration(gram, v0.to(like), self.n_iter, self.tol)
        self._vectors[key] = res.vector
        self.last_iterations[key] = res.iterations
        return res.sigma

    # --- checkpointing ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Warm-start vectors (CPU copies) and the private generator's state."""
        return {
            "conv_mode": self.conv_mode,
            "vectors": {k: v.detach().cpu().clone() for k, v in self._vectors.items()},
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, d: dict) -> None:
        """Restore `state_dict()` output; refuses vectors of layers this tracker lacks."""
        if not isinstance(d, dict) or "vectors" not in d or "generator" not in d:
            raise ValueError("d: expected the dict returned by NormTracker.state_dict()")
        if d.get("conv_mode", self.conv_mode) != self.conv_mode:
            raise ValueError(
                f"d: saved with conv_mode={d['conv_mode']!r}, this tracker uses {self.conv_mode!r}"
            )
        names = {lay.name for lay in self.layers}
        unknown = sorted(set(d["vectors"]) - names)
        if unknown:
            raise ValueError(f"d: warm-start vectors for unknown layers {unknown}")
        self._vectors = {k: v.clone() for k, v in d["vectors"].items()}
        self._generator.set_state(d["generator"])


def _work(w: Tensor) -> Tensor:
    return w.to(work_dtype(w))
