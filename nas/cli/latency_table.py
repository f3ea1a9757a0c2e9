"""`nas latency-table`: measure every part a search space (or a network) can hold on this device, resumably."""

from __future__ import annotations

import argparse
import sys
import time

from nas.arch.resolve import resolve_spec
from nas.arch.space import DEFAULT_SPACE
from nas.errors import NasError
from nas.latency.table import (
    CALIBRATION_NETWORKS,
    build_table,
    calibrate_on,
    current_setup,
    default_table_path,
    open_table,
    table_parts,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("latency-table", help="per-block latency table of a space on this device")
    parser.add_argument("--space", help=f"search space name or .toml file (default {DEFAULT_SPACE} unless --spec "
                                        "is given)")
    parser.add_argument("--resolution", type=int, help="input resolution of the space's networks (default: "
                                                       "the space's)")
    parser.add_argument("--spec", action="append", default=[], metavar="MODEL",
                        help="also the parts of this network (name, spec .json, run folder); repeatable")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1, as in the paper)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per part (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs per part (default 5)")
    parser.add_argument("--calibration", type=int, default=CALIBRATION_NETWORKS, metavar="N",
                        help=f"whole networks timed to calibrate the table when it has no calibration yet "
                             f"(default {CALIBRATION_NETWORKS}; 0: none)")
    parser.add_argument("--recalibrate", action="store_true",
                        help="time the calibration networks again (the machine changed, or its load did)")
    parser.add_argument("--out", help="table file (.json) or folder (default runs/latency-DEVICE-tTHREADS-bBATCH)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.calibration < 0:
        raise NasError(f"--calibration {args.calibration}: give a number of networks, 0 for none")
    setup = current_setup(args.device, threads=args.threads, batch=args.batch, runs=args.runs, warmup=args.warmup)
    space = args.space or (None if args.spec else DEFAULT_SPACE)
    specs = [resolve_spec(model) for model in args.spec]
    parts = table_parts(space, specs, args.resolution)
    table = open_table(args.out or default_table_path(setup), setup)
    todo = len(table.missing(parts))
    print(f"{len(parts)} parts, {len(parts) - todo} already in {table.path}, {todo} to measure on "
          f"{setup.describe()}", flush=True)
    start = time.perf_counter()
    build_table(table, parts, progress=_progress)
    if todo:
        print(f"measured {todo} parts in {time.perf_counter() - start:.1f} s; the table holds {len(table)}: "
              f"{table.path}")
    if args.calibration and (table.calibration is None or args.recalibrate):
        start = time.perf_counter()
        calibration = calibrate_on(table, space, specs, args.resolution, args.calibration)
        if calibration is not None:
            print(f"calibrated on {len(calibration.networks)} whole networks in {time.perf_counter() - start:.1f} s: "
                  f"predictions scale the sum of the entries by {calibration.scale:.3f}")
    return 0


def _progress(done: int, total: int, key: str, seconds: float) -> None:
    """One line rewritten in place on a terminal; a line every tenth of the parts in a log."""
    if sys.stderr.isatty():
        print(f"\r{done}/{total} {key}: {seconds * 1e3:.3f} ms\033[K", end="" if done < total else "\n",
              file=sys.stderr, flush=True)
    elif done == total or done % max(1, total // 10) == 0:
        print(f"{done}/{total} measured", file=sys.stderr, flush=True)
