"""Grids of (alpha, lam) and optimum tables, serially or on a pool of Ray actors.

Each task is one alpha's row of the (sorted) lam axis, or a contiguous share of it when there
are few alphas, and an actor walks it in increasing lam, warm-starting every point from the
previous one with the tangent predictor (continuation), so most points cost one or two Newton
steps. Ray is imported only here and only when a pool is asked for, so `import theory` stays
free of Ray.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from common.names import THEORY_COLUMNS, THEORY_OPT_COLUMNS
from theory._checks import check_positive_array
from theory.baselines import eps_bayes, eps_hebb, eps_maxstab
from theory.derived import optimum
from theory.saddle import Solution, solve_point


def solve_chunk(alpha: float, lambdas, tol: float = 1e-9) -> list[tuple]:
    """Solve (alpha, lam) for increasing lam with warm starts; rows (alpha, lam, R, x, eps,
    converged, residual) in the order of `lambdas` (which must be sorted ascending)."""
    rows, prev = [], None
    for lam in lambdas:
        sol: Solution = solve_point(alpha, float(lam), tol=tol, guess=prev)
        if sol.converged:
            prev = sol
        rows.append((alpha, float(lam), sol.R, sol.x, sol.epsilon, sol.converged, sol.residual))
    return rows


def _baselines(alphas: np.ndarray) -> dict[float, tuple[float, float, float]]:
    return {a: (eps_hebb(a), eps_bayes(a), eps_maxstab(a)) for a in np.unique(alphas)}


class _Worker:
    """What one actor does: grid chunks and optima (plain class, wrapped by ray.remote)."""

    def solve(self, key, alpha, lambdas, tol):
        return key, solve_chunk(alpha, lambdas, tol)

    def optimum(self, key, alpha):
        return key, optimum(alpha)


@functools.cache
def _actor_class():
    import ray

    return ray.remote(num_cpus=1)(_Worker)


@contextlib.contextmanager
def _ray_session():
    """Use the running Ray (orchestrator, tests) or start a local one and shut it down after."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# Live actors per Ray job, kept between calls inside `warm_pool()`: starting an actor (a
# process importing numpy and scipy) costs about a second, as much as a whole 2,000-point grid
# on one core. Outside it the actors are killed after each call, because each holds a CPU
# that a sweep started next in the same Ray session needs.
_WARM: dict[str, list] = {}
_keep_warm = False


@contextlib.contextmanager
def warm_pool():
    """Keep the pool's actors alive between solve_grid / optimum_table calls in this block."""
    global _keep_warm
    outer, _keep_warm = _keep_warm, True
    try:
        yield
    finally:
        _keep_warm = outer
        if not outer:
            _release()


def _release() -> None:
    import ray

    if ray.is_initialized():
        for a in _WARM.pop(ray.get_runtime_context().get_job_id(), []):
            ray.kill(a)


def _actors(ray, n: int) -> list:
    pool = _WARM.setdefault(ray.get_runtime_context().get_job_id(), [])
    pool.extend(_actor_class().remote() for _ in range(n - len(pool)))
    return pool[:n]


def _run(ray, tasks: list[tuple], n: int, sizes: list[int], progress: bool, desc: str) -> dict:
    """Run (method, key, *args) tasks on n actors (kept only inside warm_pool()); returns
    {key: result}."""
    from ray.util import ActorPool

    actors = _actors(ray, min(n, len(tasks)))
    done = False
    try:
        out = {}
        size_of = {t[1]: s for t, s in zip(tasks, sizes, strict=True)}
        with tqdm(total=sum(sizes), desc=desc, disable=not progress) as bar:
            work = ActorPool(actors).map_unordered(
                lambda a, t: getattr(a, t[0]).remote(*t[1:]), tasks
            )
            for key, result in work:
                out[key] = result
                bar.update(size_of[key])
        done = True
        return out
    finally:
        # a failed or interrupted pool may hold broken actors: start afresh next time
        if not (_keep_warm and done):
            _release()


def solve_grid(
    alphas, lambdas, *, n_actors: int | None = None, progress: bool = True, tol: float = 1e-9
) -> pd.DataFrame:
    """eps(lam; alpha) on the grid alphas x lambdas, one row per pair (THEORY_COLUMNS).

    n_actors: None = one actor per CPU of the Ray cluster (the running one if
    ray.is_initialized(), else a local one started and shut down here), and never more
    actors than CPUs (each holds one); 0 = serial, no Ray.
    Rows come in the order alphas x lambdas as given; non-converged points keep
    converged=False and their residual.
    """
    alphas = check_positive_array("alpha", alphas)
    lambdas = check_positive_array("lam", lambdas)
    if n_actors is not None and n_actors < 0:
        raise ValueError(f"n_actors must be >= 0, got {n_actors}")
    order = np.argsort(lambdas, kind="stable")
    lam_sorted = lambdas[order]
    if n_actors == 0:
        n_chunks = 1
        results = {}
        with tqdm(total=alphas.size * lambdas.size, desc="theory grid", disable=not progress) as b:
            for i, a in enumerate(alphas):
                results[(i, 0)] = solve_chunk(float(a), lam_sorted, tol)
                b.update(lambdas.size)
    else:
        with _ray_session() as ray:
            # each actor holds one CPU: more actors than CPUs would wait forever (deadlock)
            n = min(n_actors or _cluster_cpus(ray), _cluster_cpus(ray))
            # one task per alpha row keeps the whole row on one continuation path; split the
            # lam axis into contiguous shares only when there are too few rows to keep every
            # actor busy (each share starts cold, which costs about one extra point)
            n_chunks = 1 if alphas.size >= 4 * n else min(n, lambdas.size)
            tasks, sizes = [], []
            for i, a in enumerate(alphas):
                for k, part in enumerate(np.array_split(lam_sorted, n_chunks)):
                    tasks.append(("solve", (i, k), float(a), part, tol))
                    sizes.append(part.size)
            results = _run(ray, tasks, n, sizes, progress, "theory grid")
    rows = []
    base = _baselines(alphas)
    for i, a in enumerate(alphas):
        chunk_rows = [r for k in range(n_chunks) for r in results[(i, k)]]
        by_sorted = np.empty(lambdas.size, dtype=object)
        by_sorted[order] = chunk_rows  # back to the caller's lam order
        rows.extend(r + base[a] for r in by_sorted)
    df = pd.DataFrame(rows, columns=list(THEORY_COLUMNS))
    df["converged"] = df["converged"].astype(bool)
    return df


def optimum_table(alphas, *, n_actors: int | None = None, progress: bool = False) -> pd.DataFrame:
    """(alpha, lambda_opt, eps_opt, eps_hebb, eps_bayes, eps_maxstab), one row per alpha.

    lambda_opt is the root of d eps / d lam (theory.optimum), not a grid minimum.
    n_actors as in solve_grid (0 = serial).
    """
    alphas = check_positive_array("alpha", alphas)
    if n_actors == 0:
        opt = {i: optimum(float(a)) for i, a in enumerate(alphas)}
    else:
        tasks = [("optimum", i, float(a)) for i, a in enumerate(alphas)]
        with _ray_session() as ray:
            n = min(n_actors or _cluster_cpus(ray), _cluster_cpus(ray))
            opt = _run(ray, tasks, n, [1] * len(tasks), progress, "theory optimum")
    base = _baselines(alphas)
    rows = [(a, *opt[i], *base[a]) for i, a in enumerate(alphas)]
    return pd.DataFrame(rows, columns=list(THEORY_OPT_COLUMNS))
