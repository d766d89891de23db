"""From a model to the chain of layers A_1 ... A_L of Eq. 6 (helper of `trainers.norms`).

One forward pass on a zero input (eval mode, no grad) is traced with module hooks. It gives
each Conv2d its true input feature-map size, the execution order, and which diagonal scales
(BatchNorm, LayerNorm) can be folded exactly into an adjacent conv/linear map: a tensor
produced by one module and consumed unchanged by the next is recognised by its identity and
version counter (an in-place ReLU in between bumps the version and prevents a wrong fold).
The layer treatments themselves are documented in `trainers.norms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from trainers.norms_ops import conv_adjoint, conv_apply, reshaped_kernel_matrix

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_TRACED = (nn.Conv2d, nn.Linear, *_BN, nn.LayerNorm)


@dataclass
class Op:
    """One parameterised linear map: a Conv2d/Linear module with folded diagonal scales,
    or a standalone diagonal scale (a BatchNorm/LayerNorm that could not be folded)."""

    kind: str  # "conv" | "linear" | "diag"
    module: str  # qualified module name in model.named_modules()
    in_shape: tuple[int, ...]  # one example's input shape, as traced
    out_shape: tuple[int, ...]
    row_bn: str | None = None  # BatchNorm after it: scales output channels (rows)
    col_ln: str | None = None  # LayerNorm before it: its gamma scales input features (columns)

    def weight(self, mods: dict[str, nn.Module]) -> Tensor:
        """Effective weight: conv kernel / linear matrix with folded scales, or diag vector."""
        m = mods[self.module]
        if self.kind == "diag":
            return diag_scale(m)
        w = m.weight.detach()
        if self.row_bn is not None:
            s = diag_scale(mods[self.row_bn])
            w = w * s.reshape(-1, *([1] * (w.dim() - 1)))
        if self.col_ln is not None:
            w = w * diag_scale(mods[self.col_ln]).reshape(1, -1)
        return w

    def matrix(self, w: Tensor) -> Tensor:
        """The 2-D matrix of the entry-wise norms (conv: reshaped kernel; diag: diag(s))."""
        return torch.diag(w) if self.kind == "diag" else reshaped_kernel_matrix(w)

    def vector_shape(self, w: Tensor, mode: str, side: str) -> tuple[int, ...]:
        """Shape of an input- (side="in") or output-space vector of the operator."""
        if self.kind == "conv" and mode == "operator":
            return (1, *(self.in_shape if side == "in" else self.out_shape))
        m = self.matrix(w)
        return (m.shape[1],) if side == "in" else (m.shape[0],)

    def apply(self, w: Tensor, x: Tensor, mods: dict[str, nn.Module], mode: str) -> Tensor:
        if self.kind == "conv" and mode == "operator":
            return conv_apply(mods[self.module], w, x)
        return self.matrix(w) @ x

    def adjoint(self, w: Tensor, y: Tensor, mods: dict[str, nn.Module], mode: str) -> Tensor:
        if self.kind == "conv" and mode == "operator":
            return conv_adjoint(mods[self.module], w, y, self.in_shape[1:])
        return self.matrix(w).T @ y


@dataclass
class Layer:
    """A layer of Eq. 6. role: "plain" (M = 0), "carry" or "merge" (residual, see norms.py).

    A merge has one op (identity skip, M = [0, I]) or two (branch end + projection shortcut,
    M = 0). `name` keys the warm-start vector."""

    name: str
    role: str
    ops: list[Op] = field(default_factory=list)


def diag_scale(m: nn.Module) -> Tensor:
    """Per-channel scale of a BatchNorm in eval mode (gamma / sqrt(running_var + eps)), or the
    elementwise gamma of a LayerNorm (flattened); ones where there is no affine weight."""
    if isinstance(m, _BN):
        if m.running_var is None:
            raise NotImplementedError(
                f"BatchNorm without running statistics (track_running_stats=False) has no "
                f"fixed linear map: {m}"
            )
        s = torch.rsqrt(m.running_var.detach() + m.eps)
        return s * m.weight.detach() if m.weight is not None else s
    if isinstance(m, nn.LayerNorm):
        if m.weight is None:
            return torch.ones(m.normalized_shape).reshape(-1)
        return m.weight.detach().reshape(-1)
    raise TypeError(f"not a BatchNorm/LayerNorm: {type(m).__name__}")


# --- tracing ----------------------------------------------------------------------------------


@dataclass
class _Call:
    name: str
    module: nn.Module
    in_key: tuple[int, int]
    out_key: tuple[int, int]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


def _key(t: Tensor) -> tuple[int, int]:
    return (id(t), t._version)


def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> list[_Call]:
    """Run one forward pass on zeros of (1, *input_shape); record traced module calls.

    Eval mode (so BatchNorm neither needs a batch > 1 nor updates its running statistics,
    and Dropout draws no random numbers); each module's own training flag is restored.
    """
    params = list(model.parameters())
    if not params:
        raise ValueError("model has no parameters")
    calls: list[_Call] = []
    keep: list[Tensor] = []  # keeps traced tensors alive so their ids are not reused

    def hook(name: str):
        def fn(mod: nn.Module, args: tuple, out: Tensor) -> None:
            if not args or not isinstance(args[0], Tensor):
                raise NotImplementedError(f"module {name!r} was not called with a tensor input")
            x = args[0]
            keep.extend((x, out))
            calls.append(
                _Call(name, mod, _key(x), _key(out), tuple(x.shape[1:]), tuple(out.shape[1:]))
            )

        return fn

    handles = []
    for name, m in model.named_modules():
        if isinstance(m, _TRACED):
            handles.append(m.register_forward_hook(hook(name)))
        elif not list(m.children()) and any(True for _ in m.parameters(recurse=False)):
            raise NotImplementedError(
                f"module {name!r} ({type(m).__name__}) has weights but is not a supported "
                f"layer type (Conv2d, Linear, BatchNorm1d/2d, LayerNorm)"
            )
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            x = torch.zeros((1, *input_shape), dtype=params[0].dtype, device=params[0].device)
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    names = [c.name for c in calls]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise NotImplementedError(f"modules called more than once per forward: {repeated}")
    traced = set(names)
    missing = [n for n, m in model.named_modules() if isinstance(m, _TRACED) and n not in traced]
    if missing:
        # e.g. a Linear whose weight is used functionally; skipping it would hide a layer.
        raise NotImplementedError(f"layers not called in the forward pass: {missing}")
    return calls


def _ops_from_calls(calls: list[_Call]) -> list[Op]:
    """Ops in execution order, with BatchNorm/LayerNorm folded where the tensor flows directly."""
    ops: list[Op] = []
    by_output: dict[tuple[int, int], Op] = {}  # conv/linear output -> its op (for BN folding)
    ln_output: dict[tuple[int, int], Op] = {}  # LayerNorm output -> its standalone diag op
    folded_ln: set[str] = set()
    for c in calls:
        m = c.module
        if isinstance(m, nn.Conv2d | nn.Linear):
            op = Op(
                "conv" if isinstance(m, nn.Conv2d) else "linear", c.name, c.in_shape, c.out_shape
            )
            ln = ln_output.get(c.in_key)
            if ln is not None and isinstance(m, nn.Linear) and ln_numel(ln, calls) == m.in_features:
                op.col_ln = ln.module
                folded_ln.add(ln.module)
            ops.append(op)
            by_output[c.out_key] = op
        elif isinstance(m, _BN):
            prev = by_output.get(c.in_key)
            if prev is not None and prev.row_bn is None:
                prev.row_bn = c.name
            else:
                ops.append(Op("diag", c.name, c.in_shape, c.out_shape))
        elif isinstance(m, nn.LayerNorm) and m.weight is not None:
            op = Op("diag", c.name, c.in_shape, c.out_shape)
            ops.append(op)
            ln_output[c.out_key] = op
    return [op for op in ops if not (op.kind == "diag" and op.module in folded_ln)]


def ln_numel(op: Op, calls: list[_Call]) -> int:
    m = next(c.module for c in calls if c.name == op.module)
    return int(torch.Size(m.normalized_shape).numel())


# --- residual blocks --------------------------------------------------------------------------


def _is_basic_block(m: nn.Module) -> bool:
    return all(hasattr(m, a) for a in ("conv1", "bn1", "conv2", "bn2", "shortcut"))


def _is_transformer_block(m: nn.Module) -> bool:
    attn, mlp = getattr(m, "attn", None), getattr(m, "mlp", None)
    return (
        hasattr(m, "norm1")
        and hasattr(m, "norm2")
        and isinstance(getattr(attn, "qkv", None), nn.Linear)
        and isinstance(getattr(attn, "proj", None), nn.Linear)
        and isinstance(mlp, nn.Sequential)
    )


def _residual_branches(model: nn.Module) -> list[tuple[str, str, str | None, str]]:
    """(first op, last op, shortcut prefix or None, block) for every recognised branch."""
    out = []
    for name, m in model.named_modules():
        p = f"{name}." if name else ""
        if _is_basic_block(m):
            out.append((f"{p}conv1", f"{p}conv2", f"{p}shortcut", name))
        elif _is_transformer_block(m):
            lin = [i for i, sub in enumerate(m.mlp) if isinstance(sub, nn.Linear)]
            if len(lin) != 2:
                raise NotImplementedError(f"{name}.mlp must hold exactly two Linear layers")
            out.append((f"{p}attn.qkv", f"{p}attn.proj", None, name))
            out.append((f"{p}mlp.{lin[0]}", f"{p}mlp.{lin[1]}", None, name))
    return out


def build_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[Layer]:
    """The layers of Eq. 6 in execution order (residual branches lifted, see norms.py)."""
    ops = _ops_from_calls(_trace(model, input_shape))
    by_name = {op.module: op for op in ops}
    role: dict[str, str] = {}
    shortcut_of: dict[str, Op | None] = {}
    consumed: set[str] = set()
    for first, last, sc_prefix, block in _residual_branches(model):
        if first not in by_name or last not in by_name:
            raise NotImplementedError(f"residual block {block!r}: {first}/{last} not traced")
        sc_ops = [op for op in ops if sc_prefix and op.module.startswith(sc_prefix + ".")]
        sc_ops += [op for op in ops if op.module == sc_prefix]
        if len(sc_ops) > 1 or any(op.kind != "conv" for op in sc_ops):
            raise NotImplementedError(
                f"residual block {block!r}: shortcut must be identity or one conv (+ BN)"
            )
        a, b = by_name[first], by_name[last]
        if not sc_ops and a.in_shape != b.out_shape:
            raise NotImplementedError(
                f"residual block {block!r}: a parameter-free shortcut that changes the shape "
                f"is not an identity"
            )
        role[first], role[last] = "carry", "merge"
        shortcut_of[last] = sc_ops[0] if sc_ops else None
        consumed.update(op.module for op in sc_ops)
        stray = [
            op.module
            for op in ops
            if op.kind == "diag" and block and op.module.startswith(block + ".")
        ]
        if stray:
            raise NotImplementedError(
                f"residual block {block!r}: normalisation layers that cannot be folded: {stray}"
            )
    layers = []
    for op in ops:
        if op.module in consumed:
            continue
        r = role.get(op.module, "plain")
        sc = shortcut_of.get(op.module)
        layers.append(Layer(op.module, r, [op] if sc is None else [op, sc]))
    return layers
