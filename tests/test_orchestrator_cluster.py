"""Multi-node behaviour on a simulated cluster (ray.cluster_utils.Cluster with fake GPUs).

Each test runs its cluster in a subprocess (one process holds one Ray connection). The
node-loss and driver-kill tests take ~1.5 min each here, so they are marked slow
(`pytest -m slow tests/test_orchestrator_cluster.py`). Trials
use the sleeping stand-in trainable from test_orchestrator_fakes, which logs start/end
events with node and GPU ids and timestamps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_orchestrator_fakes import curve_epochs, max_overlap, mlflow_state, read_log

TESTS = Path(__file__).resolve().parent
PY = sys.executable

PRELUDE = f"""
import json, sys, threading, time
sys.path.insert(0, {str(TESTS)!r})
import ray
from ray.cluster_utils import Cluster
from test_orchestrator_fakes import make_fake_trial, read_log
from orchestrator.config import parse_config
from orchestrator.sweep import run_sweep
"""


def _run_script(tmp_path: Path, body: str, timeout: float = 240) -> str:
    script = tmp_path / "script.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    r = subprocess.run(
        [PY, str(script)], capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r.stdout


def _sweep_dict(tmp_path: Path, **over) -> dict:
    d = {
        "name": "c",
        "seeds": [0, 1],
        "blocks": [{"models": ["cnn"], "datasets": ["digits"], "P": [100, 200]}],
        "trial": {"epochs": 4},
        "tune": {"storage_path": str(tmp_path / "ray"), "max_failures": 3},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"},
    }
    d.update(over)
    return d


def test_quarter_gpu_trials_pack_four_per_gpu_across_two_nodes_and_oversize_refused(tmp_path):
    cfg = _sweep_dict(
        tmp_path,
        blocks=[{"models": ["cnn"], "datasets": ["digits"], "P": [100 * i for i in range(1, 9)]}],
        trial={"epochs": 5},
        resources={"gpu": 0.25, "cpus_per_trial": 0.5},
    )
    log = tmp_path / "fake.jsonl"
    _run_script(
        tmp_path,
        f"""
        c = Cluster(initialize_head=True,
                    head_node_args=dict(num_cpus=4, num_gpus=1, include_dashboard=False))
        c.add_node(num_cpus=4, num_gpus=1)
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False)
        # 2 GPUs per trial divides 1 but fits no node: refused before any trial starts
        from orchestrator.config import ConfigError
        try:
            run_sweep(parse_config({{**{cfg!r}, "resources": {{"gpu": 2}}}}), verbose=0)
            raise SystemExit("a 2-GPU trial on 1-GPU nodes was not refused")
        except ConfigError as e:
            assert "resources.gpu" in str(e) and "largest node" in str(e), e
        cfg = parse_config({cfg!r})
        out = run_sweep(cfg, trainable=make_fake_trial({str(log)!r}, sleep=1.5), verbose=0)
        assert out == {{"trials": 16, "finished": 16, "errored": 0}}, out
        ray.shutdown(); c.shutdown()
    """,
    )
    events = [e for e in read_log(log) if e["event"] in ("start", "end")]
    assert sum(e["event"] == "end" for e in events) == 16
    starts = [e for e in events if e["event"] == "start"]
    assert all(len(e["gpus"]) == 1 for e in starts)  # a 0.25 share sits on one GPU
    devices = {(e["node"], e["gpus"][0]) for e in starts}
    assert len({n for n, _ in devices}) == 2 and len(devices) == 2
    by_device = {}
    for e in events:
        by_device.setdefault((e["node"], e["gpus"][0]), []).append(e)
    assert [max_overlap(v) for v in by_device.values()] == [4, 4]
    assert max_overlap(events) == 8


@pytest.mark.slow  # ~1.5 min on 2 busy cores: a second cluster node and a failure cycle
def test_node_removed_mid_sweep_every_trial_finishes_each_epoch_once(tmp_path):
    cfg = _sweep_dict(
        tmp_path,
        blocks=[{"models": ["cnn"], "datasets": ["digits"], "P": [100, 200, 300]}],
        trial={"epochs": 8},
        resources={"cpus_per_trial": 1},
    )
    log = tmp_path / "fake.jsonl"
    out = _run_script(
        tmp_path,
        f"""
        health = dict(health_check_initial_delay_ms=0, health_check_period_ms=500,
                      health_check_failure_threshold=3)
        c = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=2, include_dashboard=False, _system_config=health))
        worker = c.add_node(num_cpus=2)
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False)

        def kill_worker_when_busy():
            while not any(e["node"] == worker.node_id and e["event"] == "start"
                          for e in read_log({str(log)!r})):
                time.sleep(0.2)
            time.sleep(2.0)  # a few epochs in, so trials resume from a checkpoint
            c.remove_node(worker, allow_graceful=False)
            print("REMOVED", worker.node_id, flush=True)

        threading.Thread(target=kill_worker_when_busy, daemon=True).start()
        cfg = parse_config({cfg!r})
        out = run_sweep(cfg, trainable=make_fake_trial({str(log)!r}, sleep=0.6), verbose=0)
        print("RESULT", json.dumps(out), flush=True)
        ray.shutdown(); c.shutdown()
    """,
    )
    assert "REMOVED" in out
    result = json.loads(out.split("RESULT", 1)[1].strip().splitlines()[0])
    assert result == {"trials": 6, "finished": 6, "errored": 0}
    removed = out.split("REMOVED", 1)[1].split()[0]
    events = read_log(log)
    resumed = [e for e in events if e["event"] == "start" and e["from_epoch"] > 0]
    assert resumed and all(e["node"] != removed for e in resumed)  # continued elsewhere
    uri = cfg["mlflow"]["tracking_uri"]
    state = mlflow_state(uri, "c")
    assert len(state) == 6
    for s in state.values():
        assert s["runs"] == 1 and s["status"] == "FINISHED"
        assert s["steps"] == list(range(1, 9))  # each logged epoch exactly once
        assert curve_epochs(uri, s["run_id"], tmp_path) == list(range(1, 9))


CLUSTER = """
import signal, sys, time
from ray.cluster_utils import Cluster
c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=4, include_dashboard=False))
signal.signal(signal.SIGTERM, lambda *a: (c.shutdown(), sys.exit(0)))
open(sys.argv[1], "w").write(c.address)
while True:
    time.sleep(1)
"""

DRIVER = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from test_orchestrator_fakes import make_fake_trial
from orchestrator.sweep import main
log, argv = sys.argv[1], sys.argv[2:]
sys.exit(main(argv, trainable=make_fake_trial(log, sleep=0.5)))
"""


@pytest.mark.slow  # ~1.5 min on 2 busy cores: a cluster process and two drivers
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_driver_killed_then_same_command_completes_without_retraining(tmp_path, sig):
    (tmp_path / "cluster.py").write_text(CLUSTER)
    (tmp_path / "driver.py").write_text(DRIVER)
    sweep = _sweep_dict(
        tmp_path,
        blocks=[{"models": ["cnn"], "datasets": ["digits"], "P": [100, 200, 300, 400]}],
        trial={"epochs": 6},
    )
    (tmp_path / "sweep.yaml").write_text(json.dumps(sweep))  # JSON is YAML
    addr_file, log = tmp_path / "addr", tmp_path / "fake.jsonl"
    cluster = subprocess.Popen([PY, str(tmp_path / "cluster.py"), str(addr_file)], cwd=tmp_path)
    try:
        deadline = time.time() + 120
        while not addr_file.exists() or not addr_file.read_text():
            assert time.time() < deadline and cluster.poll() is None, "cluster did not start"
            time.sleep(0.5)
        cmd = [
            PY,
            str(tmp_path / "driver.py"),
            str(log),
            "--config",
            str(tmp_path / "sweep.yaml"),
            "--address",
            addr_file.read_text(),
            "-v",
            "0",
        ]
        driver_log = open(tmp_path / "driver1.log", "w")  # noqa: SIM115 (closed by the OS)
        driver = subprocess.Popen(cmd, cwd=tmp_path, stdout=driver_log, stderr=driver_log)
        uri = sweep["mlflow"]["tracking_uri"]

        def finished_runs() -> set[str]:
            # Read MLflow only once trials run: by then the driver has created the SQLite
            # schema (two processes initialising one SQLite store at once can fail).
            if not read_log(log):
                return set()
            try:
                state = mlflow_state(uri, "c")
            except Exception:  # experiment not created yet
                return set()
            return {k for k, s in state.items() if s["status"] == "FINISHED"}

        # "Finished" is what the driver recorded (its MLflow run is FINISHED): a trial whose
        # worker is done but whose last results died with the driver is not finished.
        while len(finished_runs()) < 2:
            assert time.time() < deadline and driver.poll() is None, (
                "driver ended early: " + (tmp_path / "driver1.log").read_text()[-3000:]
            )
            time.sleep(0.3)
        driver.send_signal(sig)  # SIGINT: Tune stops gracefully and saves its state
        driver.wait(timeout=120)
        killed_at = time.time()
        done_before = finished_runs()
        assert len(done_before) < 8  # truly mid-sweep

        again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "8/8 trials finished" in again.stdout
    finally:
        cluster.terminate()
        cluster.wait(timeout=60)
    later = [e for e in read_log(log) if e["event"] == "start" and e["t"] > killed_at]
    assert not [e for e in later if e["key"] in done_before]  # not even restarted
    assert {e["key"] for e in later} | done_before == set(mlflow_state(uri, "c"))
    state = mlflow_state(uri, "c")
    assert len(state) == 8
    for s in state.values():
        assert s["runs"] == 1 and s["status"] == "FINISHED"
        assert s["steps"] == list(range(1, 7))
        assert curve_epochs(uri, s["run_id"], tmp_path) == list(range(1, 7))  # whole curve
