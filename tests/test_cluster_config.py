"""cluster.yaml and its on-premise variant pass Ray's own cluster-config validation, offline."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "cluster.yaml", ROOT / "configs" / "cluster-local.yaml"]


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
