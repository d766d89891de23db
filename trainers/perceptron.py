"""Free-norm perceptron in the teacher-student setting (Section 2, Eq. 1 at lambda = 1).

Data. Each seed draws a teacher w* (Gaussian, rescaled to |w*|^2 = N), P = alpha N Rademacher
inputs x^mu and labels y^mu = sign(w* . x^mu). Only z^mu = y^mu x^mu enters the loss, so that
is what we store: the margin is Delta^mu = z^mu . w / sqrt(N).

Loss. Eq. (1) with lambda = 1, per example: V_1(Delta) = -(Delta - log 2cosh Delta)
= log(1 + exp(-2 Delta)) = softplus(-2 Delta); we minimise its mean over the P examples.
`loss=mse` (Appendix C, Fig. 7) is the squared error of the margin against the +-1 label,
(y - w.x/sqrt N)^2 = (1 - Delta)^2: its minimiser at alpha > 1 has a finite norm.

The exact map to the fixed-norm theory. Write w = lam * w_hat with |w_hat|^2 = N, i.e.
lam = |w| / sqrt(N) (recorded as `norm`). Then Delta(w) = lam * Delta(w_hat), and
    V_1(lam * Delta_hat) = log(1 + exp(-2 lam Delta_hat)) = lam * V_lam(Delta_hat),
so L_free(w) = lam * L_lam(w_hat): along any direction, the free-norm student at norm lam sees
exactly the landscape (up to the factor lam) of the fixed-norm problem |w|^2 = N with sharpness
lambda = lam. This is why lambda(t) = |w(t)|/sqrt(N) is the theory's lambda (tested).

Dynamics: eps(lambda) is a property of the path. Full-batch gradient descent is the explicit
Euler discretisation of the gradient flow dw/dt = -grad L(w). The flow's trajectory, the curve
{w(t)} in weight space, does not depend on how it is parametrised: any dt = ds / c(w) with
c > 0 traces the same curve at another speed. The paper's curves eps against lambda = |w|/sqrt N
are functions of the point on that curve, not of t, so they are properties of the path; the
number of steps to reach a given lambda is a property of the discretisation only. Two rules:

- `constant` (the paper's): w <- w - lr grad L, lr = 1/L by default. The Hessian of the mean
  logistic loss is (1/(P N)) sum_mu 4 s(2D)s(-2D) z z^T <= Z^T Z/(P N) (s the sigmoid,
  4 s s' <= 1; for mse V'' = 2), so the loss is L-smooth with L = ||Z||_2^2 / (P N) ~
  (1 + 1/sqrt(alpha))^2 / N, from power iteration per data set (lr ~ N/2 at alpha = 5). The
  descent lemma holds, but after separation the norm grows only like log(t): the loss, and
  with it the gradient, falls like exp(-lambda), so reaching lambda needs ~exp(c lambda) steps
  (the paper's Section 2 stops there). Its first step lands at lambda ~ 0.45, and below
  lambda ~ 1 the curve lies above the gradient-flow one (alpha = 5, lambda = 0.5: eps 0.158 at
  lr = 1/L, 0.139 at lr = 0.1/L; the fixed-norm theory gives 0.124).
- `adaptive` (the default): an explicit integrator of the same flow with a step size h per
  seed chosen by a local-error controller, so it follows the path to a set accuracy at a
  speed set by the local curvature. Error: Euler w1 = w - h g(w) and Heun
  w - (h/2)(g(w) + g(w1)) differ by err = (h/2) |g(w1) - g(w)| ~ (h^2/2) |H g|, the local
  error of a first-order step on the path. A step is accepted if err <= step_tol |w1| (the
  relative error in the direction w/|w|, which is all eps depends on), and either way
  h <- h * clip(0.9 sqrt(step_tol |w1| / err), 0.2, 5) (error O(h^2); Hairer, Norsett &
  Wanner, Solving ODEs I, II.4). g(w1) is the next step's gradient (no extra cost). For
  the Chebyshev step below, whose own h^2 term is smaller than Euler's, err over-estimates the
  local error: the controller errs on the side of the path.
  Stiffness: at large alpha the few examples near the decision boundary keep the Hessian's
  top eigenvalue rho high while the gradient, and the path's speed, fall; plain Euler is then
  held at h < 2/rho (measured: ~10^4 steps to lambda = 85 at alpha = 64). The Hessian is
  symmetric, its spectrum real, so the step is a damped first-order Runge-Kutta-Chebyshev
  step (`rkc_step`): s gradient evaluations buy a stability interval ~1.9 s^2, with s chosen
  from a warm-started power-iteration estimate of rho. s = 1 is the Euler step; the path
  accuracy is set by the same controller. Measured at alpha = 64, N = 300: eps(lambda) equal
  to plain Euler's within 2e-4, lambda = 85 after ~1,200 gradient evaluations.
  Small lambda is resolved too (the first steps are short, where the path bends most).

Stopping. `epochs` is the budget of gradient evaluations (one epoch = one pass over the P
examples: a constant step, an RKC stage, or a power-iteration product);
`lambda_stop` stops a seed once its norm passes it. Records are taken at the log-spaced
epochs and, in addition, whenever lambda crosses a point of a log grid with
LAMBDA_POINTS_PER_DECADE points per decade, so the curves are dense in lambda whatever the
speed of the rule. Each seed's last record says why it ended (trainers/status.py):
- `budget`, `lambda_stop`: as configured;
- `float_resolution`: on separable data (every teacher-student set) the logistic loss has no
  finite minimiser and lambda -> infinity, the max-stability limit of Section 2. The loss
  and its gradient fall like exp(-2 kappa lambda) (kappa the smallest normalised margin), and
  once every per-example derivative |V'(Delta^mu)| is below float32's smallest normal number
  (FLOAT_TINY, ~1.2e-38: every margin above ~44) the gradient is subnormal or zero and has
  no precision left: the seed ends there, FINISHED, with the lambda it reached. This is the
  expected end of a long run, not an error; without it the step size grew without bound on
  a zero gradient and h * rho became inf * 0;
- `diverged`: a non-finite weight (e.g. a constant lr above 2/L); the seed's last finite
  state is kept and recorded, and the run's status is `diverged`.
The step size and the Chebyshev stage count are kept finite whatever the state (H_MAX), so no
finite state raises.

Batching. Several seeds run as one (S, P, N) tensor with batched matmuls; each seed's data,
teacher and init come from its own generator and each seed has its own step size. Under the
constant rule seed s gives the same trajectory alone or in a batch; under the adaptive rule
the seeds of a batch share the number of Chebyshev stages (the largest any of them needs), so
a batched seed takes other steps along the same path (eps(lambda) equal within step_tol,
tested). Weights are kept in float64 (late-time updates are ~1e-8 relative to |w| under the
constant rule, below float32 resolution) while the +-1 data and the matmuls stay float32.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from common.names import (
    EPOCH,
    NORM_PERCEPTRON,
    OVERLAP,
    STOP_REASON,
    TEST_ERROR,
    TEST_LOSS,
    TRAIN_ERROR,
    TRAIN_LOSS,
)
from trainers.config import TrialConfig, logged_epochs
from trainers.device import resolve_device
from trainers.status import (
    STATUS_COMPLETED,
    STATUS_DIVERGED,
    STATUS_RUNNING,
    STOP_BUDGET,
    STOP_DIVERGED,
    STOP_LAMBDA,
    STOP_RESOLUTION,
    stop_reason,
)

# -----------------------------------------------------------------------------
# Data and closed-form quantities


def make_teacher_data(
    seed: int, N: int, P: int, init_scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z = y x of shape (P, N) float32, teacher w* (N,) with |w*|^2 = N, w(0) (N,) float64)."""
    g = torch.Generator().manual_seed(int(seed))
    teacher = torch.randn(N, generator=g, dtype=torch.float64)
    teacher *= math.sqrt(N) / teacher.norm()
    x = torch.randint(0, 2, (P, N), generator=g, dtype=torch.int8).mul_(2).sub_(1)
    y = torch.sign(x.double() @ teacher)
    y[y == 0] = 1.0  # a tie has probability ~0 for a Gaussian teacher; break it anyway
    z = x.float().mul_(y.float()[:, None])
    w0 = torch.randn(N, generator=g, dtype=torch.float64)
    w0 *= init_scale * math.sqrt(N) / w0.norm()
    return z, teacher, w0


def loss_fixed_norm(delta: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. (1) per example: V_lam(Delta) = -(1/lam) (lam Delta - log 2cosh(lam Delta))."""
    t = lam * delta
    return -(t - torch.log(2 * torch.cosh(t))) / lam


def expected_test_loss(lam: torch.Tensor, R: torch.Tensor, n_nodes: int = 80) -> torch.Tensor:
    """E_x[V_1(Delta)] on fresh inputs, in the large-N (Gaussian) limit.

    u = w.x/|w| and v = w*.x/|w*| are standard normals with correlation R, and
    Delta = lam * u * sign(v), so E V_1 = E_u[softplus(-2 lam u) Phi(R u / sqrt(1 - R^2))
    + softplus(2 lam u) Phi(-R u / sqrt(1 - R^2))], by Gauss-Hermite quadrature in u.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)  # weight exp(-u^2/2)
    u = torch.as_tensor(nodes, dtype=torch.float64, device=lam.device)
    wq = torch.as_tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64, device=lam.device)
    lam, R = lam.double()[:, None], R.double().clamp(-1 + 1e-12, 1 - 1e-12)[:, None]
    p_right = torch.special.ndtr(R * u / torch.sqrt(1 - R**2))
    vals = F.softplus(-2 * lam * u) * p_right + F.softplus(2 * lam * u) * (1 - p_right)
    return vals @ wq


# -----------------------------------------------------------------------------
# Trainer

LAMBDA_POINTS_PER_DECADE = 24  # extra records per decade of lambda (module docstring)
GROW_MAX, SHRINK_MAX, SAFETY = 5.0, 0.2, 0.9  # step-size controller limits (module docstring)
# Runge-Kutta-Chebyshev stages (module docstring): damping eta, stability interval ~ beta s^2
RKC_ETA, RKC_BETA, RKC_MARGIN, RKC_MAX_STAGES = 0.05, 2 - 4 * 0.05 / 3, 0.8, 64
RHO_EVERY, RHO_ITERS = 20, 2  # curvature re-estimated every 20 gradients, 2 products each
FLOAT_TINY = torch.finfo(torch.float32).tiny  # below it V' is subnormal (module docstring)
H_MAX = 1e250  # step-size cap: h * |g| and h * rho stay finite (module docstring)


def rkc_step(
    w: torch.Tensor,
    g: torch.Tensor,
    h: torch.Tensor,
    s: int,
    grad: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """One damped first-order Runge-Kutta-Chebyshev step of dw/dt = -grad L(w), step h (S,).

    Stability polynomial R_s(z) = T_s(w0 + w1 z) / T_s(w0), w0 = 1 + eta/s^2,
    w1 = T_s(w0)/T_s'(w0) (so R_s = 1 + z + O(z^2): first order), stable on the negative real
    axis up to ~ -(2 - 4 eta/3) s^2 (Verwer, Hundsdorfer & Sommeijer 1990; Hairer & Wanner,
    Solving ODEs II, IV.2). Stages by the Chebyshev recurrence T_j = 2x T_{j-1} - T_{j-2}:
    Y_j = mu_j Y_{j-1} + nu_j Y_{j-2} + mut_j h F(Y_{j-1}), F = -grad L; s = 1 is Euler.
    g = grad L(w) is given (reused from the previous step)."""
    if s == 1:
        return w - h[:, None] * g
    w0 = 1 + RKC_ETA / s**2
    T = [1.0, w0]  # T_j(w0)
    dT = [0.0, 1.0]  # T_j'(w0)
    for _ in range(2, s + 1):
        T.append(2 * w0 * T[-1] - T[-2])
        dT.append(2 * T[-2] + 2 * w0 * dT[-1] - dT[-2])
    w1 = T[s] / dT[s]
    hs = h[:, None]
    y_prev, y = w, w - (w1 / w0) * hs * g
    for j in range(2, s + 1):
        mu, nu, mut = 2 * w0 * T[j - 1] / T[j], -T[j - 2] / T[j], 2 * w1 * T[j - 1] / T[j]
        y_prev, y = y, mu * y + nu * y_prev - mut * hs * grad(y)
    return y


_LOSS_CURVATURE = {"logistic": 1.0, "mse": 2.0}  # max_Delta V''(Delta), for L


def dV(delta: torch.Tensor, loss: str) -> torch.Tensor:
    """dV/dDelta per example: logistic -2 sigmoid(-2 Delta); mse -2 (1 - Delta)."""
    if loss == "logistic":
        return -2 * torch.sigmoid(-2 * delta)
    return -2 * (1 - delta)


def train_loss(delta: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean V(Delta) over the examples (last axis), float64."""
    delta = delta.double()  # (1 - Delta)^2 of a diverging run overflows float32
    v = F.softplus(-2 * delta) if loss == "logistic" else (1 - delta) ** 2
    return v.mean(-1)


def expected_mse(lam: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """E (1 - Delta)^2 on fresh inputs: Delta = lam u sign(v), E[u sign v] = R sqrt(2/pi)."""
    lam, R = lam.double(), R.double()
    return 1 + lam**2 - 2 * lam * R * math.sqrt(2 / math.pi)


class PerceptronTrainer:
    """Full-batch GD on Eq. (1), lambda = 1, for one seed (cfg.seed) or several at once."""

    def __init__(self, cfg: TrialConfig, seeds: Sequence[int] | None = None):
        if cfg.kind != "perceptron":
            raise ValueError(f"kind: PerceptronTrainer needs kind=perceptron, got {cfg.kind!r}")
        if cfg.step_rule not in ("adaptive", "constant") or cfg.loss not in _LOSS_CURVATURE:
            raise ValueError(f"step_rule/loss: unknown {cfg.step_rule!r}/{cfg.loss!r}")
        self.cfg = cfg
        self.seeds = [cfg.seed] if seeds is None else [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("seeds: need at least one seed")
        self.device = resolve_device(cfg.device)
        N, P = cfg.N, cfg.P
        zs, ts, ws = zip(
            *(make_teacher_data(s, N, P, cfg.init_scale) for s in self.seeds), strict=True
        )
        self.z = torch.stack(zs).to(self.device)  # (S, P, N) float32, +-1 entries
        self.teacher = torch.stack(ts).to(self.device)  # (S, N) float64
        self.w = torch.stack(ws).to(self.device)  # (S, N) float64 master weights
        self.use_bmm = self.device.type != "cpu"  # see _zw
        # Step size per seed (the adaptive rule's first step): the config's, or 1/L.
        self.lr = (
            torch.full((len(self.seeds),), cfg.lr, dtype=torch.float64, device=self.device)
            if cfg.lr > 0
            else 1.0 / self.smoothness()
        )
        self.epoch = 0
        self.status = STATUS_RUNNING
        self._logged = logged_epochs(cfg)  # sorted; the adaptive rule may jump over some
        S = len(self.seeds)
        self.active = torch.ones(S, dtype=torch.bool, device=self.device)  # below lambda_stop
        self.next_lam = torch.full((S,), -math.inf, dtype=torch.float64, device=self.device)
        self._g: torch.Tensor | None = None  # grad L(w), kept between adaptive steps
        self._eigvec = torch.stack(  # power-iteration start, from each seed alone
            [
                torch.randn(N, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                for s in self.seeds
            ]
        ).to(self.device)
        self.rho = 1.0 / self.lr  # curvature estimate; refreshed by _power_step
        self._next_rho = 0
        self.stages = 1
        self.rejected = 0
        self.last_logged = torch.zeros(S, dtype=torch.long, device=self.device)
        self.dv_max = torch.full((S,), math.inf, dtype=torch.float32, device=self.device)
        self.reasons: list[str | None] = [None] * S  # why each seed ended (module docstring)

    # --- one step and one record ------------------------------------------------
    def _zw(self, v: torch.Tensor) -> torch.Tensor:
        """z^mu . v per seed: (S, N) -> (S, P). A batched matmul on the GPU; on the CPU a
        loop of matrix-vector products, which streams each seed's z once (measured 2x faster
        than bmm at 30 seeds: the step is memory-bound there)."""
        if not self.use_bmm:
            return torch.stack([torch.mv(z, vs) for z, vs in zip(self.z, v, strict=True)])
        return torch.bmm(self.z, v[:, :, None])[..., 0]

    def _zTg(self, g: torch.Tensor) -> torch.Tensor:
        """sum_mu g^mu z^mu per seed: (S, P) -> (S, N)."""
        if not self.use_bmm:
            return torch.stack([torch.mv(z.T, gs) for z, gs in zip(self.z, g, strict=True)])
        return torch.bmm(g[:, None, :], self.z)[:, 0, :]

    def smoothness(self, iters: int = 30) -> torch.Tensor:
        """L = max V'' ||Z||_2^2 / (P N) per seed, by power iteration on Z^T Z.

        The Rayleigh quotient approaches ||Z||^2 from below (within ~5% after 30 iterations at
        alpha = 1-10, N = 500: the top of the Marchenko-Pastur spectrum has no gap); 1/L_est
        is then a little above 1/L but far below the stability limit 2/L, and the descent is
        still monotone (tested)."""
        v = torch.ones(len(self.seeds), self.cfg.N, dtype=self.z.dtype, device=self.device)
        for _ in range(iters):
            v = self._zTg(self._zw(v))
            v = v / v.norm(dim=1, keepdim=True)
        sq = self._zw(v).double().pow(2).sum(1)  # ||Z v||^2 with |v| = 1
        return _LOSS_CURVATURE[self.cfg.loss] * sq / (self.cfg.P * self.cfg.N)

    def _margins(self, w: torch.Tensor | None = None) -> torch.Tensor:
        """Delta^mu = z^mu . w / sqrt(N), shape (S, P), float32."""
        return self._zw((self.w if w is None else w).float()) / math.sqrt(self.cfg.N)

    def grad_and_scale(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad L(w) = (1/(P sqrt N)) sum_mu V'(Delta^mu) z^mu, (S, N) float64;
        max_mu |V'(Delta^mu)|, (S,): below FLOAT_TINY the gradient has no precision left)."""
        dv = dV(self._margins(w), self.cfg.loss)
        g = self._zTg(dv).double() / (self.cfg.P * math.sqrt(self.cfg.N))
        return g, dv.abs().amax(1)

    def grad(self, w: torch.Tensor) -> torch.Tensor:
        """grad L(w), (S, N) float64 (grad_and_scale without the scale)."""
        return self.grad_and_scale(w)[0]

    def step(self) -> torch.Tensor:
        """One step of the configured rule for the active seeds; returns which moved (S,).

        Both rules keep grad L(w) and self.dv_max = max_mu |V'| (S,) at the current w: the
        next step's gradient, and the test of its precision (FLOAT_TINY) and finiteness."""
        act = self.active
        if self._g is None:
            self._g, self.dv_max = self.grad_and_scale(self.w)
        if self.cfg.step_rule == "constant":
            w1 = self.w - self.lr[:, None] * self._g
            g1, dv1 = self.grad_and_scale(w1)
            self.w = torch.where(act[:, None], w1, self.w)
            self._g = torch.where(act[:, None], g1, self._g)
            self.dv_max = torch.where(act, dv1, self.dv_max)
            self.epoch += 1
            return act
        if self.epoch >= self._next_rho and self.epoch + RHO_ITERS + 1 < self.cfg.epochs:
            # refresh the curvature estimate (each product costs what a gradient costs)
            self._power_step(RHO_ITERS)
            self._next_rho = self.epoch + RHO_EVERY
        h, tol = self.lr, self.cfg.step_tol
        # h * rho is finite (H_MAX) but rho may be 0 or NaN where V'' underflowed: one stage
        need = (h * self.rho / (RKC_MARGIN * RKC_BETA)).nan_to_num(0.0, RKC_MAX_STAGES**2, 0.0)
        stages = int(torch.ceil(torch.sqrt(need.clamp(0.0, RKC_MAX_STAGES**2))).max())
        stages = max(min(stages, RKC_MAX_STAGES, self.cfg.epochs - self.epoch), 1)
        w1 = rkc_step(self.w, self._g, h, stages, self.grad)
        g1, dv1 = self.grad_and_scale(w1)
        err = 0.5 * h * (g1 - self._g).norm(dim=1)  # |Euler - Heun| ~ (h^2/2)|H g|: on the path
        scale = tol * w1.norm(dim=1)
        ok = (err <= scale) & act & torch.isfinite(err) & torch.isfinite(scale)
        self.rejected += int((act & ~ok).sum())
        factor = (SAFETY * torch.sqrt(scale / err)).nan_to_num(SHRINK_MAX, GROW_MAX, SHRINK_MAX)
        factor = torch.where(ok, factor.clamp(SHRINK_MAX, GROW_MAX), factor.clamp(max=SAFETY))
        self.lr = torch.where(act, (h * factor.clamp(min=SHRINK_MAX)).clamp(max=H_MAX), h)
        self.w = torch.where(ok[:, None], w1, self.w)
        self._g = torch.where(ok[:, None], g1, self._g)
        self.dv_max = torch.where(ok, dv1, self.dv_max)
        self.epoch += stages
        self.stages = stages
        return ok

    def hvp(self, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Hessian-vector product H(w) v = (1/(P N)) Z^T diag(V''(Delta)) Z v, (S, N) float64."""
        delta = self._margins(w)
        if self.cfg.loss == "logistic":
            curv = 4 * torch.sigmoid(2 * delta) * torch.sigmoid(-2 * delta)
        else:
            curv = torch.full_like(delta, 2.0)
        return self._zTg(curv * self._zw(v.float())).double() / (self.cfg.P * self.cfg.N)

    def _power_step(self, iters: int) -> None:
        """Warm-started power iteration on H(w): rho <- |H v| (a lower bound on the top
        eigenvalue, hence the margin RKC_MARGIN; a too-long step is caught by the controller)."""
        v = self._eigvec
        for _ in range(iters):
            hv = self.hvp(self.w, v)
            self.rho = hv.norm(dim=1)
            # where V'' underflowed (hv = 0) keep the old vector: a zero one would stay zero
            v = torch.where((self.rho > 0)[:, None], hv / self.rho.clamp(min=1e-300)[:, None], v)
        self._eigvec = v
        self.epoch += iters  # each product costs what a gradient costs

    def records(self) -> list[dict[str, float]]:
        """One record per seed for the current weights (exact eps = arccos(R)/pi, Section 2)."""
        N = self.cfg.N
        delta = self._margins()
        wnorm = self.w.norm(dim=1)
        lam = wnorm / math.sqrt(N)
        R = ((self.w * self.teacher).sum(1) / (wnorm * math.sqrt(N))).clamp(-1.0, 1.0)
        logistic = self.cfg.loss == "logistic"
        cols = {
            EPOCH: torch.full_like(lam, self.epoch),
            NORM_PERCEPTRON: lam,
            OVERLAP: R,
            TEST_ERROR: torch.arccos(R) / math.pi,
            TEST_LOSS: expected_test_loss(lam, R) if logistic else expected_mse(lam, R),
            TRAIN_LOSS: train_loss(delta, self.cfg.loss),
            TRAIN_ERROR: (delta <= 0).double().mean(1),
        }
        table = torch.stack([v.double() for v in cols.values()], 1).cpu().tolist()
        return [dict(zip(cols, row, strict=True)) for row in table]

    # --- the loop -----------------------------------------------------------------
    def _lambda_due(self, moved: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(crossed a lambda-grid point, passed lambda_stop) per seed, for seeds that moved."""
        lam = self.w.norm(dim=1) / math.sqrt(self.cfg.N)
        crossed = moved & (lam >= self.next_lam)
        k = torch.floor(torch.log10(lam) * LAMBDA_POINTS_PER_DECADE) + 1
        self.next_lam = torch.where(crossed, 10 ** (k / LAMBDA_POINTS_PER_DECADE), self.next_lam)
        stop = self.cfg.lambda_stop
        passed = moved & (lam >= stop) if stop is not None else torch.zeros_like(moved)
        return crossed, passed

    def _report(
        self,
        due: torch.Tensor,
        report: Callable[[int, dict[str, float]], None],
        ending: dict[int, str] | None = None,
    ) -> None:
        """Report the due seeds' records; a seed in `ending` gets its stop reason on it."""
        ending = ending or {}
        if bool(due.any()):
            recs = self.records()
            for i in torch.nonzero(due).flatten().tolist():
                if i in ending:
                    self.reasons[i] = ending[i]
                    recs[i][STOP_REASON] = ending[i]
                report(self.seeds[i], recs[i])
            self.last_logged[due] = self.epoch

    def _endings(
        self, bad: torch.Tensor, passed: torch.Tensor, floor: torch.Tensor
    ) -> dict[int, str]:
        """Stop reasons of the seeds that end at this step, by seed index (module docstring)."""
        lam = (self.w.norm(dim=1) / math.sqrt(self.cfg.N)).tolist()
        ending = {}
        for i in range(len(self.seeds)):
            if bool(bad[i]):
                ending[i] = stop_reason(
                    STOP_DIVERGED,
                    f"weights not finite at epoch {self.epoch}; last finite state kept "
                    f"(lambda {lam[i]:.4g})",
                )
            elif bool(passed[i]):
                ending[i] = stop_reason(
                    STOP_LAMBDA, f"lambda {lam[i]:.4g} passed lambda_stop {self.cfg.lambda_stop:g}"
                )
            elif bool(floor[i]):
                ending[i] = stop_reason(
                    STOP_RESOLUTION, f"gradient below float resolution at lambda {lam[i]:.4g}"
                )
            elif bool(self.active[i]) and self.epoch >= self.cfg.epochs:
                ending[i] = stop_reason(
                    STOP_BUDGET,
                    f"{self.cfg.epochs} gradient evaluations used, at lambda {lam[i]:.4g}",
                )
        return ending

    def run_batch(self, report: Callable[[int, dict[str, float]], None]) -> str:
        """Train to cfg.epochs, lambda_stop or float resolution; report(seed, record) at each
        seed's logged steps, its last record carrying STOP_REASON.

        A seed is reported at the log-spaced epochs while it is active, whenever its lambda
        crosses a point of the lambda grid, and when it ends (module docstring, "Stopping").
        Returns "diverged" if any seed diverged, else "completed"."""
        while self.epoch < self.cfg.epochs and bool(self.active.any()):
            prev, w_prev = self.epoch, self.w
            moved = self.step()
            # diverged: non-finite weights or margins (a float32 overflow of z . w)
            bad = self.active & ~(torch.isfinite(self.w).all(1) & torch.isfinite(self.dv_max))
            if bool(bad.any()):  # keep the last finite state of a diverged seed
                self.w = torch.where(bad[:, None], w_prev, self.w)
                self._g = None  # recomputed at the kept state by the next step
                moved = moved & ~bad
            crossed, passed = self._lambda_due(moved)
            floor = self.active & ~bad & ~passed & (self.dv_max < FLOAT_TINY)
            ending = self._endings(bad, passed, floor)
            due = crossed | bad | passed | floor
            before = bisect.bisect_right(self._logged, prev)
            if bisect.bisect_right(self._logged, self.epoch) > before:
                due = due | self.active
            if ending:
                due[list(ending)] = True
            self._report(due, report, ending)
            done = [i for i, r in ending.items() if not r.startswith(STOP_BUDGET)]
            if done:  # a seed at its budget stays active: a larger budget continues it
                self.active[done] = False
        # every curve ends at its final state (e.g. a run restored at its budget)
        rest = self.active & (self.last_logged < self.epoch)
        if bool(rest.any()):
            self._report(rest, report, self._endings(*(torch.zeros_like(rest),) * 3))
        diverged = any(r is not None and r.startswith(STOP_DIVERGED) for r in self.reasons)
        self.status = STATUS_DIVERGED if diverged else STATUS_COMPLETED
        return self.status

    def run(self, report: Callable[[dict[str, float]], None]) -> str:
        """Single-seed interface of every trainer: report(record) once per logged epoch."""
        if len(self.seeds) != 1:
            raise ValueError("seeds: run() is for one seed; use run_batch() for several")
        return self.run_batch(lambda _seed, rec: report(rec))

    # --- checkpointing --------------------------------------------------------------
    def state_dict(self) -> dict:
        """Weights, epoch, step sizes and logging state (data and teacher come from the seeds;
        the adaptive rule's cached gradient is recomputed from w)."""
        return {
            "kind": "perceptron",
            "seeds": list(self.seeds),
            "epoch": self.epoch,
            "w": self.w.cpu().clone(),
            "lr": self.lr.cpu().clone(),
            "active": self.active.cpu().clone(),
            "next_lam": self.next_lam.cpu().clone(),
            "last_logged": self.last_logged.cpu().clone(),
            "eigvec": self._eigvec.cpu().clone(),
            "rho": self.rho.cpu().clone(),
            "next_rho": self._next_rho,
            "reasons": list(self.reasons),
        }

    def load_state_dict(self, d: dict) -> None:
        if d.get("kind") != "perceptron" or list(d["seeds"]) != self.seeds:
            raise ValueError("checkpoint: not a perceptron checkpoint of these seeds")
        self.epoch = int(d["epoch"])
        self.w = d["w"].to(self.device, torch.float64).clone()
        self.lr = d["lr"].to(self.device, torch.float64).clone()
        if "active" in d:  # checkpoints from before the adaptive rule lack these
            self.active = d["active"].to(self.device).clone()
            self.next_lam = d["next_lam"].to(self.device, torch.float64).clone()
            self.last_logged = d["last_logged"].to(self.device).clone()
            self._eigvec = d["eigvec"].to(self.device, torch.float64).clone()
            self.rho = d["rho"].to(self.device, torch.float64).clone()
            self._next_rho = int(d["next_rho"])
        self.reasons = list(d.get("reasons", [None] * len(self.seeds)))
        self._g = None


def train_perceptron_batch(
    cfg: TrialConfig,
    seeds: Sequence[int],
    report: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[int, list[dict[str, float]]]:
    """Train several seeds of the same config as one batched tensor; returns curves by seed."""
    curves: dict[int, list[dict[str, float]]] = {int(s): [] for s in seeds}

    def _collect(seed: int, rec: dict[str, float]) -> None:
        curves[seed].append(rec)
        if report is not None:
            report(seed, rec)

    PerceptronTrainer(cfg, seeds).run_batch(_collect)
    return curves
