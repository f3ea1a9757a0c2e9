"""`nas latency`: the paper's protocol (batch 1, one thread, warm-up, then mean and median of 20 runs), and with
`--predict TABLE` the latency a per-part table predicts next to the measured one."""

from __future__ import annotations

import argparse

from nas._common.tables import print_table
from nas.arch.resolve import resolve_spec
from nas.arch.spec import Spec
from nas.errors import NasError
from nas.latency.measure import BACKENDS, measure_latency
from nas.latency.predict import latency_breakdown
from nas.latency.table import current_setup, load_table

DEFAULTS = {"threads": 1, "batch": 1, "runs": 20, "warmup": 5, "device": "cpu", "backend": "folded"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("latency", help="inference latency of a network on this machine")
    parser.add_argument("model", help="name (b0..b7), spec .json or run folder")
    parser.add_argument("--backend", choices=BACKENDS, help="network form to time (default folded)")
    parser.add_argument("--device", help="cpu (the paper's protocol, the default), auto, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=int, help="intra-op threads (default 1, as in the paper)")
    parser.add_argument("--batch", type=int, help="batch size (default 1)")
    parser.add_argument("--runs", type=int, help="timed runs (default 20)")
    parser.add_argument("--warmup", type=int, help="untimed warm-up runs (default 5)")
    parser.add_argument("--resolution", type=int, help="input resolution (default: the spec's)")
    parser.add_argument("--predict", metavar="TABLE",
                        help="also the latency this table (file or folder, see `nas latency-table`) predicts; the "
                             "measurement then takes the table's device, threads, batch and protocol")
    parser.add_argument("--measure-missing", action="store_true",
                        help="with --predict: measure the parts the table lacks into it instead of refusing")
    parser.add_argument("--no-measure", action="store_true", help="with --predict: only predict")
    parser.add_argument("--breakdown", action="store_true", help="with --predict: each part's table entry")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = resolve_spec(args.model)
    if args.resolution is not None:
        spec = spec.replace(resolution=args.resolution)
    if args.predict is None:
        if args.measure_missing or args.no_measure or args.breakdown:
            raise NasError("--measure-missing, --no-measure and --breakdown go with --predict TABLE")
        settings = {key: getattr(args, key) if getattr(args, key) is not None else value
                    for key, value in DEFAULTS.items()}
        _print_measured(spec, settings)
        return 0
    return _predict(spec, args)


def _predict(spec: Spec, args: argparse.Namespace) -> int:
    table = load_table(args.predict)
    setup = table.setup
    settings = {key: getattr(setup, key) for key in DEFAULTS}
    for key in DEFAULTS:
        given = getattr(args, key)
        if given is not None and str(given) != str(settings[key]):
            raise NasError(f"--{key} {given}: the table {table.path} was measured with {key} {settings[key]}; "
                           "its prediction holds for that setting only")
    parts = latency_breakdown(table, spec, measure_missing=args.measure_missing)
    predicted = table.scale * sum(seconds for _, seconds in parts)
    if args.breakdown:
        print_table([{"part": index, "key": key, "ms": round(seconds * 1e3, 3)}
                     for index, (key, seconds) in enumerate(parts)])
    calibration = (f"their sum x {table.scale:.3f}, calibrated on {len(table.calibration.networks)} whole networks"
                   if table.calibration is not None else "their sum, uncalibrated")
    print(f"{spec.name or 'spec'} {spec.resolution}x{spec.resolution}: predicted {predicted * 1e3:.2f} ms "
          f"({len(parts)} parts of {table.path}, {calibration}; measured on {setup.describe()})")
    if args.no_measure:
        return 0
    here = current_setup(setup.device, threads=setup.threads, batch=setup.batch, runs=setup.runs,
                         warmup=setup.warmup)
    if here.machine != setup.machine or here.torch != setup.torch:
        print(f"note: the table is from {setup.machine}, torch {setup.torch}; this is {here.machine}, "
              f"torch {here.torch}")
    measured = _print_measured(spec, settings)
    print(f"prediction error {(predicted - measured) / measured:+.1%} of the measured median")
    return 0


def _print_measured(spec: Spec, settings: dict) -> float:
    result = measure_latency(spec, backend=settings["backend"], threads=settings["threads"], batch=settings["batch"],
                             runs=settings["runs"], warmup=settings["warmup"], device=settings["device"])
    print(f"{spec.name or 'spec'} {spec.resolution}x{spec.resolution} batch {result.batch}, "
          f"{result.threads} thread(s), {result.backend} on {settings['device']}: mean {result.mean_s * 1e3:.2f} ms, "
          f"median {result.median_s * 1e3:.2f} ms over {result.runs} runs")
    return result.median_s
