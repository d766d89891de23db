"""Pure norm computations behind `trainers.norms` (Eq. 6 and Appendix J of the paper).

Conventions (Bartlett, Foster & Telgarsky 2017, the source of Eq. 6):
- A layer's matrix A acts as y = A x, so a row of A belongs to one output unit.
- ||A||_{p,q} is the q-norm of the vector of p-norms of the *columns* of A. Hence
  `group21(A)` = sum over columns of their l2 norms (exactly App. J's G21 formula), and the
  Eq. 6 term ||A^T - M^T||_{2,1} = `group21((A - M).T)` = sum over *rows* of A - M of their
  l2 norms. The paper's prose ("average of the l2-norms of the column vectors") disagrees
  with both Bartlett et al. and App. J; we use the sum, as they do.
- ||A||_sigma is the largest singular value, computed by power iteration on the Gram
  operator A^T A, warm-started and run to a relative tolerance (with an iteration cap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_N_ITER = 500  # cap only; warm-started calls converge in a handful of iterations
DEFAULT_TOL = 1e-5  # relative change of sigma between two iterations


class PowerResult(NamedTuple):
    """Largest singular value `sigma`, its (unit) right singular vector, iterations used."""

    sigma: float
    vector: Tensor
    iterations: int


def check_iteration_args(n_iter: int, tol: float) -> None:
    """Raise a ValueError naming the parameter when the power-iteration knobs are invalid."""
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive int, got {n_iter!r}")
    if not isinstance(tol, (int, float)) or not math.isfinite(tol) or not 0 < tol < 1:
        raise ValueError(f"tol must be a float in (0, 1), got {tol!r}")


def random_unit(shape: Sequence[int], generator: torch.Generator, like: Tensor) -> Tensor:
    """A random unit vector from a private CPU generator (never the global torch RNG)."""
    v = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
    v = v.to(device=like.device, dtype=work_dtype(like))
    return v / v.norm()


def work_dtype(t: Tensor) -> torch.dtype:
    """The dtype every norm computation works in: at least float32 (the one dtype rule).

    Half precision is too coarse for a 1e-5 power-iteration tolerance; float64 stays float64.
    """
    return torch.promote_types(t.dtype, torch.float32)


def power_iteration(
    gram: Callable[[Tensor], Tensor],
    v0: Tensor,
    n_iter: int = DEFAULT_N_ITER,
    tol: float = DEFAULT_TOL,
) -> PowerResult:
    """sigma_max(A) from the Gram map v -> A^T A v by power iteration.

    The Rayleigh quotient <v, A^T A v> (v a unit vector) rises monotonically to sigma_max^2;
    we stop when sigma changes by less than `tol` relative, or after `n_iter` iterations.
    At least two iterations run, so a stale warm-start vector is always checked. A
    convolution's top singular values come in near-degenerate pairs (frequencies +-w, split
    only by the zero padding): there the vector converges slowly, but sigma is already
    correct to within the split, which the stopping rule then accepts.
    """
    check_iteration_args(n_iter, tol)
    v = v0 / v0.norm()
    sigma_prev = -1.0
    sigma = 0.0
    it = 0
    for it in range(1, n_iter + 1):
        w = gram(v)
        lam = float(torch.dot(v.reshape(-1), w.reshape(-1)))
        w_norm = w.norm()
        if float(w_norm) == 0.0:  # A == 0: every vector is a singular vector
            return PowerResult(0.0, v, it)
        sigma = math.sqrt(max(lam, 0.0))
        v = w / w_norm
        if it >= 2 and abs(sigma - sigma_prev) <= tol * sigma:
            break
        sigma_prev = sigma
    return PowerResult(sigma, v, it)


# --- convolution as a linear operator ---------------------------------------------------------


def conv_geometry(conv: nn.Conv2d) -> tuple[tuple[int, int], ...]:
    """(stride, padding, dilation) of a Conv2d as int pairs; zero padding only."""
    if conv.padding_mode != "zeros":
        # With circular/reflect padding conv_transpose2d is not the adjoint.
        raise NotImplementedError(
            f"conv padding_mode={conv.padding_mode!r} is not supported (only 'zeros')"
        )
    k, d = conv.kernel_size, conv.dilation
    if conv.padding == "valid":
        pad = (0, 0)
    elif conv.padding == "same":
        totals = [d[i] * (k[i] - 1) for i in range(2)]
        if any(t % 2 for t in totals):
            raise NotImplementedError("conv padding='same' with asymmetric padding")
        pad = (totals[0] // 2, totals[1] // 2)
    else:
        pad = tuple(conv.padding)
    return tuple(conv.stride), pad, tuple(d)


def _conv_out_hw(conv: nn.Conv2d, hw: Sequence[int]) -> tuple[int, int]:
    stride, pad, dil = conv_geometry(conv)
    k = conv.kernel_size
    return tuple((hw[i] + 2 * pad[i] - dil[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(2))


def conv_apply(conv: nn.Conv2d, weight: Tensor, x: Tensor) -> Tensor:
    """The bias-free convolution x -> K * x with the layer's stride/padding/dilation/groups."""
    stride, pad, dil = conv_geometry(conv)
    return F.conv2d(x, weight, None, stride, pad, dil, conv.groups)


def conv_adjoint(conv: nn.Conv2d, weight: Tensor, y: Tensor, in_hw: Sequence[int]) -> Tensor:
    """The exact adjoint of `conv_apply` onto inputs of spatial size `in_hw`.

    conv_transpose2d alone returns the smallest input size consistent with the output; when
    the stride drops trailing rows/columns, output_padding restores them (as zeros), so that
    <K x, y> = <x, K^T y> holds on the true input space.
    """
    stride, pad, dil = conv_geometry(conv)
    k = conv.kernel_size
    out_hw = y.shape[-2:]
    base = [(out_hw[i] - 1) * stride[i] - 2 * pad[i] + dil[i] * (k[i] - 1) + 1 for i in range(2)]
    out_pad = tuple(in_hw[i] - base[i] for i in range(2))
    return F.conv_transpose2d(y, weight, None, stride, pad, out_pad, conv.groups, dil)


def check_conv_input_shape(conv: nn.Conv2d, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """Validate (C, H, W) of one example for `conv`; return it as a tuple."""
    shape = tuple(input_shape)
    if len(shape) != 3 or any(not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"input_shape must be (C, H, W) of positive ints, got {input_shape!r}")
    if shape[0] != conv.in_channels:
        raise ValueError(
            f"input_shape has {shape[0]} channels but the conv expects {conv.in_channels}"
        )
    if min(_conv_out_hw(conv, shape[1:])) < 1:
        raise ValueError(f"input_shape {shape} is too small for this convolution")
    return shape


def conv_operator_norm(
    conv: nn.Conv2d,
    input_shape: Sequence[int],
    v0: Tensor | None = None,
    n_iter: int = DEFAULT_N_ITER,
    tol: float = DEFAULT_TOL,
    weight: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> PowerResult:
    """Spectral norm of the true convolution operator on inputs of shape (C, H, W).

    Power iteration alternating F.conv2d and its exact adjoint F.conv_transpose2d (see
    `conv_adjoint`), with the layer's stride, padding, dilation and groups. `weight`
    overrides the layer's kernel (e.g. with a folded BatchNorm scale); the bias is excluded
    because it does not enter A_i. `v0` (shape (1, C, H, W)) warm-starts the iteration.
    """
    shape = check_conv_input_shape(conv, input_shape)
    w = conv.weight if weight is None else weight
    w = w.detach().to(work_dtype(w))
    if v0 is None:
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        v0 = random_unit((1, *shape), gen, w)
    elif tuple(v0.shape) != (1, *shape):
        raise ValueError(f"v0 must have shape {(1, *shape)}, got {tuple(v0.shape)}")
    with torch.no_grad():
        return power_iteration(
            lambda v: conv_adjoint(conv, w, conv_apply(conv, w, v), shape[1:]),
            v0.to(device=w.device, dtype=w.dtype),
            n_iter,
            tol,
        )


def matrix_operator_norm(
    A: Tensor,
    v0: Tensor | None = None,
    n_iter: int = DEFAULT_N_ITER,
    tol: float = DEFAULT_TOL,
    generator: torch.Generator | None = None,
) -> PowerResult:
    """Spectral norm of a matrix by warm-started power iteration on A^T A.

    The iteration vector lives in the input space (length A.shape[1]); for a wide matrix the
    cheaper A A^T would do, but one convention keeps warm-start vectors simple.
    """
    if A.dim() != 2:
        raise ValueError(f"A must be a 2-D matrix, got shape {tuple(A.shape)}")
    A = A.detach().to(work_dtype(A))
    if v0 is None:
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        v0 = random_unit((A.shape[1],), gen, A)
    elif tuple(v0.shape) != (A.shape[1],):
        raise ValueError(f"v0 must have shape {(A.shape[1],)}, got {tuple(v0.shape)}")
    with torch.no_grad():
        return power_iteration(lambda v: A.T @ (A @ v), v0.to(A), n_iter, tol)


def reshaped_kernel_matrix(weight: Tensor) -> Tensor:
    """A conv kernel (out, in/groups, kh, kw) as the matrix (out, in/groups * kh * kw).

    This is the matrix we use for every *entry-wise* norm of a conv layer (L1, Frobenius,
    (2,1)): its entries are the layer's parameters, each counted once (the unrolled operator
    repeats each filter at every output position, which would tie those norms to the image
    size). A linear layer's weight is returned unchanged.
    """
    return weight.reshape(weight.shape[0], -1)


def reshaped_kernel_norm(weight: Tensor) -> float:
    """The paper's code's conv "spectral norm": sigma_max of `reshaped_kernel_matrix` (SVD).

    Not the norm of the convolution operator: for a k x k stride-1 'same' conv the operator
    norm can exceed it by up to a factor k. Kept only as conv_mode="reshaped".
    """
    m = reshaped_kernel_matrix(weight.detach()).to(work_dtype(weight))
    return float(torch.linalg.matrix_norm(m, ord=2))


# --- entry-wise norms and Eq. 6 ---------------------------------------------------------------


def group21(A: Tensor) -> Tensor:
    """||A||_{2,1}: the sum over columns of A of their l2 norms (App. J, G21; Bartlett et al.)."""
    if A.dim() != 2:
        raise ValueError(f"A must be a 2-D matrix, got shape {tuple(A.shape)}")
    return A.norm(dim=0).sum()


def spectral_complexity(
    sigmas: Sequence[float],
    dist21: Sequence[float],
    rhos: Sequence[float] | None = None,
) -> float:
    """Eq. 6: R_A = (prod_i rho_i s_i) (sum_i (||A_i^T - M_i^T||_{2,1} / s_i)^{2/3})^{3/2}.

    `sigmas[i]` = s_i = ||A_i||_sigma, `dist21[i]` = ||A_i^T - M_i^T||_{2,1}, `rhos[i]` the
    activation's Lipschitz constant (default 1 for every layer). Computed in log space so a
    deep product neither under- nor overflows before the end.
    """
    if len(sigmas) == 0 or len(sigmas) != len(dist21):
        raise ValueError(
            f"sigmas and dist21 must be non-empty and of equal length "
            f"(got {len(sigmas)} and {len(dist21)})"
        )
    rhos = [1.0] * len(sigmas) if rhos is None else list(rhos)
    if len(rhos) != len(sigmas):
        raise ValueError(f"rhos has length {len(rhos)}, expected {len(sigmas)}")
    if any(not s > 0 for s in sigmas):
        raise ValueError(f"sigmas must all be positive, got {list(sigmas)}")
    if any(not r > 0 for r in rhos) or any(d < 0 for d in dist21):
        raise ValueError("rhos must be positive and dist21 non-negative")
    log_prod = math.fsum(math.log(r * s) for r, s in zip(rhos, sigmas, strict=True))
    total = math.fsum((d / s) ** (2.0 / 3.0) for d, s in zip(dist21, sigmas, strict=True))
    if total == 0.0:
        return 0.0
    return math.exp(log_prod + 1.5 * math.log(total))
