"""The record of the sweep this working directory ran last (issue 12, item 5).

`python -m orchestrator.sweep` writes it when a sweep ends (finished or not); the report
reads it when no `--experiment` is given, so that it reports the sweep this directory ran,
not whatever MLflow holds as its "latest experiment" (which may be a `--set name=tiny` test
sweep run after the real one). One small JSON file in the working directory:

    .scaling-sweeps/last-sweep.json  {"name", "experiment", "tracking_uri", "finished_at"}

Like the rest of `common`, this module imports neither torch, Ray nor MLflow.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from common import names as N
from common.paths import replace_atomically

RECORD_DIR = ".scaling-sweeps"
RECORD_FILE = "last-sweep.json"


class LastSweepError(ValueError):
    """The record exists but cannot be read; the message is one line naming the file."""


@dataclass(frozen=True)
class LastSweep:
    name: str  # the sweep's name (SweepConfig.name)
    experiment: str  # its MLflow experiment
    tracking_uri: str  # the MLflow store it wrote (common.names.resolve_tracking_uri)
    finished_at: str  # ISO 8601, UTC, when the sweep's driver returned


def record_path(cwd: Path | None = None) -> Path:
    return (cwd or Path.cwd()) / RECORD_DIR / RECORD_FILE


def write_last_sweep(name: str, experiment: str, tracking_uri: str) -> Path:
    """Record the sweep that just ran in the working directory (atomically); its path."""
    path = record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    blob = json.dumps(asdict(LastSweep(name, experiment, tracking_uri, now)), indent=2) + "\n"
    replace_atomically(path, lambda tmp: tmp.write_text(blob, encoding="utf-8"))
    return path


def read_last_sweep(cwd: Path | None = None) -> LastSweep | None:
    """The sweep `cwd` (default: the working directory) ran last, or None if it ran none.

    Raises LastSweepError for a record that exists but is not one (hand-edited, truncated):
    guessing another experiment instead would report the wrong sweep without a word.
    """
    path = record_path(cwd)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LastSweepError(f"{path}: not a sweep record ({type(e).__name__})") from None
    keys = [f.name for f in fields(LastSweep)]
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in keys):
        raise LastSweepError(f"{path}: not a sweep record (needs string fields {keys})")
    return LastSweep(**{k: data[k] for k in keys})


def report_command(experiment: str, tracking_uri: str) -> str:
    """The exact command that reports this sweep; the URI only where it is not the default."""
    cmd = f"python -m analysis.report --experiment {shlex.quote(experiment)}"
    if tracking_uri != N.DEFAULT_TRACKING_URI:
        cmd += f" --tracking-uri {shlex.quote(tracking_uri)}"
    return cmd
