"""The real torchvision loaders read tiny MNIST / CIFAR files written here in their on-disk
formats (no download): MNIST idx files in MNIST/raw, CIFAR pickled batches."""

import hashlib
import pickle
import struct

import numpy as np
import pytest
import torch
from torchvision import datasets

from common.names import EPOCH, TEST_ERROR
from trainers import TrialConfig, make_trainer
from trainers.data import load_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def write_idx(path, arr: np.ndarray) -> None:
    """IDX format (LeCun): magic 0x0000 08 <ndim>, big-endian int32 dims, then uint8 data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, arr.ndim))
        f.write(struct.pack(f">{arr.ndim}I", *arr.shape))
        f.write(arr.astype(np.uint8).tobytes())


def fake_mnist(root, n_train=60, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in [("train", n_train), ("t10k", n_test)]:
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        out[prefix] = (x, y)
    return out


def fake_cifar(root, monkeypatch, cls, n_per_batch=10, seed=0):
    """Pickled dict batches like the real archive; the md5 constants are patched to match."""
    rng = np.random.default_rng(seed)
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    label_key = "labels" if cls is datasets.CIFAR10 else "fine_labels"
    n_classes = 10 if cls is datasets.CIFAR10 else 100

    def write(name, obj):
        (folder / name).write_bytes(pickle.dumps(obj))
        return [name, hashlib.md5((folder / name).read_bytes()).hexdigest()]

    def batch():
        return {
            "data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            label_key: rng.integers(0, n_classes, n_per_batch).tolist(),
        }

    batches = {name: batch() for name, _ in cls.train_list + cls.test_list}
    train_list = [write(name, batches[name]) for name, _ in cls.train_list]
    test_list = [write(name, batches[name]) for name, _ in cls.test_list]
    meta_name, meta_md5 = write(
        cls.meta["filename"], {cls.meta["key"]: [str(i) for i in range(n_classes)]}
    )
    monkeypatch.setattr(cls, "train_list", train_list)
    monkeypatch.setattr(cls, "test_list", test_list)
    monkeypatch.setattr(cls, "meta", cls.meta | {"md5": meta_md5})
    return batches, label_key


def test_mnist_loader_reads_idx_files(tmp_path):
    raw = fake_mnist(tmp_path)
    d = load_dataset("mnist", str(tmp_path))
    assert d.x_train.shape == (60, 1, 28, 28) and d.x_test.shape == (20, 1, 28, 28)
    assert d.n_classes == 10 and d.in_shape == (1, 28, 28)
    assert torch.equal(d.y_train, torch.as_tensor(raw["train"][1], dtype=torch.int64))
    # standardised with the training set's own statistics; pixel order preserved
    x = raw["train"][0].astype(np.float64) / 255
    expect = (x - x.mean()) / x.std()
    np.testing.assert_allclose(d.x_train[:, 0].numpy(), expect, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls", [datasets.CIFAR10, datasets.CIFAR100])
def test_cifar_loader_reads_pickled_batches(tmp_path, monkeypatch, cls):
    batches, label_key = fake_cifar(tmp_path, monkeypatch, cls)
    name = "cifar10" if cls is datasets.CIFAR10 else "cifar100"
    d = load_dataset(name, str(tmp_path))
    n_train = 10 * len(cls.train_list)
    assert d.x_train.shape == (n_train, 3, 32, 32) and d.x_test.shape == (10, 3, 32, 32)
    assert d.n_classes == (10 if name == "cifar10" else 100)
    first = batches[cls.train_list[0][0]]
    assert d.y_train[:10].tolist() == first[label_key]
    # channel order: the real format stores R plane, G plane, B plane per image
    img = first["data"][3].reshape(3, 32, 32).astype(np.float64) / 255
    std_x = d.x_train[3].numpy()
    for c in range(3):  # per-channel standardisation is affine: correlation 1 with the raw plane
        assert np.corrcoef(img[c].ravel(), std_x[c].ravel())[0, 1] > 0.9999


def test_deep_trainer_runs_on_fake_mnist_without_download(tmp_path):
    fake_mnist(tmp_path, n_train=64, n_test=16)
    c = TrialConfig(
        kind="deep",
        model="cnn",
        dataset="mnist",
        P=32,
        epochs=2,
        batch_size=16,
        data_root=str(tmp_path),
        device="cpu",
        log_schedule="every",
    )
    recs = []
    make_trainer(c).run(recs.append)
    assert [r[EPOCH] for r in recs] == [1.0, 2.0]
    assert 0.0 <= recs[-1][TEST_ERROR] <= 1.0


def test_unavailable_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.MNIST, "mirrors", [])  # offline: no mirror to try
    with pytest.raises(RuntimeError, match="dataset: cannot load or download mnist"):
        load_dataset("mnist", str(tmp_path / "empty"))


def test_sweep_fetches_only_missing_torchvision_sets_before_the_trials(
    tmp_path, monkeypatch, capsys
):
    """orchestrator.preflight.fetch_datasets: a present data set is left alone (checked with
    the real loader), a missing one is downloaded once with a line saying where, and a failed
    download is one ConfigError before any trial."""
    import trainers.data as data
    from orchestrator.config import ConfigError
    from orchestrator.preflight import fetch_datasets

    have, lack = tmp_path / "have", tmp_path / "lack"
    fake_mnist(have)
    calls = []
    monkeypatch.setattr(data, "download", lambda name, root: calls.append((name, root)))
    trials = [
        {"dataset": "mnist", "data_root": str(have)},
        {"dataset": "mnist", "data_root": str(lack)},
        {"dataset": "mnist", "data_root": str(lack)},  # the same set twice: one download
        {"dataset": "digits", "data_root": str(lack)},  # ships with scikit-learn
        {"dataset": "teacher", "data_root": str(lack)},
    ]
    fetch_datasets(trials, "s")
    assert calls == [("mnist", str(lack))]
    err = capsys.readouterr().err
    assert f"sweep s: downloading mnist into {lack}" in err and str(have) not in err

    def offline(name, root):
        raise RuntimeError(f"dataset: cannot load or download {name} into data_root={root}")

    monkeypatch.setattr(data, "download", offline)
    with pytest.raises(ConfigError, match="cannot load or download mnist"):
        fetch_datasets(trials[1:2], "s")
