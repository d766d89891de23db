"""One deep-net trial (Section 3, Appendix G): CNN / ResNet / ViT on digits, MNIST, CIFAR.

airbench-style: the data lives on the device as tensors, an epoch is a loop over slices of a
seeded permutation (no DataLoader), evaluation is one pass over the full test set in large
batches under torch.inference_mode. Training batches are augmented only with cfg.augment
(the authors' augmentation, trainers/augment.py); evaluation data never. Cross-entropy loss;
Adam, AdamW or SGD. The paper-* models (trainers/paper.py) see inputs standardised with the
authors' fixed mean/std. At each logged epoch (trainers.config.logged_epochs) the record
holds the train/test loss and error -- measured in eval mode on the P (unaugmented)
training examples and the full test set with the weights right after that epoch -- and
the norms chosen by cfg.norms: Eq. 6's five (trainers/norms.py), the authors' five
(norm/paper/..., trainers/norms_paper.py), or both.
With cfg.label_noise > 0 a fraction of the P training labels is corrupted (trainers.data.
noisy_labels) and the train loss / error are measured against those noisy labels; the test
set is always clean.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from common.names import EPOCH, STOP_REASON, TEST_ERROR, TEST_LOSS, TRAIN_ERROR, TRAIN_LOSS
from trainers.augment import AUGMENTATIONS
from trainers.config import TrialConfig, logged_epochs
from trainers.data import load_dataset, noisy_labels, subset_indices
from trainers.device import resolve_device
from trainers.models import build_model
from trainers.norms_paper import paper_code_norms
from trainers.paper import PAPER_MODELS, augmentation, paper_spec
from trainers.status import (
    STATUS_COMPLETED,
    STATUS_DIVERGED,
    STATUS_RUNNING,
    STOP_BUDGET,
    stop_reason,
)

AUGMENT_SEED_OFFSET = 0x4155  # "AU": the augmentation stream, apart from the epoch permutations
# Examples per forward pass at evaluation (not a knob of SGD), per device type: on a GPU
# large batches fill the device; on the CPU 2048-image activations of the 12.9M-parameter
# paper CNN leave the cache and fault pages (issue 13: 2.7M vs 1.2M minor faults per 10k
# images), and 512 measured fastest (benchmarks/bench_paper_speed.py).
EVAL_BATCH = {"cuda": 2048, "cpu": 512}


def make_optimizer(cfg: TrialConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    raise ValueError(f"optimizer: unknown {cfg.optimizer!r}")


class DeepTrainer:
    """Trains cfg.model on a seeded P-subset of cfg.dataset; see the module docstring.

    norms=False skips the norm computation (benchmarks measure its overhead this way).
    """

    def __init__(self, cfg: TrialConfig, norms: bool = True):
        if cfg.kind != "deep":
            raise ValueError(f"kind: DeepTrainer needs kind=deep, got {cfg.kind!r}")
        self.cfg = cfg
        self.device = resolve_device(cfg.device)

        # --- data: the P-subset and the full test set, on the device
        spec = paper_spec(cfg.model, cfg.dataset) if cfg.model in PAPER_MODELS else None
        data = load_dataset(cfg.dataset, cfg.data_root, spec and (spec.mean, spec.std))
        n_train = data.x_train.shape[0]
        self.indices = subset_indices(n_train, cfg.P, cfg.seed, cfg.nested_subsets)
        idx = torch.as_tensor(self.indices)
        self.x_train = data.x_train[idx].to(self.device)
        y_train = noisy_labels(data.y_train[idx], data.n_classes, cfg.label_noise, cfg.seed)
        self.y_train = y_train.to(self.device)
        self.x_test = data.x_test.to(self.device)
        self.y_test = data.y_test.to(self.device)
        self.in_shape = data.in_shape

        # --- model and optimiser: the init is drawn on the CPU from the seed, so it does
        # not depend on the device
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg, data.in_shape, data.n_classes).to(self.device)
        self.opt = make_optimizer(cfg, self.model.parameters())
        self.shuffle = torch.Generator().manual_seed(cfg.seed)  # epoch permutations
        self.bf16 = cfg.precision == "bf16"
        # training augmentation (cfg.augment): the authors' for this family and data set
        self.augment = AUGMENTATIONS[augmentation(cfg.model, cfg.dataset)] if cfg.augment else None
        self.augment_rng = torch.Generator().manual_seed(cfg.seed + AUGMENT_SEED_OFFSET)
        self.fill = data.fill

        self.norms = None  # Eq. 6 as printed (norm/...)
        self.paper_norms = False  # the authors' code (norm/paper/...)
        if norms and cfg.norms in ("eq6", "both"):
            from trainers.norms import NormTracker

            self.norms = NormTracker(self.model, data.in_shape, conv_mode=cfg.norm_conv)
        if norms and cfg.norms in ("paper", "both"):
            self.paper_norms = True
        self.epoch = 0
        self.status = STATUS_RUNNING
        self._logged = set(logged_epochs(cfg))

    # --- training and evaluation ------------------------------------------------------
    def _autocast(self):
        """bf16 autocast of the forward pass if cfg.precision == "bf16" (weights, optimizer
        state and the loss reduction stay fp32); a no-op context otherwise."""
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16)

    def train_epoch(self) -> bool:
        """One pass over the P examples in shuffled minibatches; False if a loss was not finite."""
        self.model.train()
        P, bs = self.cfg.P, self.cfg.batch_size
        perm = torch.randperm(P, generator=self.shuffle).to(self.device)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        for i in range(0, P, bs):
            j = perm[i : i + bs]
            xb = self.x_train[j]
            if self.augment is not None:
                xb = self.augment(xb, self.fill, self.augment_rng)
            with self._autocast():
                loss = F.cross_entropy(self.model(xb), self.y_train[j])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            finite &= torch.isfinite(loss.detach())  # no host sync inside the loop
        self.epoch += 1
        return bool(finite)

    @torch.inference_mode()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """(mean cross-entropy, error rate) over all of (x, y), eval mode, no augmentation."""
        self.model.eval()
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        wrong = torch.zeros((), dtype=torch.int64, device=self.device)
        bs = EVAL_BATCH.get(self.device.type, 512)
        for i in range(0, x.shape[0], bs):
            with self._autocast():
                out = self.model(x[i : i + bs]).float()
            yb = y[i : i + bs]
            loss += F.cross_entropy(out, yb, reduction="sum").double()
            wrong += (out.argmax(1) != yb).sum()
        n = x.shape[0]
        return loss.item() / n, wrong.item() / n

    def record(self) -> dict[str, float]:
        """The flat record of the current state (common.names keys)."""
        train_loss, train_error = self.evaluate(self.x_train, self.y_train)
        test_loss, test_error = self.evaluate(self.x_test, self.y_test)
        rec = {
            EPOCH: float(self.epoch),
            TRAIN_LOSS: train_loss,
            TRAIN_ERROR: train_error,
            TEST_LOSS: test_loss,
            TEST_ERROR: test_error,
        }
        if self.norms is not None:
            rec.update({k: float(v) for k, v in self.norms(self.model).items()})
        if self.paper_norms:
            rec.update(paper_code_norms(self.model))
        return rec

    def run(self, report: Callable[[dict[str, float]], None]) -> str:
        """Train from the current epoch to cfg.epochs, report(record) at each logged epoch.

        Returns "completed", or "diverged" as soon as a training loss is NaN/inf (the records
        already reported stand; no record is made of the diverged state).
        """
        while self.epoch < self.cfg.epochs:
            if not self.train_epoch():
                self.status = STATUS_DIVERGED
                return self.status
            if self.epoch in self._logged:
                rec = self.record()
                if not (math.isfinite(rec[TRAIN_LOSS]) and math.isfinite(rec[TEST_LOSS])):
                    self.status = STATUS_DIVERGED
                    return self.status
                if self.epoch == self.cfg.epochs:  # the last logged epoch: say how it ended
                    rec[STOP_REASON] = stop_reason(STOP_BUDGET, f"all {self.epoch} epochs")
                report(rec)
        self.status = STATUS_COMPLETED
        return self.status

    # --- checkpointing ----------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything run() needs to continue the same trajectory (torch.save-able)."""
        d = {
            "kind": "deep",
            "config": self.cfg.model_dump(),
            "epoch": self.epoch,
            "indices": self.indices.copy(),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "shuffle_rng": self.shuffle.get_state(),
            "augment_rng": self.augment_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "norms": None if self.norms is None else self.norms.state_dict(),
        }
        if self.device.type == "cuda":
            d["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return d

    def load_state_dict(self, d: dict) -> None:
        if d.get("kind") != "deep":
            raise ValueError("checkpoint: not a deep-net checkpoint")
        mine = self.cfg.model_dump()
        defaults = {"label_noise": 0.0}  # checkpoints written before the field existed
        diff = [
            k
            for k in ("model", "dataset", "P", "seed", "nested_subsets", "label_noise")
            if d["config"].get(k, defaults.get(k)) != mine[k]
        ]
        if diff or (d["indices"] != self.indices).any():
            raise ValueError(
                f"checkpoint: belongs to another trial (differs in {diff or 'subset'})"
            )
        self.epoch = int(d["epoch"])
        self.model.load_state_dict(d["model"])
        self.opt.load_state_dict(d["optimizer"])
        self.shuffle.set_state(d["shuffle_rng"])
        if "augment_rng" in d:  # checkpoints written before augmentation existed lack it
            self.augment_rng.set_state(d["augment_rng"])
        torch.set_rng_state(d["torch_rng"])
        if "cuda_rng" in d and self.device.type == "cuda":
            torch.cuda.set_rng_state(d["cuda_rng"], self.device)
        if self.norms is not None and d.get("norms") is not None:
            self.norms.load_state_dict(d["norms"])
