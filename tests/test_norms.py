"""trainers.norms against brute force: dense matrices built column by column, numpy SVDs,
explicit Python sums, and Eq. 6 (and App. J) evaluated by hand on tiny networks."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.names import (
    DEEP_NORMS,
    NORM_FROBENIUS,
    NORM_GROUP21,
    NORM_L1,
    NORM_SPECTRAL_COMPLEXITY,
    NORM_SPECTRAL_PRODUCT,
)
from trainers.norms import (
    NormTracker,
    conv_operator_norm,
    group21,
    matrix_operator_norm,
    reshaped_kernel_norm,
    spectral_complexity,
)
from trainers.norms_ops import conv_adjoint, conv_apply

F64 = torch.float64
EXACT = {"n_iter": 600, "tol": 1e-12}  # power iteration run to (near) convergence


def dense_map(f, in_shape: tuple[int, ...]) -> np.ndarray:
    """The matrix of the affine map f (minus its offset f(0)) on inputs of `in_shape`, one
    column per basis vector: brute force, independent of any adjoint or folding logic."""
    n = math.prod(in_shape)
    with torch.no_grad():
        basis = torch.eye(n, dtype=F64).reshape(n, *in_shape)
        zero = torch.zeros(1, *in_shape, dtype=F64)
        cols = f(basis) - f(zero)
    return cols.reshape(n, -1).T.numpy()


def sigma_max(A: np.ndarray) -> float:
    return float(np.linalg.svd(A, compute_uv=False)[0])


def assert_sigma(est: float, A: np.ndarray, rel: float = 1e-6) -> None:
    """est is sigma_max(A) to `rel`, except where the top two singular values are split by
    less than 1e-3 relative: a convolution's come in near-degenerate pairs (frequencies +-w,
    split only by the zero padding), and there power iteration pins sigma down only to within
    the pair, [s2, s1] (the Rayleigh quotient lies between them once the rest has decayed)."""
    s1, s2 = np.linalg.svd(A, compute_uv=False)[:2]
    lo = s2 if (s1 - s2) < 1e-3 * s1 else s1
    assert lo * (1 - rel) <= est <= s1 * (1 + rel), (est, s1, s2)


def row_norm_sum(A: np.ndarray) -> float:
    """||A^T||_{2,1}: the sum of the l2 norms of the rows of A, by explicit Python sums."""
    return sum(math.sqrt(sum(float(a) ** 2 for a in row)) for row in A)


def col_norm_sum(A: np.ndarray) -> float:
    """||A||_{2,1}: the sum of the l2 norms of the columns of A, by explicit Python sums."""
    return row_norm_sum(A.T)


def eq6(sigmas: list[float], dist21: list[float]) -> float:
    """Eq. 6 with rho_i = 1, written out directly."""
    prod = math.prod(sigmas)
    return prod * sum((d / s) ** (2 / 3) for d, s in zip(dist21, sigmas, strict=True)) ** 1.5


# --- convolution operator norm ----------------------------------------------------------------

CONV_CASES = [
    # in_c, out_c, k, stride, padding, dilation, groups, (H, W)
    (2, 3, 3, 1, 1, 1, 1, (6, 6)),
    (3, 4, 3, 2, 1, 1, 1, (8, 8)),  # stride 2 drops a row/column: needs output_padding
    (3, 2, 3, 2, 1, 1, 1, (7, 9)),
    (2, 2, 3, 2, 0, 1, 1, (9, 8)),
    (4, 4, 3, 1, 2, 2, 2, (7, 7)),  # dilation and groups
    (1, 2, 5, 1, 2, 1, 1, (5, 5)),  # kernel as large as the image
    (3, 5, 2, 2, 0, 1, 1, (6, 6)),  # non-overlapping patches
]


def make_conv(in_c, out_c, k, stride, padding, dilation, groups, seed=0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(in_c, out_c, k, stride, padding, dilation, groups, dtype=F64)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_operator_norm_matches_dense_svd(case):
    in_c, out_c, k, s, p, d, g, hw = case
    conv = make_conv(in_c, out_c, k, s, p, d, g)
    shape = (in_c, *hw)
    # bias excluded: A_i is the linear part; dense_map subtracts f(0) anyway
    dense = dense_map(
        lambda x: F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, g),
        shape,
    )
    res = conv_operator_norm(conv, shape, **EXACT)
    assert_sigma(res.sigma, dense)
    assert res.vector.shape == (1, *shape)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_adjoint_is_exact(case):
    in_c, out_c, k, s, p, d, g, hw = case
    conv = make_conv(in_c, out_c, k, s, p, d, g, seed=1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, in_c, *hw, generator=gen, dtype=F64)
    w = conv.weight.detach()
    Kx = conv_apply(conv, w, x)
    y = torch.randn(Kx.shape, generator=gen, dtype=F64)
    KTy = conv_adjoint(conv, w, y, hw)
    assert KTy.shape == x.shape
    assert float((Kx * y).sum()) == pytest.approx(float((x * KTy).sum()), rel=1e-12)


def test_conv_operator_norm_float32_and_warm_start():
    conv = make_conv(3, 4, 3, 2, 1, 1, 1).float()
    shape = (3, 8, 8)
    dense = dense_map(lambda x: F.conv2d(x, conv.weight.double(), None, 2, 1), shape)
    cold = conv_operator_norm(conv, shape, n_iter=5000, tol=1e-7)
    assert cold.sigma == pytest.approx(sigma_max(dense), rel=1e-4)
    warm = conv_operator_norm(conv, shape, v0=cold.vector, n_iter=5000, tol=1e-7)
    assert warm.iterations < cold.iterations
    assert warm.sigma == pytest.approx(cold.sigma, rel=1e-5)


def test_reshaped_kernel_norm_differs_from_operator_norm():
    # A 3x3 averaging-like kernel: the operator amplifies the constant image by the kernel sum
    # (9), while the reshaped (1 x 9) matrix has norm sqrt(9) = 3.
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False, dtype=F64)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    shape = (1, 12, 12)
    op = conv_operator_norm(conv, shape, **EXACT).sigma
    dense = dense_map(lambda x: F.conv2d(x, conv.weight, None, 1, 1), shape)
    assert op == pytest.approx(sigma_max(dense), rel=1e-5)
    assert reshaped_kernel_norm(conv.weight) == pytest.approx(3.0, rel=1e-12)
    assert op > 2.5 * reshaped_kernel_norm(conv.weight)


def test_reshaped_equals_operator_for_non_overlapping_patches():
    # stride = kernel, no padding: the operator is block diagonal in the reshaped matrix
    conv = make_conv(3, 5, 2, 2, 0, 1, 1)
    op = conv_operator_norm(conv, (3, 6, 6), **EXACT).sigma
    assert op == pytest.approx(reshaped_kernel_norm(conv.weight), rel=1e-8)


def test_matrix_operator_norm_matches_svd():
    A = torch.randn(7, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    assert matrix_operator_norm(A, **EXACT).sigma == pytest.approx(sigma_max(A.numpy()), rel=1e-8)


# --- entry-wise norms and Eq. 6 ---------------------------------------------------------------


def test_group21_is_sum_of_column_norms():
    A = torch.randn(4, 6, dtype=F64, generator=torch.Generator().manual_seed(4))
    assert float(group21(A)) == pytest.approx(col_norm_sum(A.numpy()), rel=1e-12)
    # Eq. 6 uses ||A^T||_{2,1}: rows of A
    assert float(group21(A.T)) == pytest.approx(row_norm_sum(A.numpy()), rel=1e-12)


def test_spectral_complexity_formula_and_bad_input():
    assert spectral_complexity([2.0, 3.0], [4.0, 6.0]) == pytest.approx(
        6.0 * (2 * 2 ** (2 / 3)) ** 1.5, rel=1e-12
    )
    assert spectral_complexity([2.0], [1.0], rhos=[0.5]) == pytest.approx(1.0 * 0.5, rel=1e-12)
    with pytest.raises(ValueError, match="sigmas"):
        spectral_complexity([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="sigmas and dist21"):
        spectral_complexity([1.0], [1.0, 2.0])


def test_two_layer_mlp_by_hand():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    got = NormTracker(model, (5,), **EXACT)(model)
    W1, W2 = (m.weight.detach().numpy() for m in (model[0], model[2]))
    s = [sigma_max(W1), sigma_max(W2)]
    d = [row_norm_sum(W1), row_norm_sum(W2)]
    entries = [float(w) for W in (W1, W2) for w in W.ravel()]
    assert got[NORM_SPECTRAL_COMPLEXITY] == pytest.approx(eq6(s, d), rel=1e-8)
    assert got[NORM_SPECTRAL_PRODUCT] == pytest.approx(s[0] * s[1], rel=1e-8)
    assert got[NORM_L1] == pytest.approx(sum(abs(w) for w in entries), rel=1e-12)
    assert got[NORM_FROBENIUS] == pytest.approx(math.sqrt(sum(w * w for w in entries)), rel=1e-12)
    assert got[NORM_GROUP21] == pytest.approx(col_norm_sum(W1) + col_norm_sum(W2), rel=1e-12)


def test_small_cnn_entrywise_norms_by_explicit_sums():
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2)
    ).double()
    tracker = NormTracker(model, (2, 4, 4), **EXACT)
    got = tracker(model)
    K = model[0].weight.detach().numpy()
    W = model[4].weight.detach().numpy()
    # the conv's matrix is its kernel reshaped to (out, in*k*k): columns are (c, kh, kw)
    cols = [
        math.sqrt(sum(float(K[o, c, i, j]) ** 2 for o in range(3)))
        for c in range(2)
        for i in range(3)
        for j in range(3)
    ]
    g21 = sum(cols) + col_norm_sum(W)
    entries = [float(x) for x in K.ravel()] + [float(x) for x in W.ravel()]
    assert got[NORM_GROUP21] == pytest.approx(g21, rel=1e-12)
    assert got[NORM_L1] == pytest.approx(sum(abs(x) for x in entries), rel=1e-12)
    assert got[NORM_FROBENIUS] == pytest.approx(math.sqrt(sum(x * x for x in entries)), rel=1e-12)
    # the conv's spectral norm is that of the operator on the 4x4 map, not of the kernel
    conv_dense = dense_map(lambda x: F.conv2d(x, model[0].weight, None, 1, 1), (2, 4, 4))
    mine = list(tracker.last_sigmas.values())
    assert_sigma(mine[0], conv_dense)
    assert_sigma(mine[1], W)
    d = [row_norm_sum(K.reshape(3, -1)), row_norm_sum(W)]
    assert got[NORM_SPECTRAL_PRODUCT] == pytest.approx(mine[0] * mine[1], rel=1e-12)
    assert got[NORM_SPECTRAL_COMPLEXITY] == pytest.approx(eq6(mine, d), rel=1e-12)


# --- residual network by hand -----------------------------------------------------------------


class Block(nn.Module):
    """A BasicBlock (duck-typed: .conv1 .bn1 .conv2 .bn2 .shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.block1 = Block(2, 2, 1)  # identity shortcut
        self.block2 = Block(2, 3, 2)  # projection shortcut
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, 4)

    def forward(self, x):
        x = self.block2(self.block1(F.relu(self.bn(self.stem(x)))))
        return self.head(self.pool(x).flatten(1))


def randomise_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (so the fold is exercised)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen, dtype=F64) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen, dtype=F64))
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen, dtype=F64))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen, dtype=F64) + 0.2)


def bn_scale(bn: nn.BatchNorm2d) -> np.ndarray:
    return (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()


def test_tiny_resnet_by_hand():
    torch.manual_seed(7)
    model = TinyResNet().double()
    randomise_bn(model, 8)
    model.eval()  # dense_map runs the modules: BN must use its running statistics
    b1, b2 = model.block1, model.block2
    x_shape, h_shape = (2, 6, 6), (3, 3, 3)
    # the dense (eval-mode) maps, obtained by running the modules themselves
    stem = dense_map(lambda x: model.bn(model.stem(x)), (1, 6, 6))
    k11 = dense_map(lambda x: b1.bn1(b1.conv1(x)), x_shape)
    k12 = dense_map(lambda x: b1.bn2(b1.conv2(x)), x_shape)
    k21 = dense_map(lambda x: b2.bn1(b2.conv1(x)), x_shape)
    k22 = dense_map(lambda x: b2.bn2(b2.conv2(x)), h_shape)
    sc2 = dense_map(b2.shortcut, x_shape)
    head = model.head.weight.detach().numpy()
    eye = np.eye(math.prod(x_shape))
    # lifted residual layers: carry [K1; I], merge [K2, I] or [K2, S]
    A = [
        stem,
        np.vstack([k11, eye]),
        np.hstack([k12, eye]),
        np.vstack([k21, eye]),
        np.hstack([k22, sc2]),
        head,
    ]
    sigmas = [sigma_max(a) for a in A]

    def folded(conv, bn):  # reshaped kernel with the BN scale on its rows
        return conv.weight.detach().numpy().reshape(conv.out_channels, -1) * bn_scale(bn)[:, None]

    stem_m = folded(model.stem, model.bn)
    mats = [
        stem_m,
        folded(b1.conv1, b1.bn1),
        folded(b1.conv2, b1.bn2),
        folded(b2.conv1, b2.bn1),
        np.hstack([folded(b2.conv2, b2.bn2), folded(b2.shortcut[0], b2.shortcut[1])]),
        head,
    ]
    dist21 = [row_norm_sum(m) for m in mats]  # A - M: the identity blocks drop out
    model.train()  # the tracker must work (and trace) from train mode too
    tracker = NormTracker(model, (1, 6, 6), **EXACT)
    got = tracker(model)
    for est, a in zip(tracker.last_sigmas.values(), A, strict=True):
        assert_sigma(est, a)
    mine = list(tracker.last_sigmas.values())
    assert got[NORM_SPECTRAL_COMPLEXITY] == pytest.approx(eq6(mine, dist21), rel=1e-12)
    assert got[NORM_SPECTRAL_COMPLEXITY] == pytest.approx(eq6(sigmas, dist21), rel=1e-4)
    assert got[NORM_SPECTRAL_PRODUCT] == pytest.approx(math.prod(sigmas), rel=1e-4)
    assert got[NORM_L1] == pytest.approx(sum(np.abs(m).sum() for m in mats), rel=1e-12)
    assert got[NORM_FROBENIUS] == pytest.approx(
        math.sqrt(sum((m**2).sum() for m in mats)), rel=1e-12
    )
    assert got[NORM_GROUP21] == pytest.approx(sum(col_norm_sum(m) for m in mats), rel=1e-12)


def test_tiny_resnet_reshaped_mode_differs():
    torch.manual_seed(9)
    model = TinyResNet().double()
    op = NormTracker(model, (1, 6, 6), conv_mode="operator")(model)
    rs = NormTracker(model, (1, 6, 6), conv_mode="reshaped")(model)
    assert op[NORM_L1] == rs[NORM_L1]  # entry-wise norms do not depend on conv_mode
    assert op[NORM_SPECTRAL_PRODUCT] != pytest.approx(rs[NORM_SPECTRAL_PRODUCT], rel=1e-3)


# --- normalisation layers ---------------------------------------------------------------------


def test_layernorm_folded_into_linear_and_standalone_batchnorm():
    torch.manual_seed(10)
    model = nn.Sequential(
        nn.BatchNorm1d(4), nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 3)
    ).double()
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        model[0].weight.copy_(torch.rand(4, generator=gen, dtype=F64) + 0.5)
        model[0].running_var.copy_(torch.rand(4, generator=gen, dtype=F64) + 0.5)
        model[2].weight.copy_(torch.randn(6, generator=gen, dtype=F64))
    tracker = NormTracker(model, (4,), **EXACT)
    assert [lay.name for lay in tracker.layers] == ["0", "1", "3"]
    got = tracker(model)
    bn = model[0]
    d0 = np.diag((bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy())
    W1 = model[1].weight.detach().numpy()
    W3 = model[3].weight.detach().numpy() * model[2].weight.detach().numpy()[None, :]
    mats = [d0, W1, W3]
    s = [sigma_max(m) for m in mats]
    assert got[NORM_SPECTRAL_COMPLEXITY] == pytest.approx(
        eq6(s, [row_norm_sum(m) for m in mats]), rel=1e-8
    )


def test_inplace_relu_between_conv_and_bn_prevents_folding():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.BatchNorm2d(2))
    tracker = NormTracker(model, (1, 5, 5))
    assert [(lay.name, lay.ops[0].kind) for lay in tracker.layers] == [("0", "conv"), ("2", "diag")]
    folded = NormTracker(nn.Sequential(*list(model)[:1], model[2], model[1]), (1, 5, 5))
    assert [lay.ops[0].row_bn for lay in folded.layers] == ["1"]


# --- state, RNG, model state ------------------------------------------------------------------


def test_state_dict_round_trip_gives_identical_results():
    torch.manual_seed(12)
    model = TinyResNet()
    a = NormTracker(model, (1, 6, 6))
    a(model)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    expected = a(model)
    b = NormTracker(model, (1, 6, 6))
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    assert b(model) == expected  # bit-identical
    fresh = NormTracker(model, (1, 6, 6), seed=1)(model)
    assert fresh[NORM_SPECTRAL_PRODUCT] == pytest.approx(expected[NORM_SPECTRAL_PRODUCT], rel=1e-3)


def test_warm_start_needs_few_iterations():
    torch.manual_seed(13)
    model = TinyResNet()
    tracker = NormTracker(model, (1, 6, 6))
    tracker(model)
    cold = dict(tracker.last_iterations)
    tracker(model)
    assert max(tracker.last_iterations.values()) <= 3
    assert sum(tracker.last_iterations.values()) < sum(cold.values())


def test_tracker_leaves_rng_and_model_state_alone():
    torch.manual_seed(14)
    model = TinyResNet()
    model.train()
    model.block2.eval()  # a mixed state must come back exactly
    flags = {n: m.training for n, m in model.named_modules()}
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    tracker = NormTracker(model, (1, 6, 6))
    tracker(model)
    tracker(model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert {n: m.training for n, m in model.named_modules()} == flags
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included


# --- bad input --------------------------------------------------------------------------------


def test_bad_input_names_the_parameter():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="conv_mode"):
        NormTracker(model, (3,), conv_mode="kernel")
    with pytest.raises(ValueError, match="n_iter"):
        NormTracker(model, (3,), n_iter=0)
    with pytest.raises(ValueError, match="tol"):
        NormTracker(model, (3,), tol=-1.0)
    with pytest.raises(ValueError, match="input_shape"):
        NormTracker(model, (0,))
    with pytest.raises(ValueError, match="input_shape"):
        conv_operator_norm(nn.Conv2d(2, 2, 3), (3, 5, 5))
    with pytest.raises(ValueError, match="v0"):
        conv_operator_norm(nn.Conv2d(2, 2, 3), (2, 5, 5), v0=torch.ones(1, 2, 4, 4))
    with pytest.raises(NotImplementedError, match="Conv1d"):
        NormTracker(nn.Sequential(nn.Conv1d(1, 1, 3)), (1, 8))
    circ = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular"))
    with pytest.raises(NotImplementedError, match="padding_mode"):
        NormTracker(circ, (1, 5, 5))(circ)
    tracker = NormTracker(model, (3,))
    with pytest.raises(ValueError, match="model"):
        tracker(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="unknown layers"):
        tracker.load_state_dict({"vectors": {"nope": torch.ones(3)}, "generator": None})


# --- the project's models ---------------------------------------------------------------------

models = pytest.importorskip("trainers.models")


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda s: models.CNN(s, 10), (1, 28, 28)),
        (lambda s: models.ResNet(s, 10, width=4, blocks=1), (3, 16, 16)),
        (lambda s: models.ViT(s, 10, patch=8, dim=16, depth=2, heads=2), (3, 32, 32)),
    ],
    ids=["cnn", "resnet", "vit"],
)
def test_project_models(build, shape):
    torch.manual_seed(15)
    model = build(shape)
    tracker = NormTracker(model, shape)
    got = tracker(model)
    assert set(got) == set(DEEP_NORMS)
    assert all(math.isfinite(v) and v > 0 for v in got.values())
    # every weight matrix is counted (shortcut convs inside their merge layer)
    counted = {op.module for lay in tracker.layers for op in lay.ops if op.kind != "diag"}
    weights = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    assert counted == weights
    roles = [lay.role for lay in tracker.layers]
    assert roles.count("carry") == roles.count("merge")
    n_blocks = sum(type(m).__name__ in ("BasicBlock", "TransformerBlock") for m in model.modules())
    per_block = 2 if isinstance(model, models.ViT) else 1
    assert roles.count("merge") == per_block * n_blocks
