"""Free-norm perceptron in the teacher-student setting (Section 2, Eq. 1 at lambda = 1).

Data. Each seed draws a teacher w* (Gaussian, rescaled to |w*|^2 = N), P = alpha N Rademacher
inputs x^mu and labels y^mu = sign(w* . x^mu). Only z^mu = y^mu x^mu enters the loss, so that
is what we store: the margin is Delta^mu = z^mu . w / sqrt(N).

Loss. Eq. (1) with lambda = 1, per example: V_1(Delta) = -(Delta - log 2cosh Delta)
= log(1 + exp(-2 Delta)) = softplus(-2 Delta); we minimise its mean over the P examples.

The exact map to the fixed-norm theory. Write w = lam * w_hat with |w_hat|^2 = N, i.e.
lam = |w| / sqrt(N) (recorded as `norm`). Then Delta(w) = lam * Delta(w_hat), and
    V_1(lam * Delta_hat) = log(1 + exp(-2 lam Delta_hat)) = lam * V_lam(Delta_hat),
so L_free(w) = lam * L_lam(w_hat): along any direction, the free-norm student at norm lam sees
exactly the landscape (up to the factor lam) of the fixed-norm problem |w|^2 = N with sharpness
lambda = lam. This is why lambda(t) = |w(t)|/sqrt(N) is the theory's lambda (tested).

Dynamics. Full-batch gradient descent, one step = one epoch, from w(0) with |w(0)|/sqrt(N) =
init_scale (tiny). The first step from w ~ 0 is the Hebb rule: grad L(0) = -(1/P) sum z^mu /
sqrt(N), so w(1) is parallel to sum_mu y^mu x^mu.

Step size. The Hessian of the mean loss is (1/(P N)) sum_mu 4 s(2D)s(-2D) z z^T <= Z^T Z/(P N)
(s the sigmoid, 4 s s' <= 1), so the loss is L-smooth with L = ||Z||_2^2 / (P N) ~
(1 + 1/sqrt(alpha))^2 / N. lr = 0 in the config means the classical safe step lr = 1/L
(descent lemma: the loss decreases at every step), computed per data set by power iteration
(lr ~ N/2 at alpha = 5). After separation the norm grows like log(t), so a larger constant
step would only shift log t. Measured (CPU, alpha = 5, N = 1000, seed 0): eps reaches its
minimum 0.0826 at lambda ~ 4.6 after ~250 steps (theory: lambda_opt = 4.54, eps_opt =
0.0840); lambda = 18 after 10^5 steps. The price of the large step is resolution at small
lambda: the first step lands at lambda ~ 0.45, and below lambda ~ 1 the curve lies above
the small-step (gradient-flow) one (alpha = 5, lambda = 0.5: eps 0.158 at lr = 1/L, 0.139 at
lr = 0.1/L; the fixed-norm theory gives 0.124). From lambda ~ 2 on the two coincide (within
0.001). Set lr explicitly (in these units, ~N/2 is 1/L) to resolve lambda < 1.

Batching. Several seeds run as one (S, P, N) tensor with batched matmuls; each seed's data,
teacher and init come from its own generator, so seed s gives the same trajectory alone or in
a batch. Weights are kept in float64 (late-time updates are ~1e-8 relative to |w|, below
float32 resolution) while the +-1 data and the matmuls stay float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from common.names import (
    EPOCH,
    NORM_PERCEPTRON,
    OVERLAP,
    TEST_ERROR,
    TEST_LOSS,
    TRAIN_ERROR,
    TRAIN_LOSS,
)
from trainers.config import TrialConfig, logged_epochs
from trainers.device import resolve_device
from trainers.status import STATUS_COMPLETED, STATUS_DIVERGED, STATUS_RUNNING

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


class PerceptronTrainer:
    """Full-batch GD on Eq. (1), lambda = 1, for one seed (cfg.seed) or several at once."""

    def __init__(self, cfg: TrialConfig, seeds: Sequence[int] | None = None):
        if cfg.kind != "perceptron":
            raise ValueError(f"kind: PerceptronTrainer needs kind=perceptron, got {cfg.kind!r}")
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
        # Step size per seed: the config's, or 1/L (see module docstring).
        self.lr = (
            torch.full((len(self.seeds),), cfg.lr, dtype=torch.float64, device=self.device)
            if cfg.lr > 0
            else 1.0 / self.smoothness()
        )
        self.epoch = 0
        self.status = STATUS_RUNNING
        self._logged = set(logged_epochs(cfg))

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
        """L = ||Z||_2^2 / (P N) per seed, by power iteration on Z^T Z.

        The Rayleigh quotient approaches ||Z||^2 from below (within ~5% after 30 iterations at
        alpha = 1-10, N = 500: the top of the Marchenko-Pastur spectrum has no gap); 1/L_est
        is then a little above 1/L but far below the stability limit 2/L, and the descent is
        still monotone (tested)."""
        v = torch.ones(len(self.seeds), self.cfg.N, dtype=self.z.dtype, device=self.device)
        for _ in range(iters):
            v = self._zTg(self._zw(v))
            v = v / v.norm(dim=1, keepdim=True)
        sq = self._zw(v).double().pow(2).sum(1)  # ||Z v||^2 with |v| = 1
        return sq / (self.cfg.P * self.cfg.N)

    def _margins(self) -> torch.Tensor:
        """Delta^mu = z^mu . w / sqrt(N), shape (S, P), float32."""
        return self._zw(self.w.float()) / math.sqrt(self.cfg.N)

    def step(self) -> None:
        """w <- w - lr * grad, grad = -(2/(P sqrt N)) sum_mu sigmoid(-2 Delta^mu) z^mu."""
        grad = self._zTg(torch.sigmoid(-2 * self._margins()))  # (S, N), float32
        scale = -2.0 / (self.cfg.P * math.sqrt(self.cfg.N))
        self.w.sub_(self.lr[:, None] * scale * grad.double())
        self.epoch += 1

    def records(self) -> list[dict[str, float]]:
        """One record per seed for the current weights (exact eps = arccos(R)/pi, Section 2)."""
        N = self.cfg.N
        delta = self._margins()
        wnorm = self.w.norm(dim=1)
        lam = wnorm / math.sqrt(N)
        R = ((self.w * self.teacher).sum(1) / (wnorm * math.sqrt(N))).clamp(-1.0, 1.0)
        cols = {
            EPOCH: torch.full_like(lam, self.epoch),
            NORM_PERCEPTRON: lam,
            OVERLAP: R,
            TEST_ERROR: torch.arccos(R) / math.pi,
            TEST_LOSS: expected_test_loss(lam, R),
            TRAIN_LOSS: F.softplus(-2 * delta).double().mean(1),
            TRAIN_ERROR: (delta <= 0).double().mean(1),
        }
        table = torch.stack([v.double() for v in cols.values()], 1).cpu().tolist()
        return [dict(zip(cols, row, strict=True)) for row in table]

    # --- the loop -----------------------------------------------------------------
    def run_batch(self, report: Callable[[int, dict[str, float]], None]) -> str:
        """Train to cfg.epochs; report(seed, record) for every seed at each logged epoch."""
        while self.epoch < self.cfg.epochs:
            self.step()
            if self.epoch in self._logged:
                if not bool(torch.isfinite(self.w).all()):
                    self.status = STATUS_DIVERGED
                    return self.status
                for seed, rec in zip(self.seeds, self.records(), strict=True):
                    report(seed, rec)
        self.status = STATUS_COMPLETED
        return self.status

    def run(self, report: Callable[[dict[str, float]], None]) -> str:
        """Single-seed interface of every trainer: report(record) once per logged epoch."""
        if len(self.seeds) != 1:
            raise ValueError("seeds: run() is for one seed; use run_batch() for several")
        return self.run_batch(lambda _seed, rec: report(rec))

    # --- checkpointing --------------------------------------------------------------
    def state_dict(self) -> dict:
        """Weights, epoch and the seeds (data, teacher and lr are rebuilt from the seeds)."""
        return {
            "kind": "perceptron",
            "seeds": list(self.seeds),
            "epoch": self.epoch,
            "w": self.w.cpu().clone(),
            "lr": self.lr.cpu().clone(),
        }

    def load_state_dict(self, d: dict) -> None:
        if d.get("kind") != "perceptron" or list(d["seeds"]) != self.seeds:
            raise ValueError("checkpoint: not a perceptron checkpoint of these seeds")
        self.epoch = int(d["epoch"])
        self.w = d["w"].to(self.device, torch.float64).clone()
        self.lr = d["lr"].to(self.device, torch.float64).clone()


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
