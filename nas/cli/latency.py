"""`nas latency`: the paper's protocol (batch 1, one thread, warm-up, then mean and median of 20 runs)."""

from __future__ import annotations

import argparse

from nas.arch.resolve import resolve_spec
from nas.latency.measure import BACKENDS, measure_latency


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("latency", help="inference latency of a network on this machine")
    parser.add_argument("model", help="name (b0..b7), spec .json or run folder")
    parser.add_argument("--backend", choices=BACKENDS, default="folded", help="network form to time (default folded)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1, as in the paper)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs (default 5)")
    parser.add_argument("--resolution", type=int, help="input resolution (default: the spec's)")
    parser.add_argument("--device", default="cpu", help="cpu (the paper's protocol, the default), auto, cuda, "
                                                        "cuda:N or mps")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = resolve_spec(args.model)
    if args.resolution is not None:
        spec = spec.replace(resolution=args.resolution)
    result = measure_latency(spec, backend=args.backend, threads=args.threads, batch=args.batch, runs=args.runs,
                             warmup=args.warmup, device=args.device)
    print(f"{spec.name or 'spec'} {spec.resolution}x{spec.resolution} batch {result.batch}, "
          f"{result.threads} thread(s), {result.backend}: mean {result.mean_s * 1e3:.2f} ms, "
          f"median {result.median_s * 1e3:.2f} ms over {result.runs} runs")
    return 0
