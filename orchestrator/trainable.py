"""The Ray Tune function trainable: one trial = one trainer run, checkpointed as it goes.

Each logged epoch is reported to Tune together with a checkpoint holding the trainer's state
and the curve so far (`curve.json`). Tune keeps the latest checkpoint, so a retried trial
(FailureConfig) or a resumed sweep (Tuner.restore) continues from there, and the MLflow
callback can recover the whole curve from the final checkpoint even if some of its batched
metric writes were lost with a dead driver.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ray import tune

from common.names import STOP_REASON

STATE_FILE = "state.pt"
CURVE_FILE = "curve.json"
FINAL_FILE = "final"  # marks the checkpoint written when the trainer returned


def read_curve(checkpoint_dir: str | Path) -> list[dict[str, float]]:
    """The records a checkpoint holds (every logged epoch up to it, in order)."""
    path = Path(checkpoint_dir) / CURVE_FILE
    return json.loads(path.read_text()) if path.exists() else []


def read_final_curve(checkpoint_dir: str | Path, epochs: int) -> list[dict[str, float]]:
    """The whole curve if this checkpoint is a trial's last one, else [].

    Last means the trainer returned: the curve reaches the trial's final epoch, or the
    trainer stopped early (its last record's stop reason) and marked its tail checkpoint. A
    checkpoint of an interrupted trial is not final, and its run must not be written FINISHED.
    """
    curve = read_curve(checkpoint_dir)
    final = (Path(checkpoint_dir) / FINAL_FILE).exists()
    return curve if curve and (final or curve[-1]["epoch"] >= epochs) else []


def train_trial(config: dict[str, Any], finished: frozenset[str] = frozenset()) -> None:
    """Run the trial described by config['trial'] (orchestrator.sweep.param_space_entries).

    `finished` holds the keys of trials whose MLflow run is already FINISHED: they return at
    once, so a resumed sweep never retrains them (see orchestrator/sweep.py, "Resume").
    """
    spec = config["trial"]
    if spec["key"] in finished:
        return
    # Imported here so that importing this module (e.g. by the driver) stays torch-free.
    from trainers import TrialConfig, load_checkpoint, make_trainer, save_checkpoint

    cfg = TrialConfig(**spec["params"])
    every_s = float(spec.get("checkpoint_seconds", 0.0))
    trainer = make_trainer(cfg)
    curve: list[dict[str, float]] = []

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            load_checkpoint(trainer, Path(d) / STATE_FILE)
            curve = read_curve(d)

    saved = [len(curve), time.monotonic()]  # records in the latest checkpoint, and its time
    final_saved = [False]

    def report_with_checkpoint(record: dict[str, float], final: bool = False) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(trainer, Path(tmp) / STATE_FILE)
            (Path(tmp) / CURVE_FILE).write_text(json.dumps(curve))
            if final:
                (Path(tmp) / FINAL_FILE).touch()
            tune.report(record, checkpoint=tune.Checkpoint.from_directory(tmp))
        saved[:] = [len(curve), time.monotonic()]
        final_saved[0] = final

    def report(record: dict[str, float]) -> None:
        record = {k: v if k == STOP_REASON else float(v) for k, v in record.items()}
        curve.append(record)
        # Checkpoint by wall-clock time, not per logged epoch: the log schedule crowds the
        # early epochs, and each checkpoint costs a state write plus Tune bookkeeping. The
        # last record (it says why the trial ended) always checkpoints, as final, so the
        # final checkpoint holds the whole curve.
        due = time.monotonic() - saved[1] >= every_s
        last = STOP_REASON in record or record["epoch"] >= cfg.epochs
        if due or last:
            report_with_checkpoint(record, final=last)
        else:
            tune.report(record)

    trainer.run(report)
    if curve and not final_saved[0]:
        # A trainer that stopped without a reason: checkpoint the curve's tail as final. The
        # repeated record is an epoch the MLflow callback has already logged, so it skips it.
        report_with_checkpoint(curve[-1], final=True)
