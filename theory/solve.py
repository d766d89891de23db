"""Command line (`scaling-theory`, or `python -m theory.solve`): the fixed-norm perceptron
theory on a grid, or its optimum per alpha.

    scaling-theory --alphas 0.5,1,2,5 --lambdas 0.001,0.01,0.1,1,10 --out grid.csv
    scaling-theory --alphas 1,10,100 --lambdas logspace:-3:3:61 --out grid.parquet
    scaling-theory --alphas 1,10,100 --optimum --out opt.csv

Writes CSV or Parquet by the extension of --out (default theory.csv, with --optimum
theory-opt.csv). Bad input: one line on stderr, exit 2, before any computation.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from common import cli
from common.paths import OutputPathError, check_output_file, replace_atomically


class _UsageError(ValueError):
    pass


def parse_values(text: str, name: str) -> np.ndarray:
    """'0.5,1,2' or 'logspace:START:STOP:NUM' (powers of ten) -> positive finite floats."""
    text = text.strip()
    try:
        if text.startswith("logspace:"):
            parts = text.split(":")
            if len(parts) != 4:
                raise ValueError
            start, stop, num = float(parts[1]), float(parts[2]), int(parts[3])
            if num < 1 or not (math.isfinite(start) and math.isfinite(stop)):
                raise ValueError
            values = np.logspace(start, stop, num)
        else:
            values = np.array([float(v) for v in text.split(",") if v.strip()])
    except ValueError:
        raise _UsageError(
            f"--{name}: expected comma-separated numbers or logspace:START:STOP:NUM, got {text!r}"
        ) from None
    if values.size == 0:
        raise _UsageError(f"--{name}: no values given")
    bad = values[~np.isfinite(values) | (values <= 0)]
    if bad.size:
        raise _UsageError(f"--{name}: values must be positive and finite, got {float(bad[0])}")
    return values


DEFAULT_OUT = {False: "theory.csv", True: "theory-opt.csv"}  # by --optimum


def _parser() -> argparse.ArgumentParser:
    p = cli.parser(
        "theory.solve",
        "Replica theory of the fixed-norm logistic perceptron (paper Eq. 13-14): "
        "eps(lambda; alpha) on a grid, or lambda_opt and eps_opt per alpha, with the Hebb, "
        "Bayes-optimal and maximally stable baselines.",
        epilog="examples:\n\n"
        "  scaling-theory --alphas 0.5,1,2,5 --lambdas logspace:-3:3:61 --out grid.csv\n"
        "  scaling-theory --alphas 1,10,100 --optimum --out opt.parquet",
    )
    p.add_argument("--alphas", required=True, help="alpha = P/N values: 0.5,1,2 or logspace:a:b:n")
    p.add_argument("--lambdas", help="lambda values (grid mode): 0.01,1 or logspace:-3:3:61")
    cli.add_out(
        p,
        f"output table, .csv or .parquet (default: {DEFAULT_OUT[False]}, with --optimum "
        f"{DEFAULT_OUT[True]})",
        metavar="FILE",
    )
    p.add_argument("--optimum", action="store_true", help="write lambda_opt, eps_opt per alpha")
    p.add_argument("--tol", type=float, default=1e-9, help="relative residual tolerance")
    p.add_argument(
        "--actors", type=int, default=None, help="Ray actors (default: one per CPU; 0 = serial)"
    )
    cli.add_verbosity(
        p,
        verbose_help="-v: the libraries' warnings too; -vv: also their INFO logs",
        quiet_help="no progress bar",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    progress = cli.verbosity(args) >= 0
    cli.quiet_libraries(cli.verbosity(args))
    if args.out is None:
        args.out = DEFAULT_OUT[args.optimum]
    try:
        alphas = parse_values(args.alphas, "alphas")
        if args.optimum:
            if args.lambdas:
                raise _UsageError("--lambdas is not used with --optimum")
        elif not args.lambdas:
            raise _UsageError("--lambdas is required (or use --optimum)")
        lambdas = None if args.optimum else parse_values(args.lambdas, "lambdas")
        out = Path(args.out)
        if out.suffix not in (".csv", ".parquet"):
            raise _UsageError(f"--out: extension must be .csv or .parquet, got {out.name!r}")
        out = check_output_file(args.out, "--out")  # a real write, before hours of solving
        if not (args.tol > 0 and math.isfinite(args.tol)):
            raise _UsageError(f"--tol: must be positive and finite, got {args.tol!r}")
        if args.actors is not None and args.actors < 0:
            raise _UsageError(f"--actors: must be >= 0, got {args.actors}")
    except (_UsageError, OutputPathError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from theory.pool import optimum_table, solve_grid  # after validation: imports take time

    if args.optimum:
        df = optimum_table(alphas, n_actors=args.actors, progress=progress)
    else:
        df = solve_grid(alphas, lambdas, n_actors=args.actors, progress=progress, tol=args.tol)
    if out.suffix == ".csv":
        replace_atomically(out, lambda tmp: df.to_csv(tmp, index=False))
    else:
        replace_atomically(out, lambda tmp: df.to_parquet(tmp, index=False))
    if "converged" in df and not df["converged"].all():
        n_bad = int((~df["converged"]).sum())
        print(f"warning: {n_bad} point(s) did not converge (converged=False)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
