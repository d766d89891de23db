"""Steps and seconds from init to lambda = 1.5 lambda_opt(alpha): adaptive vs constant rule.

    python benchmarks/bench_perceptron_path.py [--budget-s 900] [--const-steps 3000]
        [--rows 64x1000]

Issue 10, item 1. One seed per row, one CPU core (torch.set_num_threads(1)); lambda_opt from
the fixed-norm theory (theory.optimum). Rows run side by side in one process, so the ratio
between the two rules is measured under the same load. An epoch is one gradient evaluation
(one pass over the P examples), the unit both rules pay for. The constant rule (lr = 1/L)
is capped at --const-steps epochs and --const-s seconds: its lambda grows like log t after
separation, so the table gives the lambda it reached. Target: alpha = 64, N = 1000 adaptive
in under 2 minutes. The last row (alpha = 512) runs only if the predicted time fits the
--budget-s budget. Prints one table, and eps at lambda_opt against the theory's eps_opt.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import theory  # noqa: E402
from trainers import TrialConfig  # noqa: E402
from trainers.perceptron import PerceptronTrainer  # noqa: E402

ROWS = [(5, 1000), (16, 1000), (64, 1000), (5, 256), (16, 256), (64, 256), (256, 256)]
LAST = (512, 256)


def run(alpha: float, N: int, rule: str, stop: float, epochs: int, cap_s: float) -> dict:
    cfg = TrialConfig(
        kind="perceptron",
        alpha=alpha,
        N=N,
        epochs=epochs,
        lambda_stop=stop,
        step_rule=rule,
        device="cpu",
        log_schedule=50,
    )
    t0 = time.perf_counter()
    tr = PerceptronTrainer(cfg, [0])
    recs: list[dict] = []

    def report(_seed: int, rec: dict) -> None:
        recs.append(rec)
        if time.perf_counter() - t0 > cap_s:
            tr.active[:] = False  # the wall-clock cap: stop after this record

    tr.run_batch(report)
    lam = np.array([r["norm"] for r in recs])
    eps = np.array([r["test_error"] for r in recs])
    lam_opt, _ = theory.optimum(float(alpha))
    at_opt = float(np.interp(lam_opt, lam, eps)) if lam[-1] >= lam_opt else float("nan")
    return {
        "epochs": tr.epoch,
        "s": time.perf_counter() - t0,
        "lam": float(lam[-1]),
        "reached": bool(lam[-1] >= stop),
        "eps_at_opt": at_opt,
        "eps_min": float(eps.min()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=900.0)
    ap.add_argument("--const-steps", type=int, default=3000)
    ap.add_argument("--const-s", type=float, default=40.0)
    ap.add_argument("--rows", help="only these rows, e.g. 64x1000,256x256 (alpha x N)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f} (2-core machine), torch {torch.__version__}")
    hdr = (
        f"{'alpha':>5} {'N':>5} {'lam_stop':>8} | {'adaptive epochs':>15} {'s':>7} "
        f"{'eps@opt':>8} {'theory':>7} | {'constant epochs':>15} {'s':>6} {'lam':>6} | "
        f"{'epoch ratio':>11} {'s/epoch ratio':>13}"
    )
    print(hdr)
    print("-" * len(hdr))
    t_start = time.perf_counter()
    rows, s_per_epoch = [*ROWS, LAST], {}
    if args.rows:
        rows = [tuple(int(v) for v in r.split("x")) for r in args.rows.split(",")]
    for alpha, N in rows:
        lam_opt, eps_opt = theory.optimum(float(alpha))
        stop = 1.5 * lam_opt
        if (alpha, N) == LAST:  # predict from alpha = 256 at the same N: ~epochs x P
            prev = s_per_epoch.get((256, N))
            left = args.budget_s - (time.perf_counter() - t_start)
            if prev is None or prev * 2 * 2 * 1.3 > left:
                print(f"{alpha:5d} {N:5d} {stop:8.1f} | skipped: predicted time exceeds budget")
                continue
        a = run(alpha, N, "adaptive", stop, 10**7, float("inf"))
        s_per_epoch[(alpha, N)] = a["s"]
        c = run(alpha, N, "constant", stop, args.const_steps, args.const_s)
        c_epochs = f"{c['epochs']}" + ("" if c["reached"] else " (cap)")
        ratio = c["epochs"] / a["epochs"]
        # epochs(constant) / epochs(adaptive) to lambda_stop; a lower bound when capped
        ratio_s = f"{'>' if not c['reached'] else ''}{ratio:.1f}"
        print(
            f"{alpha:5d} {N:5d} {stop:8.1f} | {a['epochs']:15d} {a['s']:7.1f} "
            f"{a['eps_at_opt']:8.4f} {eps_opt:7.4f} | {c_epochs:>15} {c['s']:6.1f} "
            f"{c['lam']:6.2f} | {ratio_s:>11} "
            f"{(c['s'] / c['epochs']) / (a['s'] / a['epochs']):13.2f}",
            flush=True,
        )
    print(f"total {time.perf_counter() - t_start:.0f}s; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
