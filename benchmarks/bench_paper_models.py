"""Cost of the authors' nets (issue 13, item 3): the numbers behind the --dry-run cost model.

    python benchmarks/bench_paper_models.py [--batch 32] [--steps 3] [--only paper-cnn]

For every paper model and data set it prints:
- forward FLOPs per image, counted by torch.utils.flop_counter (convolutions, linear layers,
  attention matmuls; element-wise ops are not counted) -- these are the values in
  orchestrator/resources.py PAPER_FWD_FLOPS;
- parameters;
- CPU seconds per training sample: Adam steps on random images at the given batch size,
  the median of `--steps` timed steps after one warm-up step, on this machine's threads;
- the GPU seconds per training sample the cost model derives from the FLOPs, with its
  assumptions (3x forward FLOPs per training sample, V100 fp32 peak at the assumed
  utilisation), for comparison with the CPU figure.
Quote the load (uptime) with the numbers: the CPU is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.resources import (  # noqa: E402
    GPU_PEAK_FLOPS,
    GPU_UTILISATION,
    TRAIN_FLOPS_PER_FORWARD,
)
from trainers import TrialConfig  # noqa: E402
from trainers.datasets import dataset_info  # noqa: E402
from trainers.models import build_model  # noqa: E402
from trainers.paper import SPECS  # noqa: E402


def forward_flops(model: torch.nn.Module, in_shape: tuple[int, ...]) -> float:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, *in_shape))
    return float(fc.get_total_flops())


def cpu_seconds_per_sample(model, in_shape, n_classes, batch: int, steps: int) -> float:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, *in_shape)
    y = torch.randint(0, n_classes, (batch,))
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step pays allocation and kernel selection
            times.append(time.perf_counter() - t0)
    return statistics.median(times) / batch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", help="one model, e.g. paper-cnn")
    args = ap.parse_args(argv)
    print(f"load: {os.getloadavg()}, torch threads: {torch.get_num_threads()}")
    print(
        f"GPU model: train = {TRAIN_FLOPS_PER_FORWARD:g} x forward FLOPs per sample, "
        f"peak {GPU_PEAK_FLOPS / 1e12:g} TFLOP/s (V100 fp32), utilisation {GPU_UTILISATION:g}"
    )
    print(
        f"{'model':13} {'dataset':9} {'params':>11} {'fwd MFLOP/img':>14} "
        f"{'CPU s/sample':>13} {'GPU s/sample':>13} {'CPU/GPU':>8}"
    )
    for model, rules in SPECS.items():
        if args.only and model != args.only:
            continue
        for dataset in rules:
            info = dataset_info(dataset)
            torch.manual_seed(0)
            cfg = TrialConfig(kind="deep", model=model, dataset=dataset, P=10)
            net = build_model(cfg, info.in_shape, info.n_classes)
            n = sum(p.numel() for p in net.parameters())
            flops = forward_flops(net, info.in_shape)
            cpu = cpu_seconds_per_sample(net, info.in_shape, info.n_classes, args.batch, args.steps)
            gpu = TRAIN_FLOPS_PER_FORWARD * flops / (GPU_PEAK_FLOPS * GPU_UTILISATION)
            print(
                f"{model:13} {dataset:9} {n:>11,} {flops / 1e6:>14.1f} "
                f"{cpu:>13.2e} {gpu:>13.2e} {cpu / gpu:>8.0f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
