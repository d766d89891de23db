"""The authors' norm definitions (trainers/norms_paper.py) against explicit dense numpy
computations on tiny instances, written from a reading of their compute_* methods."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import common.names as N
from trainers.models import CNN, PaperCNN, PaperResNet, PaperViT, ResNet, ViT
from trainers.norms import paper_code_norms


def _mat(w: torch.Tensor) -> np.ndarray:
    w = w.detach().double().numpy()
    return w.reshape(w.shape[0], -1)


def _sigma(m: np.ndarray) -> float:
    return float(np.linalg.svd(m, compute_uv=False)[0])


def cnn_resnet_rule(mats, all_params):
    """CNNClassifier/ResNetClassifier: R with the later layers' column (2,1) sums."""
    s = [_sigma(m) for m in mats]
    c = [np.linalg.norm(m, axis=0).sum() for m in mats]
    corr = sum(sum(c[i + 1 :]) ** (2 / 3) / max(s[i], 1e-12) ** (2 / 3) for i in range(len(s)))
    flat = np.concatenate([p.detach().double().numpy().ravel() for p in all_params])
    return {
        N.NORM_PAPER_SPECTRAL_COMPLEXITY: np.prod(s) * corr**1.5,
        N.NORM_PAPER_L1: np.abs(flat).sum(),
        N.NORM_PAPER_FROBENIUS: np.sqrt((flat**2).sum()),
        N.NORM_PAPER_GROUP21: sum(c),
        N.NORM_PAPER_SPECTRAL_PRODUCT: np.prod(s),
    }


def vit_rule(mats):
    """Their ViT: logs of these, own-layer row (2,1) sums, weight matrices only."""
    s = [_sigma(m) for m in mats]
    r = [np.linalg.norm(m, axis=1).sum() for m in mats]
    flat = np.concatenate([m.ravel() for m in mats])
    log_r = np.log(s).sum() + 1.5 * np.log(
        sum(ri ** (2 / 3) / (si ** (2 / 3) + 1e-12) for ri, si in zip(r, s, strict=True)) + 1e-12
    )
    return {
        N.NORM_PAPER_SPECTRAL_COMPLEXITY: np.exp(log_r),
        N.NORM_PAPER_L1: np.exp(np.log(np.abs(flat).sum() + 1e-12)),
        N.NORM_PAPER_FROBENIUS: np.exp(0.5 * np.log((flat**2).sum() + 1e-12)),
        N.NORM_PAPER_GROUP21: np.exp(
            np.log(sum(np.linalg.norm(m, axis=0).sum() for m in mats) + 1e-12)
        ),
        N.NORM_PAPER_SPECTRAL_PRODUCT: np.exp(np.log(s).sum()),
    }


def _check(got, want, rtol=1e-5):
    assert set(got) == set(N.PAPER_NORMS)
    for k in N.PAPER_NORMS:
        assert got[k] == pytest.approx(want[k], rel=rtol), k


def test_hand_computed_two_layer_case():
    """W1 = diag(3, 4), W2 = [1, 0]: s = (4, 1), column sums c = (7, 1), so
    R = 4 * 1 * ((1 / 4)^(2/3) + 0)^(3/2) = 1; l1 = 8, frobenius = sqrt(26)."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.diag(torch.tensor([3.0, 4.0])))
        net[2].weight.copy_(torch.tensor([[1.0, 0.0]]))
        net[0].bias.zero_()
        net[2].bias.zero_()
    got = paper_code_norms(net, family="cnn")
    assert got[N.NORM_PAPER_SPECTRAL_COMPLEXITY] == pytest.approx(1.0, rel=1e-6)
    assert got[N.NORM_PAPER_L1] == pytest.approx(8.0)
    assert got[N.NORM_PAPER_FROBENIUS] == pytest.approx(math.sqrt(26))
    assert got[N.NORM_PAPER_GROUP21] == pytest.approx(8.0)
    assert got[N.NORM_PAPER_SPECTRAL_PRODUCT] == pytest.approx(4.0, rel=1e-6)


@pytest.mark.parametrize(
    "build",
    [
        lambda: PaperCNN((2, 8, 8), 3, (3, 4, 5), (6,), dropout=0.1),
        lambda: CNN((1, 8, 8), 4, (2, 3), (5, 4)),
    ],
    ids=["paper-cnn", "cnn"],
)
def test_cnn_family_every_conv_and_linear(build):
    torch.manual_seed(0)
    net = build()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))  # biases non-zero: they enter l1 / frobenius
    mats = [_mat(m.weight) for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    _check(paper_code_norms(net), cnn_resnet_rule(mats, list(net.parameters())))


@pytest.mark.parametrize(
    "build, stem, head",
    [
        (lambda: PaperResNet((1, 8, 8), 3, (1, 2), (2, 4)), "stem.0", "fc"),
        (lambda: ResNet((3, 8, 8), 5, width=2, blocks=1), "conv1", "linear"),
    ],
    ids=["paper-resnet", "resnet"],
)
def test_resnet_family_counts_only_stem_and_head(build, stem, head):
    torch.manual_seed(1)
    net = build()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))  # BN gamma/beta move too: they enter l1
    mods = dict(net.named_modules())
    mats = [_mat(mods[stem].weight), _mat(mods[head].weight)]
    _check(paper_code_norms(net), cnn_resnet_rule(mats, list(net.parameters())))
    # a block's conv does not move their R
    before = paper_code_norms(net)[N.NORM_PAPER_SPECTRAL_COMPLEXITY]
    with torch.no_grad():
        next(m for n, m in net.named_modules() if n.endswith("conv2")).weight.mul_(10)
    assert paper_code_norms(net)[N.NORM_PAPER_SPECTRAL_COMPLEXITY] == before


@pytest.mark.parametrize(
    "build",
    [
        lambda: PaperViT((1, 8, 8), 3, patch=4, dim=6, depth=2, heads=2),
        lambda: ViT((3, 8, 8), 4, patch=4, dim=8, depth=1, heads=2),
    ],
    ids=["paper-vit", "vit"],
)
def test_vit_family_splits_qkv_and_skips_biases(build):
    torch.manual_seed(2)
    net = build()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mats = []
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            w = _mat(m.weight)
            mats += np.split(w, 3, axis=0) if name.endswith("attn.qkv") else [w]
    n_blocks = len(net.blocks)
    assert len(mats) == 1 + 6 * n_blocks + 1  # patch; Q, K, V, O, MLP1, MLP2 per block; head
    _check(paper_code_norms(net), vit_rule(mats))


def test_a_model_without_a_family_is_refused():
    with pytest.raises(ValueError, match="norm_family"):
        paper_code_norms(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="family"):
        paper_code_norms(nn.Sequential(nn.Linear(2, 2)), family="mlp")
