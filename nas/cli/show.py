"""`nas show`: a per-stage table of one network, or the B0-B7 family."""

from __future__ import annotations

import argparse

from nas._common.tables import print_table
from nas.arch.describe import family_rows, stage_rows
from nas.arch.resolve import resolve_spec
from nas.errors import NasError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("show", help="per-stage table of a network, or the family (--family)")
    parser.add_argument("model", nargs="?", help="name (b0..b7), spec .json, run folder or block strings")
    parser.add_argument("--family", action="store_true", help="show B0-B7 with resolution, params and FLOPs")
    parser.add_argument("--resolution", type=int, help="input resolution (default: the spec's)")
    parser.add_argument("--classes", type=int, help="number of classes (default: the spec's)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.family:
        print_table(family_rows())
        return 0
    if not args.model:
        raise NasError("show needs a model (name, spec file or block strings) or --family")
    spec = resolve_spec(args.model)
    changes = {"resolution": args.resolution, "num_classes": args.classes}
    spec = spec.replace(**{key: value for key, value in changes.items() if value is not None})
    title = spec.name or "spec"
    print(f"{title}: {spec.resolution}x{spec.resolution}x{spec.in_channels} input, {spec.num_classes} classes")
    print_table(stage_rows(spec))
    return 0
