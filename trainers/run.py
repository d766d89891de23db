"""Run one trial without a sweep (`scaling-train`, or `python -m trainers.run`).

    scaling-train --set kind=deep --set model=cnn --set dataset=digits \
        --set P=500 --set epochs=20 --out curve.csv

Any TrialConfig field can be set with --set KEY=VALUE (values parsed as YAML, by the parser
every CLI shares, common.cli: P=500 is an int, nested_subsets=true a bool) or from
--config FILE.yaml (safe YAML, a mapping of fields); --set wins over the file. Writes one CSV
row per logged epoch with the record's keys as columns, and prints one line per logged
epoch. Bad input: one line on stderr, exit code 2, before any compute.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import yaml
from pydantic import ValidationError

from common import cli
from common.names import STOP_REASON
from common.paths import OutputPathError, check_output_file, replace_atomically
from trainers.config import TrialConfig
from trainers.status import STATUS_COMPLETED


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def _validation_message(err: ValidationError) -> str:
    """Pydantic's errors, one line, each prefixed by the field it concerns."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_config(args: argparse.Namespace) -> TrialConfig:
    fields: dict = {}
    if args.config:
        try:
            loaded = yaml.safe_load(Path(args.config).read_text())
        except UnicodeDecodeError:
            _fail(f"--config: {args.config} is not UTF-8 text")
        except (OSError, yaml.YAMLError) as e:
            _fail(f"--config: cannot read {args.config}: {e}".splitlines()[0])
        if not isinstance(loaded, dict):
            _fail(f"--config: {args.config} must hold a mapping of config fields")
        fields.update(loaded)
    try:
        cli.apply_sets(fields, args.set)
    except cli.SetError as e:
        _fail(str(e))
    try:
        return TrialConfig(**fields)
    except ValidationError as e:
        _fail(_validation_message(e))
    except ValueError as e:
        _fail(str(e).splitlines()[0])


def build_parser() -> argparse.ArgumentParser:
    fields = ", ".join(TrialConfig.model_fields)
    p = cli.parser(
        "trainers.run",
        "Train one trial (a perceptron or a deep net, any TrialConfig field) without a sweep "
        "and write its learning curve, one CSV row per logged epoch.",
        epilog="example:\n\n  scaling-train --set kind=deep --set model=cnn --set dataset=digits "
        "--set P=500 --set epochs=20 --out curve.csv\n\n"
        f"TrialConfig fields (trainers/config.py): {fields}",
    )
    cli.add_set(p, "a TrialConfig field, value parsed as YAML (repeatable), e.g. --set P=500")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML mapping of TrialConfig fields")
    cli.add_out(
        p, "CSV file of the curve (default: curve.csv)", default="curve.csv", metavar="FILE"
    )
    cli.add_verbosity(
        p,
        verbose_help="-v: the libraries' warnings too; -vv: also their INFO logs",
        quiet_help="no per-epoch lines: only the last line and errors",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = cli.verbosity(args)
    cli.quiet_libraries(level)
    cfg = parse_config(args)
    try:
        out = check_output_file(args.out, "--out")  # before the data loads and the training
    except OutputPathError as e:
        _fail(str(e))

    from trainers import make_trainer  # torch is imported only once the input is valid

    t0 = time.time()
    try:
        trainer = make_trainer(cfg)  # loads data and builds the model; no training yet
    except (OSError, RuntimeError, ValueError) as e:
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    rows: list[dict[str, float]] = []

    def report(rec: dict[str, float]) -> None:
        rows.append(rec)
        if level >= 0:
            shown = "  ".join(f"{k}={v:.4g}" for k, v in rec.items() if k != STOP_REASON)
            print(f"[{time.time() - t0:7.1f}s] {shown}", flush=True)

    status = trainer.run(report)

    def write(tmp: Path) -> None:
        # the last row alone carries the stop reason: the columns are the union, in order
        columns = list(dict.fromkeys(k for r in rows for k in r)) or ["epoch"]
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    replace_atomically(out, write)
    reason = rows[-1].get(STOP_REASON) if rows else None
    ended = f" ({reason})" if reason else ""
    print(f"{status}{ended}: {len(rows)} logged epochs in {time.time() - t0:.1f}s -> {out}")
    return 0 if status == STATUS_COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main())
