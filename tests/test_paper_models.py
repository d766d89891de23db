"""The authors' architectures (issue 13): state_dict order/shapes, parameter counts, init,
the per-data-set rule, normalisation and augmentation. Expected shapes are written out here
from a reading of deep_norm's cnn/model.py, resnet/model.py, vit/model.py and the three
*_train.py scripts, independently of trainers/models/."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from trainers import TrialConfig
from trainers.augment import affine, crop_flip
from trainers.datasets import dataset_info
from trainers.models import PaperCNN, PaperResNet, PaperViT, build_model

BN = "bn"  # a BatchNorm2d(c): weight, bias, running_mean, running_var, num_batches_tracked


def _expand(spec):
    out = []
    for s in spec:
        if isinstance(s, tuple) and s and s[0] == BN:
            c = s[1]
            out += [(c,), (c,), (c,), (c,), ()]
        else:
            out.append(s)
    return out


def their_cnn_shapes(c_in, channels, hidden, n_classes, hw):
    """CNNClassifier: per conv (w, b); pool after every 2nd conv; then per linear (w, b)."""
    shapes, c, side = [], c_in, hw
    for i, k in enumerate(channels):
        shapes += [(k, c, 3, 3), (k,)]
        c = k
        if (i + 1) % 2 == 0:
            side //= 2
    n_in = c * side * side
    for h in (*hidden, n_classes):
        shapes += [(h, n_in), (h,)]
        n_in = h
    return shapes


def their_resnet_shapes(c_in, blocks, widths, n_classes):
    """ResNetClassifier: stem conv + BN; BasicBlocks (conv1, bn1, conv2, bn2, downsample conv
    1x1 + BN where stride != 1 or channels change); fc."""
    s = [(widths[0], c_in, 3, 3), (BN, widths[0])]
    c = widths[0]
    for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
        for b in range(n):
            stride = (1 if i == 0 else 2) if b == 0 else 1
            s += [(w, c, 3, 3), (BN, w), (w, w, 3, 3), (BN, w)]
            if stride != 1 or c != w:
                s += [(w, c, 1, 1), (BN, w)]
            c = w
    s += [(n_classes, c), (n_classes,)]
    return _expand(s)


def their_vit_shapes(c_in, hw, patch, dim, depth, n_classes):
    """ViT: own parameters first (cls_token, pos_embed), then patch conv, blocks (LN,
    MultiheadAttention in_proj_weight/in_proj_bias/out_proj, LN, MLP 4x), LN, head."""
    T = (hw // patch) ** 2 + 1
    s = [(1, 1, dim), (1, T, dim), (dim, c_in, patch, patch), (dim,)]
    for _ in range(depth):
        s += [(dim,), (dim,), (3 * dim, dim), (3 * dim,), (dim, dim), (dim,), (dim,), (dim,)]
        s += [(4 * dim, dim), (4 * dim,), (dim, 4 * dim), (dim,)]
    s += [(dim,), (dim,), (n_classes, dim), (n_classes,)]
    return s


EXPECTED = {
    ("paper-cnn", "mnist"): their_cnn_shapes(1, (32, 64, 128), (512,), 10, 28),
    ("paper-cnn", "cifar10"): their_cnn_shapes(3, (32, 64, 128), (512,), 10, 32),
    ("paper-cnn", "cifar100"): their_cnn_shapes(3, (64, 128, 256, 512), (1024, 512), 100, 32),
    ("paper-resnet", "mnist"): their_resnet_shapes(1, (2, 2, 2, 2), (16, 32, 64, 128), 10),
    ("paper-resnet", "cifar10"): their_resnet_shapes(3, (2, 2, 2, 2), (64, 128, 256, 512), 10),
    ("paper-resnet", "cifar100"): their_resnet_shapes(3, (3, 4, 6, 3), (64, 128, 256, 512), 100),
    ("paper-vit", "mnist"): their_vit_shapes(1, 28, 7, 128, 4, 10),
    ("paper-vit", "cifar10"): their_vit_shapes(3, 32, 4, 192, 6, 10),
    ("paper-vit", "cifar100"): their_vit_shapes(3, 32, 4, 256, 6, 100),
}


def _build(model, dataset, **kw):
    cfg = TrialConfig(kind="deep", model=model, dataset=dataset, P=10, **kw)
    info = dataset_info(dataset)
    return build_model(cfg, info.in_shape, info.n_classes)


@pytest.mark.parametrize("model, dataset", list(EXPECTED), ids=lambda x: str(x))
def test_state_dict_holds_their_tensors_in_their_order(model, dataset):
    torch.manual_seed(0)
    net = _build(model, dataset)
    got = [tuple(t.shape) for t in net.state_dict().values()]
    assert got == [tuple(s) for s in EXPECTED[(model, dataset)]]


def test_parameter_counts_of_the_issue():
    torch.manual_seed(0)
    n = sum(p.numel() for p in _build("paper-cnn", "mnist").parameters())
    assert n == 12_943_370  # "their MNIST CNN, 12.9M parameters" (issue 13)
    # ResNet-18 on CIFAR-10 has the textbook 11.17M parameters
    n = sum(p.numel() for p in _build("paper-resnet", "cifar10").parameters())
    assert n == 11_173_962


def test_unknown_model_for_a_dataset_is_refused_naming_both():
    with pytest.raises(ValidationError, match=r"paper-cnn.*digits"):
        TrialConfig(kind="deep", model="paper-cnn", dataset="digits", P=10)
    with pytest.raises(ValidationError, match=r"augment.*paper-cnn.*mnist"):
        TrialConfig(kind="deep", model="paper-cnn", dataset="mnist", P=10, augment=True)
    with pytest.raises(ValidationError, match=r"augment.*paper-vit.*cifar10"):
        TrialConfig(kind="deep", model="paper-vit", dataset="cifar10", P=10, augment=True)
    TrialConfig(kind="deep", model="paper-resnet", dataset="cifar10", P=10, augment=True)


def test_their_initialisation_and_global_factor():
    torch.manual_seed(1)
    f = 0.5
    res = PaperResNet((3, 32, 32), 10, (1, 1), (8, 16), init_factor=f)
    assert abs(res.fc.weight.std().item() - 0.01 * f) < 0.002
    assert torch.all(res.fc.bias == 0)
    conv = res.stages[1][0].conv1.weight  # kaiming normal, fan_out = 16 * 9
    assert abs(conv.std().item() - f * math.sqrt(2 / (16 * 9))) < 0.1 * f * math.sqrt(2 / 144)
    bn = res.stem[1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)

    torch.manual_seed(1)
    cnn1 = PaperCNN((1, 8, 8), 10, (4, 4), (6,))
    torch.manual_seed(1)
    cnnf = PaperCNN((1, 8, 8), 10, (4, 4), (6,), init_factor=f)
    for a, b in zip(cnn1.parameters(), cnnf.parameters(), strict=True):
        ratio = f if a.dim() > 1 else 1.0  # weights scaled, biases as PyTorch drew them
        torch.testing.assert_close(b, ratio * a)

    torch.manual_seed(1)
    vit = PaperViT((1, 8, 8), 10, patch=4, dim=16, depth=1, heads=2, init_factor=f)
    blk = vit.blocks[0]
    xavier = lambda fan_in, fan_out: math.sqrt(6 / (fan_in + fan_out))  # noqa: E731
    # their packed in_proj keeps MultiheadAttention's own init (no factor) ...
    assert blk.attn.qkv.weight.abs().max() <= xavier(16, 48)
    assert blk.attn.qkv.weight.abs().max() > 0.9 * xavier(16, 48)
    # ... while every nn.Linear (out_proj, MLP, head) is Xavier times the factor
    assert blk.attn.proj.weight.abs().max() <= f * xavier(16, 16)
    assert blk.attn.proj.weight.abs().max() > 0.9 * f * xavier(16, 16)
    assert torch.all(blk.attn.qkv.bias == 0) and torch.all(vit.head.bias == 0)


def test_vit_block_equals_torch_multihead_attention_on_the_same_weights():
    """Their block runs nn.MultiheadAttention; ours must compute the same function."""
    torch.manual_seed(2)
    vit = PaperViT((3, 8, 8), 5, patch=4, dim=12, depth=1, heads=3).eval()
    blk = vit.blocks[0]
    mha = nn.MultiheadAttention(12, 3, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(blk.attn.qkv.weight)
        mha.in_proj_bias.copy_(torch.randn(36))
        blk.attn.qkv.bias.copy_(mha.in_proj_bias)
        mha.out_proj.weight.copy_(blk.attn.proj.weight)
        mha.out_proj.bias.copy_(torch.randn(12))
        blk.attn.proj.bias.copy_(mha.out_proj.bias)
        x = torch.randn(4, 5, 12)
        y = blk.norm1(x)
        ref = x + mha(y, y, y, need_weights=False)[0]
        ref = ref + blk.mlp(blk.norm2(ref))
        torch.testing.assert_close(blk(x), ref, rtol=1e-5, atol=1e-5)


def test_crop_flip_is_a_padded_window_with_black_border():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 32, 32)
    fill = (-1.0, -2.0, -3.0)
    out = crop_flip(x, fill, g)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for c, f in enumerate(fill):
        padded[:, c][padded[:, c] == 0] = f  # randn is never exactly 0
    for i in range(16):  # each output is some window of the padded image, maybe flipped
        ok = any(
            torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1))
            for dy in range(9)
            for dx in range(9)
            for w in [padded[i, :, dy : dy + 32, dx : dx + 32]]
        )
        assert ok, i


def test_affine_without_rotation_is_an_integer_shift(monkeypatch):
    import trainers.augment as aug

    monkeypatch.setattr(aug, "AFFINE_DEGREES", 0.0)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 1, 28, 28)
    out = affine(x, (-0.5,), g)
    for i in range(8):  # a shift by integers in [-3, 3] (0.1 * 28 = 2.8, rounded)
        hits = []
        for dy in range(-3, 4):
            for dx in range(-3, 4):
                ref = torch.full_like(x[i], -0.5)
                ys, yd = (
                    (slice(0, 28 - dy), slice(dy, 28))
                    if dy >= 0
                    else (slice(-dy, 28), slice(0, 28 + dy))
                )
                xs, xd = (
                    (slice(0, 28 - dx), slice(dx, 28))
                    if dx >= 0
                    else (slice(-dx, 28), slice(0, 28 + dx))
                )
                ref[:, yd, xd] = x[i, :, ys, xs]
                hits.append(torch.equal(out[i], ref))
        assert sum(hits) == 1, i


def test_affine_rotation_keeps_statistics_and_moves_pixels():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(64, 1, 28, 28)
    out = affine(x, (0.0,), g)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # nearest-neighbour resampling only copies values (or the fill)
    vals = set(np.round(x.numpy().ravel(), 6)) | {0.0}
    assert set(np.round(out.numpy().ravel(), 6)) <= vals
    assert not torch.equal(out, x)


def test_paper_resnet_trains_on_fake_mnist_with_their_normalisation_and_both_norms(tmp_path):
    from test_trainers_data import fake_mnist

    from common.names import DEEP_NORMS, PAPER_NORMS
    from trainers import load_checkpoint, make_trainer, save_checkpoint

    raw = fake_mnist(tmp_path, n_train=64, n_test=16)
    cfg = TrialConfig(
        kind="deep",
        model="paper-resnet",
        dataset="mnist",
        P=32,
        epochs=2,
        batch_size=16,
        data_root=str(tmp_path),
        device="cpu",
        log_schedule="every",
        augment=True,
        norms="both",
    )
    tr = make_trainer(cfg)
    # the test set is standardised with their fixed MNIST mean/std, never augmented
    want = (raw["t10k"][0].astype(np.float32) / 255.0 - 0.1307) / 0.3081
    torch.testing.assert_close(tr.x_test[:, 0], torch.as_tensor(want))
    recs = []
    assert tr.run(recs.append) == "completed"
    assert set(DEEP_NORMS) | set(PAPER_NORMS) <= set(recs[-1])
    assert all(math.isfinite(recs[-1][k]) and recs[-1][k] > 0 for k in PAPER_NORMS)
    # the augmentation stream is checkpointed: 1 + 1 epochs == 2 epochs (Eq. 6 norms off:
    # their cold power iterations on 20 convolutions cost seconds and are tested elsewhere)
    cfg = cfg.model_copy(update={"norms": "paper"})
    a = make_trainer(cfg.model_copy(update={"epochs": 1}))
    a.run(lambda r: None)
    save_checkpoint(a, tmp_path / "ck.pt")
    b = make_trainer(cfg)
    load_checkpoint(b, tmp_path / "ck.pt")
    recs_b = []
    b.run(recs_b.append)
    assert recs_b[-1]["test_loss"] == pytest.approx(recs[-1]["test_loss"], rel=1e-5)
    assert recs_b[-1][PAPER_NORMS[0]] == pytest.approx(recs[-1][PAPER_NORMS[0]], rel=1e-5)


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda s: PaperCNN(s, 10, (4, 6, 8), (16,), dropout=0.1), (1, 12, 12)),
        (lambda s: PaperResNet(s, 10, (1, 1), (4, 8)), (3, 8, 8)),
        (lambda s: PaperViT(s, 10, patch=4, dim=8, depth=2, heads=2), (3, 8, 8)),
    ],
    ids=["paper-cnn", "paper-resnet", "paper-vit"],
)
def test_eq6_norms_also_measure_the_paper_models(build, shape):
    """Eq. 6 as printed (trainers/norms.py) recognises their blocks (BasicBlock with a
    dropout slot, transformer block with their 5-module MLP) and counts every layer."""
    from common.names import DEEP_NORMS
    from trainers.norms import NormTracker

    torch.manual_seed(5)
    net = build(shape).eval()
    tracker = NormTracker(net, shape)
    got = tracker(net)
    assert all(math.isfinite(got[k]) and got[k] > 0 for k in DEEP_NORMS)
    n_weights = sum(isinstance(m, nn.Conv2d | nn.Linear) for m in net.modules())
    counted = {op.module for lay in tracker.layers for op in lay.ops if op.kind != "diag"}
    assert len(counted) == n_weights
