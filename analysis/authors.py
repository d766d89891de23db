"""The paper authors' published learning curves (Tables 3-5) as analysis input.

A directory with one `--curves` CSV per group and a groups.json holding, per group, the
authors' own choices (P_min, window, the P range of their gamma2 fit), their stored gamma1,
gamma2 and lambda0(P), and the paper's table values (see that directory's README.md). Used by
the tests and by benchmarks/bench_authors_curves.py; $AUTHORS_CURVES points at another copy
(e.g. held-out groups in the same layout).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# the shared/ folder that sits beside a checkout (as on developers' machines and in CI)
DEFAULT_DIRS = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "authors-curves",)


@dataclass(frozen=True)
class AuthorsGroup:
    """One group of groups.json (paper: the printed table values, keys as in the paper)."""

    name: str
    P: tuple[float, ...]
    P_min: float | None
    window: tuple[float | None, float | None] | None
    gamma1_stored: float | None
    gamma2_stored: float | None
    lambda0: tuple[float, ...]
    gamma2_P_range: tuple[float, float] | None
    paper: dict
    setting: dict

    def curves(self, root: Path) -> pd.DataFrame:
        return pd.read_csv(root / f"{self.name}.csv")


def authors_dir() -> Path | None:
    """$AUTHORS_CURVES, else the shared data folder next to the checkout; None if absent."""
    env = os.environ.get("AUTHORS_CURVES")
    for d in ([Path(env)] if env else []) + list(DEFAULT_DIRS):
        if (d / "groups.json").is_file():
            return d
    return None


def load_groups(root: Path) -> dict[str, AuthorsGroup]:
    raw = json.loads((root / "groups.json").read_text())
    out = {}
    for name, g in raw.items():
        rng = g.get("gamma2_P_range")
        out[name] = AuthorsGroup(
            name=name,
            P=tuple(g["P"]),
            P_min=g.get("P_min"),
            window=tuple(g["window"]) if g.get("window") else None,
            gamma1_stored=g.get("authors_gamma1_stored"),
            gamma2_stored=g.get("authors_gamma2_stored"),
            lambda0=tuple(g.get("authors_lambda0") or ()),
            gamma2_P_range=tuple(rng) if rng else None,
            paper=g.get("paper", {}),
            setting={
                k: g[k] for k in ("model", "dataset", "weight_decay", "norm", "optimizer") if k in g
            },
        )
    return out
