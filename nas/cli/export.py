"""`nas export`: write a name, spec file, study or run folder as spec, block strings, config, weights, a
torch.export program and ONNX (float, and int8 on request)."""

from __future__ import annotations

import argparse
import sys

from nas._common.runfiles import WEIGHTS_FILE
from nas.deploy.card import check_text
from nas.deploy.export import (
    DEFAULT_FORMATS,
    FORMATS,
    ExportReport,
    export,
    parse_formats,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a network (and a study's family), verified")
    parser.add_argument("model", help="name (b0..b7), spec .json, study folder runs/<study> or a train run folder")
    parser.add_argument("--out", required=True, help="output folder (created; files replaced atomically)")
    parser.add_argument("--weights", help="safetensors checkpoint (default: the run folder's, if any)")
    parser.add_argument("--format", default=",".join(DEFAULT_FORMATS),
                        help=f"comma-separated formats out of {','.join(FORMATS)} (default: %(default)s; "
                             "onnx-int8 needs a trained run; torchscript is deprecated by torch)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = export(args.model, args.out, formats=args.format, weights=args.weights)
    for item in (report, *report.family):
        _print_report(item)
    for name, reason in report.failed:
        print(f"family member {name} NOT exported: {reason}", file=sys.stderr)
    if "safetensors" in parse_formats(args.format) and WEIGHTS_FILE not in report.files:
        print(f"note: no weights to write ({WEIGHTS_FILE} skipped): pass --weights or a run folder with a checkpoint")
    return 1 if report.failed else 0


def _print_report(report: ExportReport) -> None:
    print(f"{report.spec.name or 'spec'} -> {report.out}: {', '.join(report.files)}")
    for name, value in report.checks.items():
        print(f"  {name}: {check_text(value)}")
