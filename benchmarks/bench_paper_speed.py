"""Our DeepTrainer against the authors' training loop, at equal model (issue 13, item 4).

    python benchmarks/bench_paper_speed.py [--P 256] [--n-test 2000] [--reps 3] [--compile]

Model: the authors' MNIST CNN (paper-cnn, 12.9M parameters), on MNIST-shaped random images
written as idx files and read by torchvision's MNIST class (the real loader). Their loop is
written here from their description (deep_norm CNN_train.py + train/training.py): a
torchvision dataset with ToTensor + Normalize((0.5,), (0.5,)), random_split to P, DataLoader
batch 128 with shuffle and `workers` worker processes (4 in their script; 0 = "workers
removed"), per-batch .to(device), Adam; at a logged epoch, evaluation over the train and
test loaders (batches of 128, loss.item() per batch) and their five norms (float32 SVD of
each reshaped weight, twice: once in the spectral complexity, once in the product).

Ours: trainers.deep.DeepTrainer with norms="paper" (the same five numbers) and, separately,
the cost of the Eq. 6 family (NormTracker, warm-started after a first call).

Timed components (medians over --reps alternating repetitions, ours and theirs in turn):
plain training epoch, evaluation of train + test, norms. The whole-run projection is for
the issue's setting: P = 1000, 10000 test images, 1000 epochs of which 50 are logged:
    run = 1000 * epoch(P=1000) + 50 * (eval(1000 + 10000 images) + norms)
with per-image training and evaluation costs taken from the measurement (epochs are timed
at --P, 1000 by default, so their loaders' per-epoch worker start-up is counted as in
their run; evaluation is timed on P + --n-test images and scaled per image).
Levers on our side, each measured alone: evaluation batch size, channels_last, bf16
autocast, torch.compile (--compile).
Then (--accuracy-seeds) fp32 and bf16 runs of the same CNN on real data (scikit-learn's
digits upscaled to 28x28) compare final test errors seed by seed.
Quote the load: this CPU is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_trainers import write_fake_mnist, write_mnist_raw  # noqa: E402  (same folder: run as a script)

import trainers.deep as deep  # noqa: E402
from trainers import TrialConfig  # noqa: E402
from trainers.models import PaperCNN  # noqa: E402
from trainers.norms import NormTracker, paper_code_norms  # noqa: E402
from trainers.paper import paper_spec  # noqa: E402

RUN_P, RUN_TEST, RUN_EPOCHS, RUN_LOGGED = 1000, 10000, 1000, 50


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -----------------------------------------------------------------------------
# Their loop (from their description)


class TheirLoop:
    def __init__(self, root: Path, P: int, workers: int, seed: int = 0):
        from torch.utils.data import DataLoader, random_split
        from torchvision import datasets, transforms

        torch.manual_seed(seed)
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
        train = datasets.MNIST(str(root), train=True, download=False, transform=tf)
        test = datasets.MNIST(str(root), train=False, download=False, transform=tf)
        sub, _ = random_split(train, [P, len(train) - P])
        kw = dict(batch_size=128, num_workers=workers, persistent_workers=False)
        self.train_loader = DataLoader(sub, shuffle=True, **kw)
        self.test_loader = DataLoader(test, shuffle=False, **kw)
        self.model = PaperCNN((1, 28, 28), 10, **paper_spec("paper-cnn", "mnist").arch)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def train_epoch(self) -> None:
        self.model.train()
        for x, y in self.train_loader:
            self.opt.zero_grad()
            F.cross_entropy(self.model(x), y).backward()
            self.opt.step()

    def _validate(self, loader) -> tuple[float, float]:
        self.model.eval()
        total, wrong, n = 0.0, 0, 0
        with torch.no_grad():
            for x, y in loader:
                out = self.model(x)
                total += F.cross_entropy(out, y).item() * x.shape[0]  # a host sync per batch
                wrong += (out.argmax(1) != y).sum().item()
                n += x.shape[0]
        return total / n, wrong / n

    def evaluate(self) -> None:
        self._validate(self.train_loader)
        self._validate(self.test_loader)

    def norms(self) -> None:
        ws = [
            m.weight
            for m in self.model.modules()
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
        ]
        mats = [w.view(w.shape[0], -1) for w in ws]
        with torch.no_grad():
            s = [torch.linalg.svdvals(m)[0] for m in mats]  # spectral complexity
            c = [m.norm(dim=0).sum() for m in mats]
            corr = sum(
                (sum(c[i + 1 :], torch.tensor(0.0)) ** (2 / 3)) / s[i] ** (2 / 3)
                for i in range(len(s))
            )
            (torch.prod(torch.stack(s)) * corr**1.5).item()
            sum(p.abs().sum() for p in self.model.parameters()).item()  # l1
            torch.sqrt(sum((p**2).sum() for p in self.model.parameters())).item()  # frobenius
            sum(c).item()  # group21
            torch.prod(torch.stack([torch.linalg.svdvals(m)[0] for m in mats])).item()  # spectral


# -----------------------------------------------------------------------------
# Ours


def ours(root: Path, P: int, norms: str = "paper") -> deep.DeepTrainer:
    cfg = TrialConfig(
        kind="deep",
        model="paper-cnn",
        dataset="mnist",
        P=P,
        epochs=10,
        data_root=str(root),
        device="cpu",
        norms=norms,
    )
    return deep.DeepTrainer(cfg)


def our_eval(tr: deep.DeepTrainer) -> None:
    tr.evaluate(tr.x_train, tr.y_train)
    tr.evaluate(tr.x_test, tr.y_test)


def measure(P: int, n_test: int, reps: int, root: Path, do_compile: bool) -> None:
    n_eval = P + n_test
    theirs = {w: TheirLoop(root, P, w) for w in (4, 0)}
    mine = ours(root, P)
    eq6 = NormTracker(mine.model, mine.in_shape)
    for t in (*theirs.values(),):  # warm-ups: allocator, worker start, first kernels
        t.train_epoch()
    mine.train_epoch()
    eq6(mine.model)
    rows: dict[str, list[float]] = {}

    def add(k, v):
        rows.setdefault(k, []).append(v)

    for _ in range(reps):  # alternate ours and theirs so drifting load hits both alike
        for w, t in theirs.items():
            add(f"theirs w={w} epoch", timed(t.train_epoch))
            add(f"theirs w={w} eval", timed(t.evaluate))
            if w == 0:  # the same computation with or without workers: time it once
                add("theirs norms", timed(t.norms))
        add("ours epoch", timed(mine.train_epoch))
        add("ours norms paper", timed(lambda: paper_code_norms(mine.model)))
        add("ours norms eq6", timed(lambda: eq6(mine.model)))
        old = deep.EVAL_BATCH
        for b in (128, 512, 2048):
            deep.EVAL_BATCH = {"cpu": b, "cuda": b}
            add(f"ours eval b={b}", timed(lambda: our_eval(mine)))
        deep.EVAL_BATCH = old
        mine.bf16 = True  # what precision="bf16" sets
        add("ours bf16 epoch", timed(mine.train_epoch))
        add("ours bf16 eval", timed(lambda: our_eval(mine)))
        mine.bf16 = False
        cl = torch.channels_last
        mine.model.to(memory_format=cl)
        mine.x_train, mine.x_test = (
            mine.x_train.to(memory_format=cl),
            mine.x_test.to(memory_format=cl),
        )
        add("ours channels_last epoch", timed(mine.train_epoch))
        add("ours channels_last eval", timed(lambda: our_eval(mine)))
        cf = torch.contiguous_format
        mine.model.to(memory_format=cf)
        mine.x_train, mine.x_test = mine.x_train.contiguous(), mine.x_test.contiguous()
    if do_compile:
        plain = mine.model
        mine.model = torch.compile(plain)
        t_first = timed(mine.train_epoch)
        for _ in range(reps):
            add("ours compiled epoch", timed(mine.train_epoch))
            add("ours compiled eval", timed(lambda: our_eval(mine)))
        print(f"torch.compile: first (compiling) epoch {t_first:.1f} s")
        mine.model = plain

    med = {k: statistics.median(v) for k, v in rows.items()}
    print(
        f"\nmedians of {reps} alternating repetitions, P={P}, {n_test} test images, "
        f"load {os.getloadavg()}"
    )
    print(f"  {'component':28} {'seconds':>8} {'per image (ms)':>15}")
    for k, v in med.items():
        n = P if "epoch" in k else n_eval if "eval" in k else 1
        print(f"  {k:28} {v:8.3f} {1e3 * v / n:15.3f}")

    def run(epoch_k: str, eval_k: str, norm_ks: list[str]) -> float:
        per_train, per_eval = med[epoch_k] / P, med[eval_k] / n_eval
        norms = sum(med[k] for k in norm_ks)
        return RUN_EPOCHS * per_train * RUN_P + RUN_LOGGED * (per_eval * (RUN_P + RUN_TEST) + norms)

    def logged(epoch_k, eval_k, norm_ks):
        return (
            med[epoch_k] / P * RUN_P
            + med[eval_k] / n_eval * (RUN_P + RUN_TEST)
            + sum(med[k] for k in norm_ks)
        )

    ref = run("theirs w=4 epoch", "theirs w=4 eval", ["theirs norms"])
    print(
        f"\nwhole run projected to P={RUN_P}, {RUN_TEST} test, {RUN_EPOCHS} epochs, "
        f"{RUN_LOGGED} logged"
    )
    print(f"  {'variant':44} {'hours':>7} {'vs their script':>16}")
    variants = [
        ("their script (4 workers)", "theirs w=4 epoch", "theirs w=4 eval", ["theirs norms"]),
        (
            "their loop, workers removed",
            "theirs w=0 epoch",
            "theirs w=0 eval",
            ["theirs norms"],
        ),
        ("ours, eval 2048, paper norms", "ours epoch", "ours eval b=2048", ["ours norms paper"]),
        (
            "ours, eval 512 (default), paper norms",
            "ours epoch",
            "ours eval b=512",
            ["ours norms paper"],
        ),
        ("ours, eval 128, paper norms", "ours epoch", "ours eval b=128", ["ours norms paper"]),
        (
            "ours, eval 512, both norm families",
            "ours epoch",
            "ours eval b=512",
            ["ours norms paper", "ours norms eq6"],
        ),
        (
            "ours bf16, eval 512, paper norms",
            "ours bf16 epoch",
            "ours bf16 eval",
            ["ours norms paper"],
        ),
        (
            "ours channels_last, eval 512, paper norms",
            "ours channels_last epoch",
            "ours channels_last eval",
            ["ours norms paper"],
        ),
    ]
    if do_compile:
        variants.append(
            (
                "ours compiled, paper norms",
                "ours compiled epoch",
                "ours compiled eval",
                ["ours norms paper"],
            )
        )
    for name, e, v, n in variants:
        h = run(e, v, n) / 3600
        print(f"  {name:44} {h:7.2f} {h * 3600 / ref:15.2f}x")
    print("\nnorm cost as a fraction of one logged epoch (P=1000 epoch + eval + norms):")
    for name, e, v, k in [
        ("their norms, their script", "theirs w=4 epoch", "theirs w=4 eval", ["theirs norms"]),
        ("paper family (ours)", "ours epoch", "ours eval b=512", ["ours norms paper"]),
        ("Eq. 6 family (ours)", "ours epoch", "ours eval b=512", ["ours norms eq6"]),
    ]:
        print(f"  {name:28} {sum(med[x] for x in k) / logged(e, v, k):6.1%}")


def write_digits_as_mnist(root: Path) -> None:
    """scikit-learn's real 8x8 digits, upscaled 3x (nearest) and padded to 28x28, written as
    MNIST idx files: 1397 train / 400 test images a 12.9M-parameter CNN can learn."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.kron(d.images, np.ones((3, 3))) * (255.0 / 16.0)
    x = np.pad(x, ((0, 0), (2, 2), (2, 2))).round().astype(np.uint8)
    xtr, xte, ytr, yte = train_test_split(
        x, d.target, test_size=400, stratify=d.target, random_state=0
    )
    write_mnist_raw(
        root, {"train": (xtr, ytr.astype(np.uint8)), "t10k": (xte, yte.astype(np.uint8))}
    )


def accuracy(seeds: int, P: int, epochs: int) -> None:
    """Final test error of fp32 and bf16 runs on real digits, seeds alternating."""
    errs: dict[str, list[float]] = {"fp32": [], "bf16": []}
    with tempfile.TemporaryDirectory() as tmp:
        write_digits_as_mnist(Path(tmp))
        for seed in range(seeds):
            for prec in errs:
                cfg = TrialConfig(
                    kind="deep",
                    model="paper-cnn",
                    dataset="mnist",
                    P=P,
                    epochs=epochs,
                    seed=seed,
                    data_root=tmp,
                    device="cpu",
                    precision=prec,
                    norms="paper",
                    log_schedule=2,
                )
                recs: list[dict] = []
                deep.DeepTrainer(cfg).run(recs.append)
                errs[prec].append(recs[-1]["test_error"])
    print(f"\ntest error on 400 real digits (28x28), P={P}, {epochs} epochs, {seeds} seeds:")
    for prec, e in errs.items():
        sd = statistics.stdev(e) if len(e) > 1 else float("nan")
        print(f"  {prec}: mean {statistics.mean(e):.4f}  sd over seeds {sd:.4f}  {e}")
    diff = [b - a for a, b in zip(errs["fp32"], errs["bf16"], strict=True)]
    print(f"  bf16 - fp32 per seed: {diff}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--P", type=int, default=1000, help="training epochs are timed at this P")
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile")
    ap.add_argument("--accuracy-seeds", type=int, default=3, help="0 skips the bf16 check")
    ap.add_argument("--accuracy-P", type=int, default=512)
    ap.add_argument("--accuracy-epochs", type=int, default=8)
    args = ap.parse_args(argv)
    print(
        f"load {os.getloadavg()}, torch threads {torch.get_num_threads()}, "
        f"torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_fake_mnist(root, n_train=max(args.P, 1000), n_test=args.n_test)
        with contextlib.redirect_stderr(sys.stdout):
            measure(args.P, args.n_test, args.reps, root, args.compile)
    if args.accuracy_seeds:
        accuracy(args.accuracy_seeds, args.accuracy_P, args.accuracy_epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
