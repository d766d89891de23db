"""One trial's work: data, models, training loop, norms (DESIGN.md). No Ray, no MLflow here.

Public interface (what the orchestrator calls):

    cfg = TrialConfig(**params)            # validated, frozen; cfg.model_dump() is JSON-safe
    trainer = make_trainer(cfg)            # PerceptronTrainer or DeepTrainer
    status = trainer.run(report)           # report(record) once per logged epoch
    save_checkpoint(trainer, path); load_checkpoint(trainer, path)

`import trainers` stays light (pydantic only); torch is imported when a trainer is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainers.config import TrialConfig, default_data_root, logged_epochs
from trainers.datasets import dataset_train_size
from trainers.status import STATUS_COMPLETED, STATUS_DIVERGED, STATUS_RUNNING


def make_trainer(cfg: TrialConfig) -> Any:
    """Build data and model for one trial: a PerceptronTrainer or a DeepTrainer."""
    if cfg.kind == "perceptron":
        from trainers.perceptron import PerceptronTrainer

        return PerceptronTrainer(cfg)
    from trainers.deep import DeepTrainer

    return DeepTrainer(cfg)


def save_checkpoint(trainer: Any, path: str | Path) -> None:
    """torch.save the trainer's full state (model, optimizer, RNG, epoch, norm vectors)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(trainer.state_dict(), tmp)
    tmp.replace(path)  # atomic: a crash mid-write never leaves a torn checkpoint


def load_checkpoint(trainer: Any, path: str | Path) -> None:
    """Restore a trainer from save_checkpoint's file; its next run() continues the trajectory."""
    import torch

    # weights_only=False: our own files hold RNG states and python scalars, not only tensors.
    trainer.load_state_dict(torch.load(Path(path), map_location="cpu", weights_only=False))


__all__ = [
    "STATUS_COMPLETED",
    "STATUS_DIVERGED",
    "STATUS_RUNNING",
    "TrialConfig",
    "dataset_train_size",
    "default_data_root",
    "load_checkpoint",
    "logged_epochs",
    "make_trainer",
    "save_checkpoint",
]
