"""Speed of the fixed-norm perceptron theory (issue 2). Prints a table; not a test.

    .venv/bin/python benchmarks/bench_theory.py [--quick]

1. ms per (alpha, lam) point at tol 1e-9 on one core: cold (no guess) and warm (walking
   a lam grid with continuation, as solve_grid does).
2. Wall time of a 20 alpha x 100 lam grid on the Ray actor pool with 1 and with 2 actors,
   median of 3 grids each, run in turn (fresh local Ray; inside theory.pool.warm_pool() the
   actors are started once before the timing and kept between calls; the start-up time is
   printed on its own).
Other processes may share the CPUs: the load average is printed next to the figures.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

REPEATS = 3  # timed grids per actor count


def _load() -> str:
    return "load avg {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller grid (5 x 40)")
    args = ap.parse_args()

    from theory import solve_grid, solve_point
    from theory.pool import solve_chunk, warm_pool

    n_a, n_l = (5, 40) if args.quick else (20, 100)
    alphas = np.logspace(-1, 5, n_a)
    lambdas = np.logspace(-3, 5, n_l)

    rows = []
    # 1. cold points (no guess): App. D / Hebb guess, continuation when needed
    pts = [(a, l) for a in (0.5, 5.0, 1e3, 1e5) for l in (1e-2, 1.0, 100.0)]
    t0 = time.process_time()
    for a, l in pts:
        solve_point(a, l)
    rows.append(("cold point, tol 1e-9 (CPU time)", (time.process_time() - t0) / len(pts) * 1e3))
    # warm: one alpha row of the grid walked with continuation
    t0 = time.process_time()
    n = 0
    for a in alphas[:: max(1, n_a // 5)]:
        solve_chunk(float(a), lambdas)
        n += lambdas.size
    rows.append(("grid point, continuation (CPU time)", (time.process_time() - t0) / n * 1e3))
    print(f"# one core, {_load()}")
    print(f"{'measure':44s} {'ms/point':>10s}")
    for name, ms in rows:
        print(f"{name:44s} {ms:10.2f}")

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"\n# {n_a} alpha x {n_l} lambda grid on the actor pool, {_load()}")
    print(f"{'actors':>6s} {'median s':>8s} {'ms/point':>9s} {'all converged':>14s}")
    with warm_pool():
        t0 = time.perf_counter()
        solve_grid(alphas[:2], lambdas[:4], n_actors=2, progress=False)  # start actors once
        print(f"(starting 2 actors + warm-up grid: {time.perf_counter() - t0:.2f} s, not below)")
        # 1 and 2 actors in turn, REPEATS times each: the speedup is the ratio of medians,
        # so a burst of load from another process shifts both sides alike
        walls: dict[int, list[float]] = {1: [], 2: []}
        converged = {1: True, 2: True}
        for _ in range(REPEATS):
            for n_act in (1, 2):
                t0 = time.perf_counter()
                df = solve_grid(alphas, lambdas, n_actors=n_act, progress=False)
                walls[n_act].append(time.perf_counter() - t0)
                assert len(df) == n_a * n_l
                converged[n_act] &= bool(df["converged"].all())
        wall = {k: float(np.median(v)) for k, v in walls.items()}
        for n_act in (1, 2):
            runs = " ".join(f"{w:.2f}" for w in walls[n_act])
            print(
                f"{n_act:6d} {wall[n_act]:8.2f} {wall[n_act] / (n_a * n_l) * 1e3:9.2f} "
                f"{converged[n_act]!s:>14s}   runs: {runs}"
            )
    print(f"speedup 2 vs 1 actor (ratio of medians): {wall[1] / wall[2]:.2f}x  ({_load()})")
    ray.shutdown()


if __name__ == "__main__":
    main()
