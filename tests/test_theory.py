"""Tests of the fixed-norm perceptron theory (paper Sec. 2, App. A, B, D; issue 2).

Every numerical check is against something independent of the solver's own integrals:
closed forms (Hebb), a separately derived hard-margin solution (max-stability), published
constants (0.442/alpha, 0.5005/alpha, 0.625/alpha), brute-force minimisation, scipy.quad in
the other integration variable, and a finite-N simulation.
"""

import math
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.integrate import quad as scipy_quad
from scipy.optimize import minimize_scalar
from scipy.special import ndtr

from common.names import THEORY_COLUMNS, THEORY_OPT_COLUMNS
from theory import (
    V,
    dV,
    eps_bayes,
    eps_hebb,
    eps_maxstab,
    local_slope,
    optimum,
    optimum_table,
    prox,
    solve_grid,
    solve_point,
)
from theory.baselines import gibbs_overlap_gap
from theory.saddle import DEFAULT_QUAD, sigma0
from theory.simulate import simulate
from theory.solve import main as cli_main

# --- potential and prox ------------------------------------------------------------------


def test_potential_sign_and_limits():
    d = np.linspace(-3, 3, 13)
    # Eq. 1 decreases with the margin (App. D prints the opposite sign)
    assert np.all(np.diff(V(d, 2.0)) < 0)
    # lam -> 0: V -> -Delta + log(2)/lam (Hebb); lam -> inf: V -> -2 Delta theta(-Delta)
    assert np.allclose(V(d, 1e-6) - math.log(2) / 1e-6, -d, atol=1e-5)
    assert np.allclose(V(d, 1e4), -2 * d * (d < 0), atol=1e-4)
    # V' by central differences
    h = 1e-6
    assert np.allclose(dV(d, 1.7), (V(d + h, 1.7) - V(d - h, 1.7)) / (2 * h), atol=1e-6)


@pytest.mark.parametrize("lam", [1e-4, 0.3, 7.0, 1e3, 1e5])
@pytest.mark.parametrize("x", [1e-4, 0.2, 5.0])
def test_prox_matches_brute_force_minimisation(lam, x):
    for t in (-4.0, -0.3, 0.0, 1e-3, 2.5):

        def f(D, t=t):
            return V(D, lam) + (D - t) ** 2 / (2 * x)

        ref = minimize_scalar(f, bracket=(t, t + 2 * x), tol=1e-12).x
        got = prox(t, x, lam)
        assert f(got) <= f(ref) + 1e-12 * (1 + abs(f(ref)))  # at least as good a minimum
        assert abs(got - ref) < 1e-5 * (1 + x)


def test_prox_monotone_and_huge_x():
    t = np.linspace(-10, 10, 401)
    for lam, x in [(1e-4, 3.0), (1.0, 1e-3), (1e5, 2.0), (1e6, np.exp(600.0))]:
        D = prox(t, x, lam)
        assert np.all(np.isfinite(D)) and np.all(np.diff(D) >= 0)
        # the shift D - t = 2 x sigma(-2 lam D) is positive (up to one rounding of lam t / lam)
        assert np.all(D - t >= -4e-16 * np.abs(t))


# --- limits of the saddle point ------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.05, 0.5, 2.0, 50.0, 1e4])
def test_small_lambda_is_hebb(alpha):
    e3 = solve_point(alpha, 1e-3).epsilon
    e5 = solve_point(alpha, 1e-5).epsilon
    hebb = eps_hebb(alpha)
    # the deviation is O(lam): it shrinks ~100x from lam = 1e-3 to 1e-5
    assert abs(e5 - hebb) / hebb < 1e-5
    assert abs(e5 - hebb) < abs(e3 - hebb) / 30


@pytest.mark.parametrize("alpha", [0.05, 0.5, 2.0, 100.0])
def test_large_lambda_approaches_max_stability(alpha):
    """eps(lam) - eps_maxstab closes like 1/lam (App. D), checked only where it is resolved.

    solve_point guarantees a relative residual of Eq. 14a/14b below tol = 1e-9 (and reports
    the one it reached); eps = arccos(R)/pi is then known to about that residual, so delta =
    max(residual, tol) bounds its error. At alpha = 0.05 the gap at lam = 1e6 is ~2e-10 with
    residual ~1e-9: it is below the precision and says nothing about the 1/lam law. The law is
    tested on consecutive decades whose gaps are both >= 100 delta (each known to 1%) and that
    lie in the asymptotic regime lam >= 100 max(alpha, 1) (nearer, the O(1/lam^2) term moves
    the ratio by more than 1%: 9.49 at alpha = 100 from 1e3 to 1e4).
    """
    ms = eps_maxstab(alpha)  # independent hard-margin equations, own quadrature
    lams = [10.0**k for k in range(2, 7)]
    sols = [solve_point(alpha, lam) for lam in lams]
    assert all(s.converged for s in sols)
    gap = [s.epsilon - ms for s in sols]
    delta = [max(s.residual, 1e-9) for s in sols]
    pairs = [
        i
        for i in range(len(lams) - 1)
        if lams[i] >= 100 * max(alpha, 1.0)
        and min(abs(gap[i]), abs(gap[i + 1])) >= 100 * max(delta[i], delta[i + 1])
    ]
    assert pairs, "no decade where the gap is resolved: the test would check nothing"
    for i in pairs:
        # the gap shrinks 10x per decade and keeps its sign (eps approaches ms from below)
        assert gap[i] / gap[i + 1] == pytest.approx(10.0, rel=0.05)
    # the Richardson extrapolation lam -> inf lands on the max-stability error: e5, e6 are
    # known to ~1e-9 absolute, far inside the asserted 1e-7 relative (eps ~ 0.005 .. 0.44)
    e5, e6 = sols[-2].epsilon, sols[-1].epsilon
    assert e6 + (e6 - e5) / 9 == pytest.approx(ms, rel=1e-7)


def test_published_baseline_constants():
    # Gibbs 0.625/alpha, Bayes 0.442/alpha (Opper & Haussler 1991), max-stab 0.5005/alpha
    a = 1e5
    gibbs = math.sqrt(2 * gibbs_overlap_gap(a)) / math.pi
    assert gibbs * a == pytest.approx(0.625, abs=1e-3)
    assert eps_bayes(a) * a == pytest.approx(0.442, abs=1e-3)
    assert eps_maxstab(a) * a == pytest.approx(0.5005, abs=1e-3)
    # small alpha: Bayes, Hebb and max-stab coincide to leading order (R ~ sqrt(2 alpha/pi))
    a = 1e-3
    for e in (eps_bayes(a), eps_maxstab(a)):
        assert abs(e - eps_hebb(a)) < 1e-3
    # ordering: Bayes is optimal
    for a in (0.5, 2.0, 20.0):
        assert eps_bayes(a) < eps_maxstab(a) < eps_hebb(a)


def test_baselines_vectorise():
    got = eps_hebb(np.array([[1.0, 2.0], [4.0, 8.0]]))
    assert got.shape == (2, 2) and got[0, 1] == pytest.approx(eps_hebb(2.0))
    hebb_R = math.sqrt(2 * 3.0 / (2 * 3.0 + math.pi))
    assert eps_hebb(3.0) == pytest.approx(math.acos(hebb_R) / math.pi, rel=1e-14)


@pytest.mark.parametrize("alpha", [1.0, 10.0, 1000.0])
def test_optimum_close_to_bayes_but_not_below(alpha):
    lam_opt, eps_opt = optimum(alpha)
    bayes = eps_bayes(alpha)
    assert bayes <= eps_opt < bayes * 1.001  # within 0.1%; nothing beats Bayes
    # it is a minimum: neighbours are higher, and the slope vanishes there
    for f in (0.9, 1.1):
        assert solve_point(alpha, lam_opt * f).epsilon > eps_opt
    assert abs(local_slope(alpha, lam_opt)) < 1e-6


def test_lambda_opt_proportional_to_alpha():
    ratios = [optimum(a)[0] / a for a in (1e2, 1e3, 1e4)]
    # gamma_2 = 1: lam_opt / alpha settles to a constant (0.8836...)
    assert abs(ratios[2] - ratios[1]) < abs(ratios[1] - ratios[0]) + 1e-6
    assert ratios[2] == pytest.approx(ratios[1], rel=1e-3)
    (l3, e3), (l5, e5) = optimum(1e3), optimum(1e5)
    assert math.log(l5 / l3) / math.log(100) == pytest.approx(1.0, abs=1e-3)
    assert math.log(e3 / e5) / math.log(100) == pytest.approx(1.0, abs=1e-3)


def test_local_slope_tends_to_minus_half():
    # Eq. 20-21: slope -> -1/2 for 1 << lam << alpha; the window opens as alpha grows
    s4 = [local_slope(1e4, lam) for lam in (10.0, 30.0, 100.0)]
    s5 = [local_slope(1e5, lam) for lam in (10.0, 30.0, 100.0, 300.0)]
    assert max(abs(s + 0.5) for s in s5) < 0.01
    assert max(abs(s + 0.5) for s in s5[:3]) < max(abs(s + 0.5) for s in s4)


def test_local_slope_matches_finite_difference():
    for alpha, lam in [(2.0, 0.7), (300.0, 30.0), (5.0, 200.0)]:
        h = 1e-4
        ep = solve_point(alpha, lam * math.exp(h), tol=1e-13).epsilon
        em = solve_point(alpha, lam * math.exp(-h), tol=1e-13).epsilon
        fd = (math.log(ep) - math.log(em)) / (2 * h)
        assert local_slope(alpha, lam) == pytest.approx(fd, abs=1e-6)


def test_appendix_d_asymptotics():
    # x ~ sqrt(pi/2)/alpha and theta^2 ~ pi Sigma_0(lam)/alpha for lam << alpha (App. D,
    # with the constants the delta-sequence argument of Eq. 17-18 drops), errors ~ 1/alpha
    for lam in (0.1, 1.0, 10.0):
        err = []
        for alpha in (1e4, 1e5):
            s = solve_point(alpha, lam)
            err.append(
                max(
                    abs(s.x * alpha / math.sqrt(math.pi / 2) - 1),
                    abs(s.theta**2 * alpha / (math.pi * sigma0(lam)) - 1),
                )
            )
        assert err[1] < 3e-4 and err[1] < err[0] / 5


# --- numerics: quadrature, independent residual check, extremes, failure reporting --------

CONVERGENCE_POINTS = [
    (0.05, 1e-4),
    (0.5, 3.0),
    (2.0, 300.0),
    (30.0, 1e5),
    (1e3, 30.0),
    (1e5, 1e3),
    (1e5, 1e6),
]


@pytest.mark.parametrize("alpha,lam", CONVERGENCE_POINTS)
def test_quadrature_converged(alpha, lam):
    base = solve_point(alpha, lam, tol=1e-12)
    fine = solve_point(alpha, lam, tol=1e-12, guess=base, quad=DEFAULT_QUAD.refined())
    assert base.converged and fine.converged
    diff = abs(base.epsilon - fine.epsilon)
    assert diff < 1e-9 and diff / fine.epsilon < 1e-9


@pytest.mark.parametrize("alpha,lam", [(0.7, 0.4), (3.0, 5.0), (40.0, 20.0)])
def test_residual_with_independent_quadrature(alpha, lam):
    # Eq. 14a/14b evaluated in t (not Delta) with scipy.quad and the vectorised prox
    s = solve_point(alpha, lam, tol=1e-12)
    R, sq, x = s.R, math.sin(s.theta), s.x

    def g(t):
        return prox(t, x, lam) - t

    def phi(u):
        return math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)

    opts = dict(epsabs=0, epsrel=1e-12, limit=400, points=[0.0])
    A = scipy_quad(lambda t: phi(t) * ndtr(R * t / sq) * g(t) ** 2, -12, 12, **opts)[0]
    B = scipy_quad(lambda z: phi(z) * g(sq * z), -12, 12, **opts)[0]
    assert 2 * alpha * A == pytest.approx(1 - R * R, rel=1e-8)
    assert 2 * alpha * B / math.sqrt(2 * math.pi) == pytest.approx(R, rel=1e-8)


@pytest.mark.parametrize("alpha", [0.05, 1.0, 1e5])
@pytest.mark.parametrize("lam", [1e-4, 1.0, 1e5])
def test_extreme_values_work(alpha, lam):
    s = solve_point(alpha, lam)
    assert s.converged and s.residual <= 1e-9
    assert 0 < s.epsilon < 0.5 and math.isclose(s.epsilon, math.acos(s.R) / math.pi, rel_tol=1e-6)


def test_failure_is_reported_not_silent():
    s = solve_point(2.0, 1e5, tol=1e-17)  # below the rounding floor: cannot converge
    assert not s.converged and s.residual > 1e-17


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "abc", None])
def test_bad_input_names_the_parameter(bad):
    with pytest.raises(ValueError, match="alpha"):
        solve_point(bad, 1.0)
    with pytest.raises(ValueError, match="lam"):
        solve_point(1.0, bad)
    with pytest.raises(ValueError, match="alpha"):
        eps_bayes(bad)
    with pytest.raises(ValueError, match="alpha"):
        optimum(bad)
    with pytest.raises(ValueError, match="lam"):
        solve_grid([1.0], [1.0, bad], n_actors=0, progress=False)


# --- grid, pool, CLI ------------------------------------------------------------------------


def test_serial_grid_columns_and_order():
    lams = [10.0, 0.01, 1.0]  # unsorted on purpose: output keeps the caller's order
    df = solve_grid([2.0, 50.0], lams, n_actors=0, progress=False)
    assert tuple(df.columns) == THEORY_COLUMNS and len(df) == 6
    assert list(df["lambda"]) == lams * 2 and list(df["alpha"]) == [2.0] * 3 + [50.0] * 3
    assert df["converged"].all()
    for row in df.itertuples():
        assert row.epsilon == pytest.approx(solve_point(row.alpha, row._2).epsilon, rel=1e-8)
    assert (df["eps_hebb"] == df["alpha"].map(eps_hebb)).all()


def test_actor_pool_equals_serial(ray_session):
    alphas, lams = [0.5, 20.0, 3e3], np.logspace(-2, 4, 9)[::-1]
    serial = solve_grid(alphas, lams, n_actors=0, progress=False)
    pooled = solve_grid(alphas, lams, n_actors=2, progress=False)
    assert tuple(pooled.columns) == THEORY_COLUMNS
    assert (pooled[["alpha", "lambda"]].to_numpy() == serial[["alpha", "lambda"]].to_numpy()).all()
    assert pooled["converged"].all()
    # warm starts differ between chunks, so agreement is to the solver tolerance, not bitwise
    np.testing.assert_allclose(pooled["epsilon"], serial["epsilon"], rtol=1e-9)
    np.testing.assert_allclose(pooled["R"], serial["R"], rtol=1e-9)
    # many alphas: one task per whole row instead of shares of the lam axis; same table
    many = np.logspace(-1, 4, 8)
    rows = solve_grid(many, lams[:4], n_actors=2, progress=False)
    alone = solve_grid(many, lams[:4], n_actors=0, progress=False)
    np.testing.assert_allclose(rows["epsilon"], alone["epsilon"], rtol=1e-9)
    assert (rows["alpha"].to_numpy() == np.repeat(many, 4)).all()
    # more actors than the 2 CPUs of the session: capped, not a deadlock
    capped = solve_grid([7.0], lams, n_actors=5, progress=False)
    np.testing.assert_allclose(
        capped["epsilon"], solve_grid([7.0], lams, n_actors=0, progress=False)["epsilon"], rtol=1e-9
    )
    opt_pool = optimum_table([5.0, 500.0], n_actors=2)
    opt_serial = optimum_table([5.0, 500.0], n_actors=0)
    assert tuple(opt_pool.columns) == THEORY_OPT_COLUMNS
    np.testing.assert_allclose(opt_pool["eps_opt"], opt_serial["eps_opt"], rtol=1e-9)
    np.testing.assert_allclose(opt_pool["lambda_opt"], opt_serial["lambda_opt"], rtol=1e-6)


def test_cli_grid_and_optimum(tmp_path):
    import pandas as pd

    out = tmp_path / "grid.csv"
    rc = cli_main(
        ["--alphas", "0.5,2", "--lambdas", "logspace:-2:2:5", "--out", str(out)]
        + ["--actors", "0", "--quiet"]
    )
    df = pd.read_csv(out)
    assert rc == 0 and tuple(df.columns) == THEORY_COLUMNS and len(df) == 10
    out = tmp_path / "opt.parquet"
    assert cli_main(["--alphas", "3", "--optimum", "--out", str(out), "--actors", "0"]) == 0
    df = pd.read_parquet(out)
    assert df["lambda_opt"].iloc[0] == pytest.approx(optimum(3.0)[0], rel=1e-8)


@pytest.mark.parametrize(
    "args",
    [
        ["--alphas", "1,-2", "--lambdas", "1"],
        ["--alphas", "1", "--lambdas", "nan"],
        ["--alphas", "1", "--lambdas", "inf"],
        ["--alphas", "0", "--lambdas", "1"],
        ["--alphas", "1", "--lambdas", "logspace:1:2"],
        ["--alphas", "x", "--lambdas", "1"],
        ["--alphas", "1"],
    ],
)
def test_cli_bad_input_exit_2(args, tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert cli_main(args + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: --")
    assert not out.exists()


def test_cli_subprocess_help_and_exit_code():
    run = [sys.executable, "-m", "theory.solve"]
    assert subprocess.run(run + ["--help"], capture_output=True).returncode == 0
    bad = subprocess.run(
        run + ["--alphas", "-1", "--lambdas", "1", "--out", "x.csv"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "alphas" in bad.stderr


def test_import_is_free_of_torch_mlflow_ray():
    code = "import sys, theory; print([m for m in ('torch','mlflow','ray') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]"


# --- finite-N simulation --------------------------------------------------------------------


def _agrees(alpha, lam, N, samples, seed):
    mean, sem = simulate(alpha, lam, N=N, samples=samples, seed=seed)
    theory = solve_point(alpha, lam).epsilon
    # 3 standard errors, plus a 1/N allowance for the finite-size bias
    return abs(mean - theory) <= 3 * sem + 1.0 / N, (mean, sem, theory)


def test_simulation_quick():
    ok, info = _agrees(1.0, 1.0, N=1000, samples=4, seed=1)
    assert ok, info


@pytest.mark.slow
@pytest.mark.parametrize("alpha,lam", [(0.5, 3.0), (2.0, 0.5), (4.0, 4.0)])
def test_simulation_slow(alpha, lam):
    ok, info = _agrees(alpha, lam, N=2000, samples=10, seed=2)
    assert ok, info


def _free_cpus(ray, want: float) -> float:
    # actor teardown is asynchronous: wait (bounded) for the CPUs to come back
    for _ in range(100):
        free = ray.available_resources().get("CPU", 0.0)
        if free >= want:
            break
        time.sleep(0.1)
    return free


def test_pool_gives_its_cpus_back_unless_kept_warm(ray_session):
    """A sweep starts its trials in the same Ray session right after the theory grid: actors
    left alive would hold every CPU and the trials would wait forever."""
    from theory.pool import _WARM, warm_pool

    ray = ray_session
    total = ray.cluster_resources()["CPU"]
    solve_grid([10.0], [0.1, 1.0], n_actors=2, progress=False)
    assert _free_cpus(ray, total) == total
    with warm_pool():
        solve_grid([10.0], [0.1, 1.0], n_actors=2, progress=False)
        job = ray.get_runtime_context().get_job_id()
        first = list(_WARM[job])
        solve_grid([20.0], [0.1, 1.0], n_actors=2, progress=False)
        assert _WARM[job] == first  # the same actors served the second call
    assert _free_cpus(ray, total) == total
