"""Issue 11: bad input gets one line and exit 2 before any compute; nothing finished is lost.

The bad-input table runs each CLI in a subprocess (as a user would), so the exit code, the
single stderr line and the absence of a traceback are what is checked, and so no Ray session
of this test process can be joined by mistake. Each case also checks that no compute left a
trace (no MLflow store, no Tune state, no output file).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_orchestrator_fakes import mlflow_state

from common import names as N
from orchestrator.config import parse_config
from orchestrator.preflight import sweep_lock

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once the socket is closed


def _deep_sweep(tmp: Path) -> Path:
    d = {
        "name": "deep",
        "blocks": [{"models": ["cnn"], "datasets": ["digits"], "P": [100]}],
        "trial": {"epochs": 2},
    }
    (tmp / "deep.yaml").write_text(yaml.safe_dump(d))
    return tmp / "deep.yaml"


def _cpu_cluster(tmp: Path) -> Path:
    d = {
        "available_node_types": {
            "head": {"resources": {"CPU": 0}, "max_workers": 0},
            "cpu_worker": {"resources": {"CPU": 4}, "max_workers": 3},
        },
        "head_node_type": "head",
    }
    (tmp / "cpu-cluster.yaml").write_text(yaml.safe_dump(d))
    return tmp / "cpu-cluster.yaml"


def _setup(tmp: Path) -> None:
    (tmp / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (tmp / "confdir").mkdir()
    (tmp / "afile").write_text("not a directory\n")
    (tmp / "outdir.csv").mkdir()
    (tmp / "corrupt.db").write_bytes(b"this is not an sqlite file" * 100)
    con = sqlite3.connect(tmp / "other.db")
    con.execute("create table t (x)")
    con.commit()
    con.close()
    _deep_sweep(tmp)
    _cpu_cluster(tmp)


SWEEP = ["-m", "orchestrator.sweep"]
TRIAL = ["-m", "trainers.run", "--set", "kind=deep", "--set", "P=50", "--set", "epochs=1"]
THEORY = ["-m", "theory.solve", "--alphas", "1", "--lambdas", "1", "--actors", "0"]

# (id, argv after python, what the one line must contain, extra environment)
CASES = [
    ("config-not-utf8", SWEEP + ["--config", "latin1.yaml"], "not UTF-8", {}),
    ("config-directory", SWEEP + ["--config", "confdir"], "is a directory", {}),
    ("name-dotdot", SWEEP + ["--set", "name=.."], "name: '..'", {}),
    ("name-hidden", SWEEP + ["--set", "name=.x"], "name: '.x'", {}),
    (
        "storage-under-a-file",
        SWEEP + ["--set", "tune.storage_path=afile/ray"],
        "tune.storage_path",
        {},
    ),
    (
        "mlflow-db-corrupt",
        SWEEP + ["--set", "mlflow.tracking_uri=sqlite:///corrupt.db"],
        "corrupt",
        {},
    ),
    (
        "mlflow-db-foreign",
        SWEEP + ["--set", "mlflow.tracking_uri=sqlite:///other.db"],
        "not an MLflow database",
        {},
    ),
    ("address-refused", SWEEP + ["--address", "127.0.0.1:{port}"], "no Ray cluster", {}),
    (
        "address-auto-none",
        SWEEP + ["--address", "auto"],
        "no Ray cluster",
        {"RAY_ADDRESS": "127.0.0.1:{port}"},
    ),
    ("address-malformed", SWEEP + ["--address", "nohostport"], "HOST:PORT", {}),
    ("cluster-missing", SWEEP + ["--cluster", "nope.yaml", "--dry-run"], "--cluster", {}),
    (
        "gpu-request-no-type-holds",
        SWEEP
        + ["--config", "deep.yaml", "--cluster", "cpu-cluster.yaml", "--set", "resources.gpu=1"]
        + ["--dry-run"],
        "resources.gpu",
        {},
    ),
    ("trial-out-under-a-file", TRIAL + ["--out", "afile/t.csv"], "--out", {}),
    ("trial-out-dotdot", TRIAL + ["--out", ".."], "--out", {}),
    ("trial-out-directory", TRIAL + ["--out", "outdir.csv"], "is a directory", {}),
    ("trial-config-not-utf8", TRIAL + ["--config", "latin1.yaml"], "not UTF-8", {}),
    ("trial-config-directory", TRIAL + ["--config", "confdir"], "--config", {}),
    ("theory-out-under-a-file", THEORY + ["--out", "afile/t.csv"], "--out", {}),
    ("theory-out-directory", THEORY + ["--out", "outdir.csv"], "is a directory", {}),
]
if Path("/proc/self").is_dir():  # the paths the issue reported, where they exist
    CASES += [
        ("storage-proc", SWEEP + ["--set", "tune.storage_path=/proc/nope"], "/proc/nope", {}),
        ("trial-out-proc", TRIAL + ["--out", "/proc/nope/t.csv"], "/proc/nope", {}),
        ("theory-out-proc", THEORY + ["--out", "/proc/nope/t.csv"], "/proc/nope", {}),
    ]


@pytest.mark.parametrize(
    ("argv", "needle", "env"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_one_line_exit_2_before_compute(tmp_path, argv, needle, env):
    _setup(tmp_path)
    port = str(_closed_port())
    argv = [a.replace("{port}", port) for a in argv]
    env = {k: v.replace("{port}", port) for k, v in env.items()}
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    if "RAY_ADDRESS" not in env:
        full_env.pop("RAY_ADDRESS", None)
    before = {p.name for p in tmp_path.iterdir()}
    t0 = time.monotonic()
    r = subprocess.run(
        [PY, *argv], cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=120
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and needle in lines[0], r.stderr[-2000:]
    assert time.monotonic() - t0 < 60  # an unreachable cluster is not retried for minutes
    made = {p.name for p in tmp_path.iterdir()} - before
    assert not made & {"mlflow.db", "ray_results", "t.csv", "curve.csv"}, made


# -----------------------------------------------------------------------------
# Locks


def _cfg(tmp_path: Path, **over):
    d = {
        "name": "s",
        "seeds": [0, 1],
        "blocks": [{"kind": "perceptron", "alpha": [1, 3], "N": [8]}],
        "trial": {"epochs": 5, "device": "cpu"},
        "theory": {"enabled": False},
        "tune": {"storage_path": str(tmp_path / "ray"), "checkpoint_seconds": 0},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"},
    }
    d.update(over)
    return d


def test_second_concurrent_sweep_is_refused_with_one_line(tmp_path):
    raw = _cfg(tmp_path)
    cfg = parse_config(raw)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    other = {**raw, "name": "other"}  # another sweep, same SQLite store: one writer only
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with sweep_lock(cfg, raw["mlflow"]["tracking_uri"]):  # the first sweep, running
        for f, what in (("s.yaml", "sweep 's'"), ("other.yaml", "MLflow store")):
            r = subprocess.run(
                [PY, "-m", "orchestrator.sweep", "--config", f],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
            assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
            assert len(lines) == 1 and "another sweep is running" in lines[0] and what in lines[0]
    assert not (tmp_path / "ray" / "s").exists()  # refused before Tune wrote anything
    with sweep_lock(cfg, raw["mlflow"]["tracking_uri"]):  # released: the next one may run
        pass


# -----------------------------------------------------------------------------
# Lost and corrupt MLflow stores


def _curves(uri: str) -> dict[str, list[float]]:
    from mlflow.tracking import MlflowClient

    c, out = MlflowClient(uri), {}
    for key, s in mlflow_state(uri, "s").items():
        assert s["runs"] == 1 and s["status"] == "FINISHED" and s["steps"] == [1, 2, 3, 4, 5]
        path = c.download_artifacts(s["run_id"], N.CURVES_ARTIFACT, str(Path(uri[10:]).parent))
        out[key] = list(pd.read_parquet(path)[N.TEST_ERROR])
    return out


SWEEP_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import ray
from test_orchestrator_fakes import make_fake_trial
from orchestrator.config import parse_config
from orchestrator.sweep import run_sweep
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
cfg = parse_config(json.loads({cfg!r}))
print("COUNTS", json.dumps(run_sweep(cfg, trainable=make_fake_trial({log!r}, 0.01), verbose=0)))
"""


def _sweep_in_new_process(tmp_path: Path, raw: dict, log: str) -> dict:
    """A fresh driver process, as after `rm mlflow.db`: MLflow caches an open SQLite engine
    per URI inside a process, so an in-process rerun would still see the deleted file."""
    import json

    script = tmp_path / "sweep_once.py"
    tests = str(ROOT / "tests")
    script.write_text(SWEEP_SCRIPT.format(tests=tests, cfg=json.dumps(raw), log=log))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    r = subprocess.run(
        [PY, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("COUNTS"))
    return json.loads(line.split(" ", 1)[1]) | {"stdout": r.stdout}


def test_lost_and_corrupt_mlflow_store_rebuilt_from_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the cwd
    log = str(tmp_path / "fake.jsonl")
    raw = _cfg(tmp_path)
    uri = raw["mlflow"]["tracking_uri"]
    assert _sweep_in_new_process(tmp_path, raw, log)["finished"] == 4
    first = _curves(uri)
    trained = len(Path(log).read_text().splitlines())

    # rm mlflow.db: Tune restores 4 TERMINATED trials; their runs come back from checkpoints
    (tmp_path / "mlflow.db").unlink()
    out = _sweep_in_new_process(tmp_path, raw, log)
    assert (out["finished"], out["errored"]) == (4, 0)
    assert "rebuilt 4 MLflow runs from Tune's checkpoints" in out["stdout"]
    assert _curves(uri) == first
    assert len(Path(log).read_text().splitlines()) == trained  # nothing retrained

    # a corrupt store: one line naming what to move aside, then the same rebuild
    (tmp_path / "mlflow.db").write_bytes(b"\0garbage" * 512)
    cfg_file = tmp_path / "s.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    r = subprocess.run(
        [PY, "-m", "orchestrator.sweep", "--config", str(cfg_file)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"mv {tmp_path / 'mlflow.db'}" in r.stderr
    (tmp_path / "mlflow.db").rename(tmp_path / "mlflow.db.bad")
    out = _sweep_in_new_process(tmp_path, raw, log)
    assert out["finished"] == 4 and "rebuilt 4" in out["stdout"]
    assert _curves(uri) == first
    assert len(Path(log).read_text().splitlines()) == trained


def test_local_ray_has_token_auth_and_trials_see_the_mlflow_store(tmp_path):
    """What connect_ray starts: token authentication on (the Ray >= 2.59 default) and
    MLFLOW_TRACKING_URI in every task's environment."""
    code = f"""
import os, ray
from ray._raylet import AuthenticationMode, get_authentication_mode
from orchestrator.preflight import connect_ray
connect_ray("local", "sqlite:///{tmp_path}/m.db", 0)
env = ray.get(ray.remote(lambda: os.environ.get("MLFLOW_TRACKING_URI")).remote())
print("ENV", env)
print("TOKEN", get_authentication_mode() == AuthenticationMode.TOKEN)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for k in ("RAY_AUTH_MODE", "RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(k, None)
    r = subprocess.run(
        [PY, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"ENV sqlite:///{tmp_path}/m.db" in r.stdout
    assert "TOKEN True" in r.stdout


def test_only_a_final_checkpoint_rebuilds_a_run(tmp_path):
    """An interrupted trial's checkpoint must not be written as a FINISHED run (Ctrl-C)."""
    import json

    from orchestrator.trainable import CURVE_FILE, FINAL_FILE, read_final_curve

    curve = [{"epoch": float(e), "test_error": 1 / e} for e in range(1, 6)]
    (tmp_path / CURVE_FILE).write_text(json.dumps(curve))
    assert read_final_curve(tmp_path, epochs=6) == []  # stopped at 5 of 6: interrupted
    assert read_final_curve(tmp_path, epochs=5) == curve  # reached its last epoch
    (tmp_path / FINAL_FILE).touch()  # the trainer returned early (diverged) and said so
    assert read_final_curve(tmp_path, epochs=6) == curve


PORTS_SCRIPT = """
import json, os, sys
sys.path.insert(0, {tests!r})
from orchestrator.config import parse_config
from orchestrator.sweep import run_sweep

DRIVER, OUT = os.getpid(), {out!r}


def listening_sockets():
    '''(pid, local address hex) of every TCP socket listening in the driver's process tree.'''
    parent = {{}}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{{d}}/stat").read()
                parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    tree, grew = {{DRIVER}}, True
    while grew:
        new = {{p for p, pp in parent.items() if pp in tree}} - tree
        tree |= new
        grew = bool(new)
    inode_pid = {{}}
    for pid in tree:
        try:
            for fd in os.listdir(f"/proc/{{pid}}/fd"):
                link = os.readlink(f"/proc/{{pid}}/fd/{{fd}}")
                if link.startswith("socket:["):
                    inode_pid[link[8:-1]] = pid
        except OSError:
            pass
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inode_pid:  # 0A: LISTEN
                out.append((inode_pid[f[9]], f[1].split(":")[0]))
    return out


def probe_trial(config, finished=frozenset()):
    with open(OUT, "w") as fh:
        json.dump(listening_sockets(), fh)


cfg = parse_config(json.loads({cfg!r}))
print("COUNTS", run_sweep(cfg, trainable=probe_trial, verbose=0))
"""


def _loopback(hex_addr: str) -> bool:
    if len(hex_addr) == 8:  # IPv4, little-endian: 127.x.x.x ends in 7F
        return hex_addr.endswith("7F")
    return hex_addr.endswith("0100007F") or hex_addr == "0" * 24 + "01000000"  # ::1


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc")
def test_local_sweep_listens_on_loopback_only(tmp_path):
    """Every port of the Ray a local sweep starts is on 127.0.0.1 (checked while a trial
    runs, over the driver's whole process tree: GCS, raylet, agents, workers). Setting
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 instead exposes them on all interfaces (tried)."""
    import json

    raw = _cfg(tmp_path, seeds=[0], blocks=[{"kind": "perceptron", "alpha": [1], "N": [8]}])
    out = tmp_path / "sockets.json"
    script = tmp_path / "ports.py"
    script.write_text(
        PORTS_SCRIPT.format(tests=str(ROOT / "tests"), out=str(out), cfg=json.dumps(raw))
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS"):
        env.pop(k, None)
    r = subprocess.run(
        [PY, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sockets = json.loads(out.read_text())
    assert len({pid for pid, _ in sockets}) >= 2  # at least the GCS and the raylet listen
    exposed = [(pid, a) for pid, a in sockets if not _loopback(a)]
    assert not exposed, exposed
