"""Run one trial without a sweep, for debugging (issue 3, item 6).

    python -m trainers.run --set kind=deep --set model=cnn --set dataset=digits \
        --set P=500 --set epochs=20 --out curve.csv

Any TrialConfig field can be set with --set KEY=VALUE (values parsed as YAML scalars, so
P=500 is an int and nested_subsets=true a bool) or from --config FILE.yaml (safe YAML, a
mapping of fields); --set wins over the file. Writes one CSV row per logged epoch with the
record's keys as columns, and prints progress. Bad input: one line on stderr, exit code 2,
before any compute.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import yaml
from pydantic import ValidationError

from common.paths import OutputPathError, check_output_file, replace_atomically
from trainers.config import TrialConfig
from trainers.status import STATUS_COMPLETED


def _fail(msg: str) -> None:
    print(f"trainers.run: error: {msg}", file=sys.stderr)
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
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            fields[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            fields[key.strip()] = value
    try:
        return TrialConfig(**fields)
    except ValidationError as e:
        _fail(_validation_message(e))
    except ValueError as e:
        _fail(str(e).splitlines()[0])


def main(argv: list[str] | None = None) -> int:
    fields = ", ".join(TrialConfig.model_fields)
    ap = argparse.ArgumentParser(
        prog="python -m trainers.run",
        description=__doc__,
        epilog=f"TrialConfig fields (trainers/config.py): {fields}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrialConfig field (repeatable), e.g. --set P=500",
    )
    ap.add_argument("--config", metavar="FILE.yaml", help="YAML mapping of TrialConfig fields")
    ap.add_argument("--out", default="curve.csv", help="CSV output (default: curve.csv)")
    ap.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    args = ap.parse_args(argv)
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
        if not args.quiet:
            shown = "  ".join(f"{k}={v:.4g}" for k, v in rec.items())
            print(f"[{time.time() - t0:7.1f}s] {shown}", flush=True)

    status = trainer.run(report)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["epoch"])
            writer.writeheader()
            writer.writerows(rows)

    replace_atomically(out, write)
    print(f"{status}: {len(rows)} logged epochs in {time.time() - t0:.1f}s -> {out}")
    return 0 if status == STATUS_COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main())
