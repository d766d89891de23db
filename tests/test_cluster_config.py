"""cluster.yaml and its on-premise variant pass Ray's own cluster-config validation, offline."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "cluster.yaml", ROOT / "cluster-local.yaml"]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_ray_validates_cluster_config(path):
    raw = _load(path)
    validate_config(prepare_config(copy.deepcopy(raw)))
    cmds = raw["head_setup_commands"] + raw["setup_commands"]
    starts = raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]
    # head runs an MLflow server bound to localhost; setup installs this project
    assert any("mlflow server --host 127.0.0.1" in c for c in cmds)
    assert any("pip install" in c and "scaling-sweeps" in c for c in cmds)
    # token auth on every node; the token travels as a file, never inside the config
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "RAY_AUTH_TOKEN=" not in path.read_text()
    assert any("--dashboard-host=127.0.0.1" in c for c in raw["head_start_ray_commands"])


def test_aws_cluster_has_cpu_head_and_spot_gpu_workers():
    raw = _load(FILES[0])
    assert raw["provider"]["type"] == "aws"
    head = raw["available_node_types"][raw["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    gpu = raw["available_node_types"]["gpu_worker"]["node_config"]
    assert gpu["InstanceMarketOptions"]["MarketType"] == "spot"
    assert gpu["InstanceType"].startswith(("g", "p"))


def test_local_variant_and_validator_rejects_a_broken_config():
    raw = _load(FILES[1])
    assert raw["provider"]["type"] == "local" and raw["provider"]["worker_ips"]
    broken = copy.deepcopy(_load(FILES[0]))
    broken["max_workerz"] = 3  # a typo Ray's schema must catch
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


# -----------------------------------------------------------------------------
# Issue 11: what `ray up` and the autoscaler need, and what the sweep plans with


def test_cluster_extra_installed_on_every_node_and_workers_can_write_s3():
    import json
    import re

    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=\[]", d)[0] for d in extra["optional-dependencies"]["cluster"]}
    assert {"boto3", "botocore"} <= names  # Ray's AWS node provider imports both
    raw = _load(FILES[0])
    # setup_commands run on head and workers (Ray's default `pip install boto3` is replaced)
    assert any("pip install" in c and "scaling-sweeps[cluster]" in c for c in raw["setup_commands"])
    types = raw["available_node_types"]
    profiles = {n: t["node_config"]["IamInstanceProfile"]["Arn"] for n, t in types.items()}
    assert profiles["gpu_worker"].endswith("instance-profile/scaling-sweeps-worker")
    assert profiles["head"].endswith("instance-profile/scaling-sweeps-head")
    # the documented policies parse and grant the storage prefix (and the head the launch)
    doc = (ROOT / "cluster-iam.md").read_text()
    policies = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", doc, re.S)]
    assert len(policies) == 2
    for p in policies:
        puts = [s for s in p["Statement"] if "s3:PutObject" in s["Action"]]
        assert puts and puts[0]["Resource"] == "arn:aws:s3:::BUCKET/ray_results/*"
    head_actions = {a for s in policies[1]["Statement"] for a in s["Action"]}
    assert {"ec2:RunInstances", "iam:PassRole"} <= head_actions
    # the head's shells point drivers at its MLflow server
    assert any("MLFLOW_TRACKING_URI=http://127.0.0.1:5000" in c for c in raw["head_setup_commands"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_readme_and_config_commands_never_use_ray_submit_with_a_module(path):
    # `ray submit cluster.yaml -- python -m ...` uploads a file called `python`
    for text in (path.read_text(), (ROOT / "README.md").read_text()):
        assert "ray submit" not in text


def test_node_types_from_cluster_yaml_and_launch_plan(tmp_path):
    from orchestrator import cluster as C
    from orchestrator.config import ConfigError

    types = C.load_node_types(FILES[0])
    by = {t.name: t for t in types}
    assert by["head"].head and by["head"].max_workers == 0
    assert (
        by["gpu_worker"].resources == {"CPU": 8.0, "GPU": 1.0} and by["gpu_worker"].max_workers == 8
    )
    shapes = C.node_shapes([], types)
    assert C.has_gpu(shapes) and shapes == [{"CPU": 8.0, "GPU": 1.0}]
    # 9 trials of 1 CPU + 1/4 GPU: GPU-bound, 4 per node -> 3 workers; 20 of 1 CPU + 1/8 GPU
    # are CPU-bound (8 per node) -> 3 workers, packed by hand: ceil(20 / 8)
    q = [{"CPU": 1.0, "GPU": 0.25}] * 9
    [(t, n, per)] = C.launch_plan(q, types)
    assert (t.name, n, per) == ("gpu_worker", 3, {"1 CPU + 0.25 GPU": 4})
    e = [{"CPU": 1.0, "GPU": 0.125}] * 20
    assert C.launch_plan(e, types)[0][1:] == (3, {"1 CPU + 0.125 GPU": 8})
    # mixed shapes add their node fractions: 4 x 1/2 GPU (2 nodes) + 4 x 1/4 GPU (1 node)
    mixed = [{"CPU": 1.0, "GPU": 0.5}] * 4 + [{"CPU": 1.0, "GPU": 0.25}] * 4
    assert C.launch_plan(mixed, types)[0][1] == 3
    # a type whose resources are left to detection cannot be planned with
    raw = _load(FILES[0])
    raw["available_node_types"]["gpu_worker"]["resources"] = {}
    p = tmp_path / "detected.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="write them out"):
        C.load_node_types(p)
    assert [t.name for t in C.load_node_types(p, skip_undeclared=True)] == ["head"]


def test_dry_run_on_the_cluster_prints_what_would_be_launched(capsys):
    from orchestrator.sweep import main

    assert main(["--config", "paper-table1", "--cluster", str(FILES[0]), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # the GPU rule applies (the live head has no GPU, the worker type has one): the paper
    # models' shares from resources.GPU_RULE, small and large P ...
    assert "1 CPU + 0.25 GPU" in out and "1 CPU + 1 GPU" in out
    # ... and the plan names the worker type, capped at its max_workers
    assert "would launch: 8 x gpu_worker (CPU: 8, GPU: 1)" in out and "max_workers 8" in out
    assert "MLflow store: " in out  # which store the sweep would write


def test_on_the_head_the_bootstrap_config_gives_the_node_types(tmp_path, monkeypatch):
    from orchestrator import cluster as C

    boot = tmp_path / "ray_bootstrap_config.yaml"
    monkeypatch.setattr(C, "BOOTSTRAP_CONFIG", boot)
    assert C.default_node_types("auto") == []  # not on a `ray up` head
    boot.write_text((FILES[0]).read_text())
    assert C.default_node_types(None) == []  # a local sweep plans with its own machine
    assert C.default_node_types("local") == []
    got = {t.name: t.resources for t in C.default_node_types("auto") if t.max_workers}
    assert got == {"gpu_worker": {"CPU": 8.0, "GPU": 1.0}}
