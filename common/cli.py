"""The command-line family: four commands, one set of shared flags, defined here once.

    scaling-sweep   (python -m orchestrator.sweep)   run a sweep on Ray Tune, tracked in MLflow
    scaling-report  (python -m analysis.report)      exponents, figures and report.html
    scaling-train   (python -m trainers.run)         one trial, without a sweep
    scaling-theory  (python -m theory.solve)         the fixed-norm perceptron's replica theory

Every command takes `--out`, `--quiet`, `-v`/`-vv` and `--version`; those that read or write
MLflow take `--tracking-uri` (the rule: common.names.resolve_tracking_uri); those built from
a YAML mapping take `--set KEY=VALUE` with dotted keys, parsed here (parse_set) for all of
them, so a value means the same everywhere and a bad one is an error naming its key.

Like the rest of `common`, this module imports neither torch, Ray nor MLflow.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import warnings
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from common import names as N

DISTRIBUTION = "scaling-sweeps"  # pyproject.toml's [project] name
# module -> console script ([project.scripts] in pyproject.toml)
COMMANDS = {
    "orchestrator.sweep": "scaling-sweep",
    "analysis.report": "scaling-report",
    "trainers.run": "scaling-train",
    "theory.solve": "scaling-theory",
}
# libraries whose INFO logs and warnings stay hidden below -vv
NOISY_LOGGERS = ("ray", "mlflow", "alembic", "py.warnings", "filelock", "matplotlib")


class SetError(ValueError):
    """A bad --set item; the message is one line naming the key."""


def package_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # a bare checkout on PYTHONPATH, never installed
        return "(not installed)"


def prog(module: str) -> str:
    """The name the user typed: the console script, or `python -m MODULE`."""
    script = COMMANDS[module]
    return script if Path(sys.argv[0]).name == script else f"python -m {module}"


def parser(module: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser named as invoked, with --version; the other spelling in its help.

    Description and epilog are wrapped here, keeping indented lines (commands) as written.
    """
    other = f"python -m {module}" if prog(module) == COMMANDS[module] else COMMANDS[module]
    p = argparse.ArgumentParser(
        prog=prog(module),
        description=_wrap(f"{description} (Also: {other}.)"),
        epilog=_wrap(epilog) if epilog else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    return p


def _wrap(text: str, width: int = 88) -> str:
    """Fill each paragraph of `text` to `width`; lines that start with a space stay as is."""
    out = []
    for para in text.split("\n\n"):
        raw = para.startswith(" ")
        out.append(para if raw else textwrap.fill(" ".join(para.split()), width))
    return "\n\n".join(out)


# --- --out, --tracking-uri ---------------------------------------------------------------


def add_out(p: argparse.ArgumentParser, help: str, **kwargs: Any) -> None:
    p.add_argument("--out", help=help, **kwargs)


def add_tracking_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help=f"MLflow store (default: ${N.TRACKING_URI_ENV} if set, else {N.DEFAULT_TRACKING_URI})",
    )


# --- --quiet, -v ---------------------------------------------------------------------------

QUIET = -1  # the level --quiet gives; 0 is the default, 1 is -v, 2 is -vv


def add_verbosity(p: argparse.ArgumentParser, verbose_help: str, quiet_help: str) -> None:
    """--quiet and -v/-vv/-v N, exclusive; read the level with verbosity(args)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quiet", action="store_true", help=quiet_help)
    g.add_argument(
        "-v",
        "--verbose",
        nargs="?",
        const="1",
        default="0",
        type=_verbosity,
        metavar="0|1|2",
        help=verbose_help,
    )


def _verbosity(text: str) -> int:
    """-v -> 1, -vv -> 2 (argparse hands over the extra "v"), -v N -> N in 0..2."""
    level = len(text) + 1 if set(text) == {"v"} else int(text) if text.isdigit() else -1
    if not 0 <= level <= 2:
        raise argparse.ArgumentTypeError(f"expected -v, -vv or -v 0|1|2, got {text!r}")
    return level


def verbosity(args: argparse.Namespace) -> int:
    """QUIET (-1) with --quiet, else the -v level (0, 1 or 2)."""
    return QUIET if args.quiet else args.verbose


def quiet_libraries(level: int) -> None:
    """Below -vv, hide Python warnings and the libraries' INFO logs (matplotlib, MLflow, ...);
    -v shows their warnings, -vv everything. The sweep has its own: orchestrator.terminal."""
    if level >= 2:
        return
    if level < 1:
        warnings.filterwarnings("ignore")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if level == 1 else logging.ERROR)


# --- --set KEY=VALUE -------------------------------------------------------------------------


def add_set(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def parse_set(item: str) -> tuple[list[str], Any]:
    """`a.b=VALUE` -> (["a", "b"], VALUE parsed as YAML: 500 an int, true a bool, [1, 2] a
    list, an empty value None). A value YAML cannot parse is an error, never a string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SetError(f"--set: expected KEY=VALUE, got {item!r}")
    parts = key.split(".")
    if not all(parts):
        raise SetError(f"--set {key}: empty part in the dotted key")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise SetError(f"--set {key}: value is not valid YAML: {raw!r} (quote it)") from None
    return parts, value


def set_dotted(data: dict[str, Any], parts: list[str], value: Any) -> None:
    """data[a][b]... = value, creating mappings on the way; a list is indexed by number."""
    node: Any = data
    key = ".".join(parts)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SetError(f"--set {key}: no list index {part!r}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise SetError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping")


def apply_sets(data: dict[str, Any], items: Iterable[str]) -> dict[str, Any]:
    """Apply `--set` items in order (a later one wins) to a YAML mapping, in place."""
    for item in items:
        set_dotted(data, *parse_set(item))
    return data
