"""The sweep's parent MLflow run: what was run, from which code, with which packages.

One run per sweep (tags sweep=<name>, kind=sweep, trial_id=sweep), opened before any trial
starts; the trial runs and the theory run name it as their parent (mlflow.parentRunId), so
MLflow's UI nests them under it. It holds the resolved config as `sweep.yaml`, the git commit
of the code (when it runs from a git checkout), the versions of the packages that decide the
numbers, and the command line. A resumed or re-run sweep reopens its parent run.
"""

from __future__ import annotations

import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import yaml
from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient

from common import names as N
from orchestrator.config import SweepConfig
from orchestrator.mlflow_logger import find_runs

CONFIG_ARTIFACT = "sweep.yaml"
PACKAGES = ("torch", "ray", "mlflow", "numpy", "scipy", "pandas", "pydantic")
REPO = Path(__file__).resolve().parent.parent


def git_commit(where: Path = REPO) -> str | None:
    """HEAD of the checkout the code runs from (suffixed '-dirty' with local changes), or
    None outside git (a wheel install) or without git."""
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", "-C", str(where), *a], capture_output=True, text=True, timeout=10
        )
        head = run("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def open_parent_run(
    client: MlflowClient, experiment_id: str, cfg: SweepConfig, command: str
) -> str:
    """Create the sweep's parent run, or reopen the one an earlier launch made; its id."""
    old = find_runs(client, experiment_id, **{N.TAG_SWEEP: cfg.name}).get(N.SWEEP_RUN_ID)
    tags = {N.TAG_SOURCE_NAME: command, "command": command}
    commit = git_commit()
    if commit is not None:
        tags[N.TAG_GIT_COMMIT] = commit
    if old is not None:
        run_id = old.info.run_id
        client.update_run(run_id, status="RUNNING")
        for k, v in tags.items():  # the latest launch's command and code
            client.set_tag(run_id, k, v)
        return run_id
    tags |= {N.TAG_SWEEP: cfg.name, N.TAG_KIND: N.KIND_SWEEP, N.TAG_TRIAL_ID: N.SWEEP_RUN_ID}
    run_id = client.create_run(experiment_id, tags=tags, run_name=cfg.name).info.run_id
    params = [Param(f"version.{k}", v) for k, v in package_versions().items()]
    client.log_batch(run_id, params=params + [Param("fingerprint", cfg.fingerprint())])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CONFIG_ARTIFACT
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        client.log_artifact(run_id, str(path))
    return run_id


def close_parent_run(client: MlflowClient, run_id: str, finished: bool) -> None:
    """FINISHED once every trial is; KILLED for an interrupted or failed sweep (resumable)."""
    status = RunStatus.FINISHED if finished else RunStatus.KILLED
    client.set_terminated(run_id, RunStatus.to_string(status))
