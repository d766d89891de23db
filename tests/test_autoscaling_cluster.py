"""The cluster journey on one machine: Ray's fake_multinode autoscaler, a CPU head, GPU workers.

This is what `ray up cluster.yaml` gives, minus the cloud: a head with 0 CPUs (it runs the
driver, not trials) and a GPU worker type that starts at zero workers. Right after start the
only live node has no CPU and no GPU, so the sweep's pre-launch checks must plan with the node
types the autoscaler can launch (--cluster); the trials' demand must then make the autoscaler
start workers, the trials must land there with the GPU shares the rule gives, and MLflow must
end exactly as after the same sweep on one machine.

Ray's fake_multinode provider (what ray.cluster_utils.AutoscalingCluster drives) starts each
"node" as a raylet on this machine, joining the GCS on port 6379; its example config is not
in the wheel, so the test writes its own. Token authentication is on, with a token file of
the test's own (RAY_AUTH_TOKEN_PATH), so ~/.ray is never touched. Everything the head
started is one process group, ended by its id at teardown (never `ray stop`, which would end
every Ray instance of this user).

Slow: ~1.5-2 min on 2 loaded cores (three raylets start), so `pytest -m slow`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_orchestrator_fakes import max_overlap, mlflow_state, read_log

from common import names as N

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RAY = str(Path(PY).parent / "ray")
GCS_PORT = 6379  # the fake provider's workers join the GCS here
WORKER = {"CPU": 2, "GPU": 1}


def _fake_cluster_config() -> dict:
    """A launcher config for provider fake_multinode: CPU head, 0..2 GPU workers."""
    return {
        "cluster_name": "fake-sweeps",
        "max_workers": 2,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "gpu_worker": {
                "resources": WORKER,
                "node_config": {},
                "min_workers": 0,
                "max_workers": 2,
            },
        },
        "head_node_type": "ray.head.default",
        **{k: {} for k in ("docker", "file_mounts")},
        **{
            k: []
            for k in (
                "cluster_synced_files",
                "rsync_exclude",
                "rsync_filter",
                "initialization_commands",
                "setup_commands",
                "head_setup_commands",
                "worker_setup_commands",
                "head_start_ray_commands",
                "worker_start_ray_commands",
            )
        },
        "file_mounts_sync_continuously": False,
    }


def _sweep(tmp: Path, name: str) -> dict:
    # resnet at P <= 12000: the rule gives 1/4 GPU; 0.5 CPU each, so 4 trials fill a worker
    # and the 6 trials need both workers the type allows
    return {
        "name": "fake-gpu",
        "seeds": [0, 1, 2],
        "blocks": [{"models": ["resnet"], "datasets": ["digits"], "P": [100, 200]}],
        "trial": {"epochs": 3},
        "resources": {"cpus_per_trial": 0.5},
        "theory": {"enabled": False},
        "tune": {"storage_path": str(tmp / f"ray-{name}"), "checkpoint_seconds": 0},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp}/{name}.db"},
    }


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def fake_cluster(tmp_path):
    if not _port_free(GCS_PORT):
        pytest.skip(f"port {GCS_PORT} is in use: the fake provider's workers need it")
    cfg = tmp_path / "fake-cluster.yaml"
    cfg.write_text(yaml.safe_dump(_fake_cluster_config()))
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
    }
    env.pop("RAY_ADDRESS", None)
    head_env = {**env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    head = subprocess.Popen(
        [RAY, "start", "--head", f"--port={GCS_PORT}", "--num-cpus=0", "--num-gpus=0"]
        + ["--include-dashboard=false", f"--autoscaling-config={cfg}"],
        env=head_env,
        start_new_session=True,  # its own process group: the teardown ends exactly it
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = head.communicate(timeout=180)
    try:
        assert head.returncode == 0, out[-3000:]
        yield {"config": cfg, "env": env}
    finally:
        _end_group(head.pid)


def _end_group(pgid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.3)


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from test_orchestrator_fakes import make_fake_trial
from orchestrator.sweep import main
sys.exit(main({argv!r}, trainable=make_fake_trial({log!r}, sleep={sleep})))
"""


def _drive(tmp: Path, env: dict, argv: list[str], log: Path, sleep: float = 2.0):
    script = tmp / f"driver-{log.stem}.py"
    script.write_text(
        DRIVER.format(tests=str(ROOT / "tests"), argv=argv, log=str(log), sleep=sleep)
    )
    env = {**env, "PYTHONPATH": str(ROOT), "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [PY, str(script)], cwd=tmp, env=env, capture_output=True, text=True, timeout=400
    )


def _alive_nodes(env: dict) -> list[dict]:
    code = textwrap.dedent(
        """
        import json, ray
        ray.init(address="auto", log_to_driver=False)
        print("NODES", json.dumps([n["Resources"] for n in ray.nodes() if n["Alive"]]))
        """
    )
    r = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("NODES"))
    return json.loads(line.split(" ", 1)[1])


def _contract(uri: str, dst: Path) -> dict[str, dict]:
    """Per trial key: what MLflow holds, without ids and times that differ between runs."""
    from mlflow.tracking import MlflowClient

    c, out = MlflowClient(uri), {}
    for key, s in mlflow_state(uri, "fake-gpu").items():
        dst.mkdir(parents=True, exist_ok=True)
        curve = pd.read_parquet(c.download_artifacts(s["run_id"], N.CURVES_ARTIFACT, str(dst)))
        tags = {k: v for k, v in s["tags"].items() if not k.startswith("mlflow.")}
        tags.pop(N.TAG_TUNE_TRIAL_ID)
        out[key] = {
            "runs": s["runs"],
            "status": s["status"],
            "steps": s["steps"],
            "tags": tags,
            "params": s["params"],
            "artifacts": s["artifacts"],
            "curve": curve.to_dict("list"),
        }
    return out


def test_autoscaler_launches_gpu_workers_for_the_sweep(fake_cluster, tmp_path):
    env, cluster_cfg = fake_cluster["env"], str(fake_cluster["config"])
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(_sweep(tmp_path, "cluster")))

    # Only the CPU-less head is alive: looking at live nodes alone refuses every trial.
    r = _drive(tmp_path, env, ["--config", str(sweep_file), "--address", "auto"], tmp_path / "a.x")
    assert r.returncode == 2 and "no node has that" in r.stderr, r.stderr[-3000:]

    # The dry run on the node types says what the autoscaler will be asked for.
    dry = _drive(
        tmp_path,
        env,
        ["--config", str(sweep_file), "--cluster", cluster_cfg, "--dry-run"],
        tmp_path / "dry.x",
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "0.5 CPU + 0.25 GPU" in dry.stdout
    assert "would launch: 2 x gpu_worker (CPU: 2, GPU: 1) for 0.5 CPU + 0.25 GPU: 4 per node" in (
        dry.stdout
    )

    t0 = time.monotonic()
    log = tmp_path / "cluster.jsonl"
    argv = ["--config", str(sweep_file), "--address", "auto", "--cluster", cluster_cfg, "-v", "0"]
    r = _drive(tmp_path, env, argv, log)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "6/6 trials finished" in r.stdout
    assert f"MLflow store sqlite:///{tmp_path}/cluster.db" in r.stderr  # the pre-flight line

    # the autoscaler started both GPU workers the type allows
    nodes = _alive_nodes(env)
    workers = [n for n in nodes if n.get("GPU", 0) > 0]
    assert len(workers) == 2 and all(n["CPU"] == WORKER["CPU"] for n in workers), nodes
    # every trial ran on a worker with the rule's share, at most 4 per node (1 / 0.25 GPU)
    starts = [e for e in read_log(log) if e["event"] == "start"]
    assert len({e["key"] for e in starts}) == 6
    assert all(e["resources"] == {"CPU": 0.5, "GPU": 0.25} for e in starts), starts
    assert all(e["gpus"] for e in starts)  # a GPU id: placed on a GPU worker, not the head
    events = read_log(log)
    for node in {e["node"] for e in starts}:
        assert max_overlap([e for e in events if e["node"] == node]) <= 4

    # MLflow: exactly what the same sweep leaves on one machine
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump(_sweep(tmp_path, "one")))
    argv = ["--config", str(one), "--address", "local", "-v", "0"]  # a new one-machine Ray
    local = _drive(tmp_path, env, argv, tmp_path / "one.jsonl")
    assert local.returncode == 0, local.stderr[-3000:]
    on_cluster = _contract(f"sqlite:///{tmp_path}/cluster.db", tmp_path / "dl-cluster")
    on_one = _contract(f"sqlite:///{tmp_path}/one.db", tmp_path / "dl-one")
    assert len(on_cluster) == 6 and on_cluster == on_one
    assert all(v["status"] == "FINISHED" and v["steps"] == [1, 2, 3] for v in on_cluster.values())
    print(f"fake autoscaling sweep: {took:.0f} s")
