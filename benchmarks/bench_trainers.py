"""Speed of the trainers (issue 3, "Speed"). Prints one table; run on the machine to report.

    python benchmarks/bench_trainers.py [--device cpu|cuda] [--quick]

Rows:
- CNN seconds per epoch (training only) at P = 1000 and 10000 on MNIST-shaped random data,
  read through the real torchvision MNIST loader from idx files written to a temp dir;
- norm overhead = (epoch + norms) / epoch. The norms (trainers/norms.py) are timed after real
  training epochs, so the power iterations are warm-started as in a run. Under the log
  schedule, 50 of the paper's 500 CNN epochs are logged, so the ratio is
  1 + 50 t_norms / (500 t_epoch); under every-epoch logging it is 1 + t_norms / t_epoch.
  (Evaluation of train/test loss at logged epochs is reported separately: it is not a norm.)
- perceptron GD steps per second for N = 1000, alpha = 10, with 1 and 30 seeds batched.
Targets: norm overhead <= 10% with the log schedule; 30 seeds <= 3x the time of one.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers import TrialConfig, logged_epochs  # noqa: E402
from trainers.deep import DeepTrainer  # noqa: E402
from trainers.perceptron import PerceptronTrainer  # noqa: E402

PAPER_CNN_EPOCHS = 500  # Appendix G


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def write_idx(path: Path, arr: np.ndarray) -> None:
    """One uint8 array in the idx format torchvision's MNIST reads (magic, dims, bytes)."""
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape))
        f.write(arr.tobytes())


def write_mnist_raw(root: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """{"train" | "t10k": (images (n, 28, 28) uint8, labels (n,) uint8)} into root/MNIST/raw."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, (x, y) in splits.items():
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)


def write_fake_mnist(root: Path, n_train: int, n_test: int) -> None:
    """Random uint8 images in the idx format torchvision's MNIST reads from MNIST/raw."""
    rng = np.random.default_rng(0)
    write_mnist_raw(
        root,
        {
            prefix: (
                rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                rng.integers(0, 10, n, dtype=np.uint8),
            )
            for prefix, n in [("train", n_train), ("t10k", n_test)]
        },
    )


def bench_cnn(root: Path, P: int, device: str, n_epochs: int) -> dict[str, float]:
    cfg = TrialConfig(
        kind="deep",
        model="cnn",
        dataset="mnist",
        P=P,
        epochs=PAPER_CNN_EPOCHS,
        data_root=str(root),
        device=device,
    )
    tr = DeepTrainer(cfg)
    tr.train_epoch()  # warm-up: allocator, kernels, first norm call (cold power iterations)
    tr.norms(tr.model)
    t_epoch, t_norm, t_eval = [], [], []
    for _ in range(n_epochs):
        sync(device)
        t0 = time.perf_counter()
        tr.train_epoch()
        sync(device)
        t1 = time.perf_counter()
        tr.norms(tr.model)
        sync(device)
        t2 = time.perf_counter()
        tr.evaluate(tr.x_train, tr.y_train)
        tr.evaluate(tr.x_test, tr.y_test)
        sync(device)
        t3 = time.perf_counter()
        t_epoch.append(t1 - t0)
        t_norm.append(t2 - t1)
        t_eval.append(t3 - t2)
    e, n, v = (float(np.median(t)) for t in (t_epoch, t_norm, t_eval))
    n_log = len(logged_epochs(cfg))
    return {
        "epoch_s": e,
        "norms_s": n,
        "eval_s": v,
        "ratio_log": 1 + n_log * n / (PAPER_CNN_EPOCHS * e),
        "ratio_every": 1 + n / e,
        "n_log": n_log,
    }


def bench_perceptron(n_seeds: int, device: str, n_steps: int) -> float:
    cfg = TrialConfig(kind="perceptron", alpha=10, N=1000, lr=500.0, device=device)
    tr = PerceptronTrainer(cfg, seeds=range(n_seeds))  # fixed lr: skip the 1/L power iteration
    tr.step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        tr.step()
    sync(device)
    return n_steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (noisier)")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch's default). On a shared machine use 1: "
        "OpenMP threads spin against other processes",
    )
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    reps = 2 if args.quick else 4
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_fake_mnist(Path(tmp), n_train=10000, n_test=10000)
        for P in (1000, 10000):
            r = bench_cnn(Path(tmp), P, args.device, reps)
            rows += [
                (f"CNN MNIST-shape P={P}: s/epoch (train only)", f"{r['epoch_s']:.3f}"),
                (
                    f"CNN P={P}: norms s/call | eval s/call",
                    f"{r['norms_s']:.3f} | {r['eval_s']:.3f}",
                ),
                (
                    f"CNN P={P}: norm overhead, log ({r['n_log']}/{PAPER_CNN_EPOCHS} ep)",
                    f"{r['ratio_log']:.3f}",
                ),
                (f"CNN P={P}: norm overhead, every epoch", f"{r['ratio_every']:.3f}"),
            ]
    steps = 5 if args.quick else 20
    one = bench_perceptron(1, args.device, steps * 5)
    thirty = bench_perceptron(30, args.device, steps)
    rows += [
        ("perceptron N=1000 alpha=10, 1 seed: steps/s", f"{one:.1f}"),
        ("perceptron N=1000 alpha=10, 30 seeds: steps/s", f"{thirty:.1f}"),
        ("perceptron: time(30 seeds) / time(1 seed)", f"{one / thirty:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'quantity':<{width}}  value")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
