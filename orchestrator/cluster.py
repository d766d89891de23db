"""What the cluster can hold: the nodes alive now plus the node types the autoscaler can launch.

On an autoscaling cluster the pre-launch checks must not look only at live nodes: right after
`ray up` the head (CPU: 0) is the only node, no GPU is visible, and every trial would either
get 0 GPU or be refused. The node types come from the cluster launcher config, read from
`--cluster FILE` or, on the head, from the config `ray up` leaves there
(~/ray_bootstrap_config.yaml). A node type counts if the autoscaler may start one
(max_workers > 0, or the head type); its `resources` must be written in the config, since
the checks run before any such node exists.

Used by orchestrator/sweep.py for three things: whether the cluster has GPUs (the GPU share
rule of orchestrator/resources.py applies), the capacity check (a request no node or node
type can hold is refused before launch), and the --dry-run launch plan.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from orchestrator.config import ConfigError

BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")  # written by `ray up` on the head


@dataclass(frozen=True)
class NodeType:
    """One entry of the launcher config's available_node_types."""

    name: str
    resources: dict[str, float] = field(default_factory=dict)
    max_workers: int = 0  # how many the autoscaler may start (0 for the head)
    head: bool = False


def load_node_types(path: str | Path, skip_undeclared: bool = False) -> list[NodeType]:
    """Node types from a Ray cluster launcher YAML; ConfigError (one line) if unusable.

    A launchable type must declare its resources; with skip_undeclared such types are left
    out instead (the head's bootstrap config of an on-premise cluster, whose fixed workers
    are all alive and so are seen as live nodes).
    """
    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        why = getattr(e, "strerror", None) or type(e).__name__
        raise ConfigError(f"--cluster: cannot read {p} ({why})") from None
    types = data.get("available_node_types") if isinstance(data, dict) else None
    if not isinstance(types, dict) or not types:
        raise ConfigError(f"--cluster: {p} has no available_node_types")
    head_type = data.get("head_node_type")
    cap = data.get("max_workers")
    out = []
    for name, spec in types.items():
        spec = spec or {}
        res = spec.get("resources")
        if not isinstance(res, dict):
            raise ConfigError(f"--cluster: node type {name!r} in {p} has no resources mapping")
        is_head = name == head_type
        n = 0 if is_head else int(spec.get("max_workers", cap if cap is not None else 0))
        if not is_head and n > 0 and not res:
            if skip_undeclared:
                continue
            raise ConfigError(
                f"--cluster: node type {name!r} in {p} leaves its resources to be detected at "
                "launch; write them out (e.g. resources: {CPU: 8, GPU: 1})"
            )
        out.append(NodeType(name, {k: float(v) for k, v in res.items()}, n, is_head))
    return out


def default_node_types(address: str | None) -> list[NodeType]:
    """On the head of a `ray up` cluster (an address given), the bootstrap config's types."""
    if address is not None and address != "local" and BOOTSTRAP_CONFIG.expanduser().is_file():
        return load_node_types(BOOTSTRAP_CONFIG, skip_undeclared=True)
    return []


def node_shapes(alive: list[dict], types: list[NodeType]) -> list[dict[str, float]]:
    """Every node shape the sweep may get: alive nodes (ray.nodes()) and launchable types."""
    shapes = [n.get("Resources", {}) for n in alive if n.get("Alive")]
    shapes += [t.resources for t in types if t.max_workers > 0]
    return shapes


def as_nodes(shapes: list[dict[str, float]]) -> list[dict]:
    """Shapes in ray.nodes() form, for orchestrator.resources.check_capacity."""
    return [{"Alive": True, "Resources": s} for s in shapes]


def has_gpu(shapes: list[dict[str, float]]) -> bool:
    return any(s.get("GPU", 0) > 0 for s in shapes)


def _slots(node: dict[str, float], need: dict[str, float]) -> int:
    """How many trials of shape `need` one node holds (Ray packs by each resource)."""
    return min(
        (math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in need.items() if v > 0), default=0
    )


def launch_plan(requests: list[dict], types: list[NodeType]) -> list[tuple[NodeType, int, dict]]:
    """Per node type: (type, workers needed to run every request at once, {shape: per node}).

    Each request shape goes to the smallest launchable type that holds it (fewest GPUs, then
    CPUs); the autoscaler launches at most the type's max_workers (the other trials queue).
    The autoscaler decides the same way in spirit (bin-packing pending demand onto node
    types), so this is what --dry-run prints as "would launch".
    """
    shapes: dict[tuple, int] = {}
    for r in requests:
        key = tuple(sorted(r.items()))
        shapes[key] = shapes.get(key, 0) + 1
    plan: dict[str, tuple[NodeType, float, dict]] = {}
    for key, n in shapes.items():
        need = dict(key)
        fits = [t for t in types if t.max_workers > 0 and _slots(t.resources, need) > 0]
        if not fits:
            continue  # the capacity check has refused (or a live node holds it)
        t = min(fits, key=lambda t: (t.resources.get("GPU", 0), t.resources.get("CPU", 0)))
        per = _slots(t.resources, need)
        _, nodes, per_shape = plan.get(t.name, (t, 0.0, {}))
        label = f"{need.get('CPU', 0):g} CPU + {need.get('GPU', 0):g} GPU"
        plan[t.name] = (t, nodes + n / per, {**per_shape, label: per})
    return [(t, math.ceil(k - 1e-9), per) for t, k, per in plan.values()]


def local_machine() -> dict[str, float]:
    """This machine as Ray would see it started here: its CPUs and NVIDIA GPUs (counted from
    /dev/nvidiaN, so no CUDA library is loaded for a dry run)."""
    gpus = [p for p in Path("/dev").glob("nvidia[0-9]*") if p.name[6:].isdigit()]
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(len(gpus))}


def fleet(types: list[NodeType]) -> list[dict[str, float]]:
    """Every node of a full-size cluster: the head once, each worker type at max_workers."""
    return [dict(t.resources) for t in types for _ in range(1 if t.head else t.max_workers)]
