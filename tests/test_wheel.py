"""A non-editable install works: the wheel carries the presets and the console scripts.

The wheel is built from a copy of the sources (nothing is written into the checkout) with this
environment's own setuptools where it can build wheels (`--no-build-isolation`: no network;
else pip fetches the build backend as for any install), unpacked, and run from a
directory outside the checkout with only the unpacked wheel on PYTHONPATH, so a file that is
in the repository but not in the wheel (the presets once were) makes these tests fail.
`.ci/run` does the same through a real `pip install` of the wheel into a fresh venv and the
console scripts themselves.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from common.cli import COMMANDS
from orchestrator.config import preset_names

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text()
VERSION = re.search(r'^version = "([^"]+)"', PYPROJECT, re.M).group(1)
PACKAGES = ("theory", "trainers", "orchestrator", "analysis", "common")


def _builds_wheels_here() -> bool:
    """Whether this environment's setuptools builds wheels: from 70.1 bdist_wheel is built in,
    before it needs the `wheel` package (a Python 3.11 venv starts with setuptools 65)."""
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources and unpacked: a site-packages of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
    cmd += ["--no-build-isolation"] if _builds_wheels_here() else []
    r = subprocess.run(
        [*cmd, "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp / "dist").glob("*.whl")
    out = tmp / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(out)
    return out


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """python ARGS in cwd with only the unpacked wheel (and the venv's libraries) importable."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_wheel_holds_every_preset_and_the_four_console_scripts(site):
    shipped = sorted(p.stem for p in (site / "orchestrator" / "presets").glob("*.yaml"))
    in_tree = sorted(p.stem for p in (ROOT / "orchestrator" / "presets").glob("*.yaml"))
    assert shipped == in_tree == preset_names() and "perceptron" in shipped
    (info,) = site.glob("scaling_sweeps-*.dist-info")
    scripts = (info / "entry_points.txt").read_text()
    for module, script in COMMANDS.items():
        assert f"{script} = {module}:main" in scripts
    assert f"Version: {VERSION}\n" in (info / "METADATA").read_text()


def test_every_preset_dry_runs_from_the_unpacked_wheel_outside_the_checkout(site, tmp_path):
    # the packages are the wheel's, not the checkout's (the editable install) or the cwd's
    probe = "import importlib; print('\\n'.join(importlib.import_module(m).__file__ for m in %r))"
    r = _run(site, tmp_path, "-c", probe % (PACKAGES,))
    assert r.returncode == 0, r.stderr
    for f in r.stdout.split():
        assert Path(f).is_relative_to(site), f
    for name in preset_names():
        r = _run(site, tmp_path, "-m", "orchestrator.sweep", "--config", name, "--dry-run")
        assert r.returncode == 0, f"{name}: {r.stderr}"
        assert f"sweep {name}: " in r.stdout and "estimated wall clock" in r.stdout, r.stdout
    # an unknown name: one line that lists the presets, exit 2
    r = _run(site, tmp_path, "-m", "orchestrator.sweep", "--config", "no-such-preset")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert all(name in r.stderr for name in preset_names())
    # every command answers --version with the package's version
    for module in COMMANDS:
        r = _run(site, tmp_path, "-m", module, "--version")
        assert r.returncode == 0 and r.stdout.split()[-1] == VERSION, (module, r.stdout)
