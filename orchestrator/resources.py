"""Per-trial resources (the GPU fraction rule), the cluster capacity check, and the cost model.

GPU fraction rule (DESIGN.md "Fractional GPUs"; overridable with `resources.gpu: <fraction>`):

    model       P <= 12000    P > 12000
    cnn         1/8           1/4
    resnet      1/4           1/2
    vit         1/4           1/2
    perceptron  CPU only (0)  CPU only (0)
    paper-cnn   1/4           1/2
    paper-resnet 1/2          1
    paper-vit   1/4           1/2

Why: a trial keeps its data on the device and steps in fixed-size batches, so its GPU memory
and per-step work are set by the model and the batch, not by P; what P changes is how long
each epoch keeps the GPU busy between the Python-side evaluation and norm computations. The
LeNet-sized CNN cannot fill a GPU with 128-image batches, so eight share one; the ResNet-20 and
the small ViT do ~5x the FLOPs per image, so four (small P) or two (large P) share one.
Ray fractions are logical: the rule decides how many trials Tune packs per GPU, not how many
bytes each may use. Every fraction divides 1, so packing never strands a sliver of a GPU.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from orchestrator.config import ConfigError, Resources
from trainers.datasets import DATASETS

SMALL_P = 12000
GPU_RULE = {
    "cnn": (1 / 8, 1 / 4),
    "resnet": (1 / 4, 1 / 2),
    "vit": (1 / 4, 1 / 2),
    # the authors' nets do 30-2300 MFLOP per image (PAPER_FWD_FLOPS), 10-100x ours
    "paper-cnn": (1 / 4, 1 / 2),
    "paper-resnet": (1 / 2, 1),
    "paper-vit": (1 / 4, 1 / 2),
}

# Cost model for --dry-run: seconds of one whole reference GPU (V100-class, fp32, batch 128,
# data resident on the device) per training sample per epoch. Rough figures from the models'
# FLOPs (LeNet ~0.4 MFLOP/image; ResNet-20 and the 64-wide, 6-deep ViT ~40 MFLOP/image) at
# ~30% of peak. Each logged epoch also evaluates the test set (forward only, ~1/3 of a train
# step per sample); the norms' power iterations are neglected. Override per model with the
# config's `cost_model: {model: seconds}`.
GPU_SECONDS_PER_SAMPLE = {"cnn": 2e-5, "resnet": 5e-5, "vit": 5e-5}

# The authors' nets (issue 13) differ ~30x in cost between data sets, so their cost comes
# from forward FLOPs per image F (counted by benchmarks/bench_paper_models.py with torch's
# FlopCounterMode: conv, linear and attention matmuls), on a V100 (the paper's GPUs, App. G)
# at an assumed fraction of its fp32 peak: a training sample costs 3F (backward ~ 2x
# forward), an evaluated one F; each logged epoch evaluates the P training and all test
# images. Override per model with `cost_model: {model: seconds per training sample}`.
PAPER_FWD_FLOPS = {  # (model, dataset): forward FLOPs per image
    ("paper-cnn", "mnist"): 84.0e6,
    ("paper-cnn", "cifar10"): 110.8e6,
    ("paper-cnn", "cifar100"): 977.8e6,
    ("paper-resnet", "mnist"): 57.1e6,
    ("paper-resnet", "cifar10"): 1110.8e6,
    ("paper-resnet", "cifar100"): 2318.9e6,
    ("paper-vit", "mnist"): 26.9e6,
    ("paper-vit", "cifar10"): 346.2e6,
    ("paper-vit", "cifar100"): 615.0e6,
}
TRAIN_FLOPS_PER_FORWARD = 3.0
GPU_PEAK_FLOPS = 15.7e12  # V100 fp32
GPU_UTILISATION = 0.3  # assumed: batch-128 training of these nets on one whole GPU
COST_ASSUMPTIONS = (
    f"paper-* models: {TRAIN_FLOPS_PER_FORWARD:g} x forward FLOPs per training sample, 1 x per "
    f"evaluated one (P + test set at each logged epoch), V100 fp32 peak "
    f"{GPU_PEAK_FLOPS / 1e12:g} TFLOP/s at {GPU_UTILISATION:.0%} utilisation"
)
# The perceptron runs on a CPU core: one epoch is one full-batch GD step, ~4 P N flops,
# at ~1 GFLOP/s effective.
CPU_FLOPS = 1e9


def gpu_fraction_rule(model: str, P: int) -> float:
    """The documented default GPU share of one trial (0 means CPU only)."""
    if model not in GPU_RULE:
        return 0.0
    small, large = GPU_RULE[model]
    return small if P <= SMALL_P else large


def trial_resources(params: dict[str, Any], res: Resources, cluster_has_gpu: bool) -> dict:
    """{'CPU': c, 'GPU': g} for one trial; GPU falls back to 0 without a GPU in the cluster."""
    if params["kind"] == "perceptron":
        gpu = 0.0
    elif res.gpu == "auto":
        gpu = gpu_fraction_rule(params["model"], params["P"]) if cluster_has_gpu else 0.0
    else:
        gpu = float(res.gpu)
    return {"CPU": float(res.cpus_per_trial), "GPU": gpu}


def check_capacity(requests: list[dict], nodes: list[dict]) -> None:
    """Raise ConfigError if some trial's request fits on no alive node.

    Tune would leave such a trial PENDING forever; refusing it before launch is the point.
    `nodes` is ray.nodes(); only alive nodes count.
    """
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    if not alive:
        raise ConfigError("resources: the Ray cluster has no alive node")
    for req in {tuple(sorted(r.items())) for r in requests}:
        need = dict(req)
        if any(all(node.get(k, 0.0) >= v for k, v in need.items() if v > 0) for node in alive):
            continue
        best_cpu = max(n.get("CPU", 0.0) for n in alive)
        best_gpu = max(n.get("GPU", 0.0) for n in alive)
        field = "resources.gpu" if need.get("GPU", 0) > best_gpu else "resources.cpus_per_trial"
        raise ConfigError(
            f"{field}: a trial needs {need.get('CPU', 0):g} CPU + {need.get('GPU', 0):g} GPU "
            f"but no node has that (largest node: {best_cpu:g} CPU, {best_gpu:g} GPU)"
        )


def epoch_seconds(params: dict[str, Any], n_logged: int, cost: dict[str, float]) -> float:
    """Estimated seconds per epoch: of one whole GPU (deep nets) or one CPU core (perceptron)."""
    if params["kind"] == "perceptron":
        return 4.0 * params["P"] * params["N"] / CPU_FLOPS
    key = (params["model"], params["dataset"])
    if key in PAPER_FWD_FLOPS:
        fwd = PAPER_FWD_FLOPS[key] / (GPU_PEAK_FLOPS * GPU_UTILISATION)  # s per forward image
        s = cost.get(params["model"], TRAIN_FLOPS_PER_FORWARD * fwd)
        evaluated = (params["P"] + DATASETS[params["dataset"]].test_size) * n_logged
        return s * params["P"] + fwd * evaluated / params["epochs"]
    s = cost.get(params["model"], GPU_SECONDS_PER_SAMPLE[params["model"]])
    eval_per_epoch = DATASETS[params["dataset"]].test_size * n_logged / params["epochs"] / 3
    return s * (params["P"] + eval_per_epoch)


def summarize(trials: list[dict], requests: list[dict], logged: list[int], cost: dict) -> dict:
    """Totals for --dry-run: trial count, resource shapes, GPU-hours and CPU-hours."""
    gpu_h = cpu_h = 0.0
    for p, n_log in zip(trials, logged, strict=True):
        h = p["epochs"] * epoch_seconds(p, n_log, cost) / 3600
        if p["kind"] == "perceptron":
            cpu_h += h
        else:
            gpu_h += h
    shapes = Counter(f"{r['CPU']:g} CPU + {r['GPU']:g} GPU" for r in requests)
    return {"trials": len(trials), "shapes": dict(shapes), "gpu_hours": gpu_h, "cpu_hours": cpu_h}


# --- wall clock at the packing Tune would use (--dry-run) ---------------------------------
# A deep net on one CPU core instead of the reference GPU. Calibrated on one measurement, not
# derived: digits-cnn (0.0156 GPU-hours by the model above) took ~6 min on 2 CPU cores
# (README, "Presets"), i.e. ~13 core-seconds per GPU-second. Small nets are overhead-bound on
# the GPU, so the big paper-* nets are slower than this on a CPU: there it is a lower bound.
DEEP_CPU_SLOWDOWN = 13.0


def _slots(node: dict[str, float], need: dict[str, float]) -> int:
    """How many trials of shape `need` one node holds (Ray packs by each resource)."""
    return min((int(node.get(k, 0.0) / v + 1e-9) for k, v in need.items() if v > 0), default=0)


def _makespan(durations: list[float], slots: int) -> float:
    """Longest-first list scheduling of the durations on `slots` parallel slots (Tune starts
    a pending trial whenever one ends, so this is its FIFO order up to the sorting)."""
    if not durations:
        return 0.0
    ends = [0.0] * max(slots, 1)
    for d in sorted(durations, reverse=True):
        i = min(range(len(ends)), key=ends.__getitem__)
        ends[i] += d
    return max(ends)


def wall_clock(
    trials: list[dict],
    requests: list[dict],
    logged: list[int],
    cost: dict,
    nodes: list[dict[str, float]],
    max_concurrent: int | None = None,
) -> tuple[float, list[tuple[str, int, int]]]:
    """Estimated hours from start to the last trial's end on `nodes` (resource dicts), and
    the packing: (shape, trials of that shape, how many run at once).

    Model: a GPU trial with share g is given g of a GPU (packed trials split its throughput,
    the GPU-bound case of the cost model), so it lasts its GPU-seconds / g; a trial without a
    GPU runs on CPU cores (deep nets DEEP_CPU_SLOWDOWN times slower than on the reference
    GPU). Each shape is list-scheduled on the slots the nodes hold; GPU shapes queue for the
    same GPUs (their times add), CPU-only shapes likewise, and the two kinds run side by side.
    """
    by_shape: dict[tuple, list[float]] = {}
    for p, r, n_log in zip(trials, requests, logged, strict=True):
        work = p["epochs"] * epoch_seconds(p, n_log, cost)  # GPU-s, or CPU-core-s (perceptron)
        if p["kind"] != "perceptron" and r["GPU"] == 0:
            work *= DEEP_CPU_SLOWDOWN
        hours = work / (r["GPU"] if r["GPU"] > 0 else 1.0) / 3600
        by_shape.setdefault(tuple(sorted(r.items())), []).append(hours)
    gpu_h = cpu_h = 0.0
    packing = []
    for shape, durations in by_shape.items():
        need = dict(shape)
        slots = sum(_slots(n, need) for n in nodes)
        if max_concurrent is not None:
            slots = min(slots, max_concurrent)
        packing.append((f"{need['CPU']:g} CPU + {need['GPU']:g} GPU", len(durations), slots))
        span = _makespan(durations, slots) if slots else math.inf
        if need["GPU"] > 0:
            gpu_h += span
        else:
            cpu_h += span
    return max(gpu_h, cpu_h), packing
