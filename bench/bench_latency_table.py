"""The per-part latency table against measured latency: how well the sum of table entries predicts a network.

Step `table` builds (or resumes) the table of the default space (MnasNet, 224 px, 1000 classes) plus the parts
of EfficientNet-B1..B3, which lie outside the space, on this CPU with one thread at batch 1, and records the
time it took (summed over resumed runs, in bench_build.json beside the table). Step `compare` samples
`--specs` networks from the space with a seeded random suggester, adds B0-B3, measures each one's folded
latency with the paper's protocol (batch 1, one thread, warm-up, median of the timed runs) and prints, against
the measurement: the prediction's Spearman rank correlation (target >= 0.95) and median absolute percentage
error (target <= 10%), FLOPs' Spearman, and the predictor's time per spec. Exit code 1 if a target is missed.
The table step also calibrates the table (`nas.latency.table.calibrate_table`: 10 whole networks of the space
drawn with the calibration's own seed, so none is among the compared ones); compare prints the error of the
raw sum beside the calibrated prediction's.
Run each step under the shared lock; the load average is printed before and after.

    PYTHONPATH=. .venv/bin/python bench/bench_latency_table.py --step table [--table runs/bench-latency]
    PYTHONPATH=. .venv/bin/python bench/bench_latency_table.py --step compare [--specs 30 --seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import pandas as pd

from nas.arch.cost import count_flops
from nas.arch.efficientnet import efficientnet
from nas.arch.space import RandomChoices, load_space, sample
from nas.latency.measure import time_networks
from nas.latency.predict import load_predictor
from nas.latency.table import (
    build_table,
    calibrate_on,
    current_setup,
    open_table,
    table_file,
    table_parts,
)

FAMILY = ("b0", "b1", "b2", "b3")
SPEARMAN_TARGET = 0.95
MAPE_TARGET = 0.10
BUILD_LOG = "bench_build.json"


def load_text() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def step_table(args: argparse.Namespace) -> int:
    in_space = len(table_parts("mnasnet"))
    parts = table_parts("mnasnet", [efficientnet(name) for name in FAMILY])
    table = open_table(args.table, current_setup(runs=args.runs, warmup=args.warmup))
    todo = len(table.missing(parts))
    print(f"{load_text()}; {len(parts)} parts ({in_space} of the space, {len(parts) - in_space} more for B1-B3), "
          f"{todo} to measure on {table.setup.describe()}", flush=True)
    log_path = table_file(args.table).parent / BUILD_LOG
    log = json.loads(log_path.read_text()) if log_path.exists() else {"seconds": 0.0, "parts": 0, "runs": 0}
    start = time.perf_counter()
    try:
        build_table(table, parts, progress=lambda done, total, key, s: (
            done % 100 == 0 and print(f"  {done}/{total} ({time.perf_counter() - start:.0f} s)", flush=True)))
    finally:
        took = time.perf_counter() - start
        log = {"seconds": log["seconds"] + took, "parts": len(table), "runs": log["runs"] + 1}
        log_path.write_text(json.dumps(log) + "\n")
    print(f"measured {todo} parts in {took:.1f} s ({took / max(todo, 1) * 1e3:.0f} ms a part); the table holds "
          f"{len(table)} parts, built in {log['seconds']:.1f} s over {log['runs']} run(s); {load_text()}")
    if table.calibration is None or args.recalibrate:
        start = time.perf_counter()
        calibration = calibrate_on(table, "mnasnet")
        print(f"calibrated on {len(calibration.networks)} whole networks of the space in "
              f"{time.perf_counter() - start:.1f} s: scale {calibration.scale:.3f}; {load_text()}")
    return 0


def spearman(a: pd.Series, b: pd.Series) -> float:
    """Spearman's rank correlation: Pearson's on the ranks (ties share their mean rank)."""
    return a.rank().corr(b.rank())


def step_compare(args: argparse.Namespace) -> int:
    space = load_space("mnasnet")
    predictor = load_predictor(args.table, space)
    setup = predictor.table.setup
    rng = random.Random(args.seed)
    specs = [efficientnet(name) for name in FAMILY]
    specs += [sample(space, RandomChoices(rng)).replace(name=f"sample{i}") for i in range(args.specs)]
    print(f"{load_text()}; {len(specs)} networks, {setup.backend}, batch {setup.batch}, {setup.threads} thread(s), "
          f"median of {args.runs} runs after {args.warmup} warm-up in {args.rounds} interleaved rounds; table "
          f"{predictor.table.path} ({len(predictor.table)} parts, {setup.describe()})", flush=True)
    start = time.perf_counter()
    times = time_networks(specs, backend=setup.backend, threads=setup.threads, batch=setup.batch, runs=args.runs,
                          warmup=args.warmup, rounds=args.rounds, device=setup.device)
    took = time.perf_counter() - start
    rows = []
    scale = predictor.table.scale
    for spec, latency in zip(specs, times):
        predicted, measured = predictor(spec), latency.median_s
        rows.append({"network": spec.name, "blocks": spec.num_blocks, "MFLOPs": count_flops(spec) / 1e6,
                     "predicted_ms": predicted * 1e3, "measured_ms": measured * 1e3,
                     "error": (predicted - measured) / measured,
                     "raw_error": (predicted / scale - measured) / measured})
        print(f"  {spec.name:<16}{spec.num_blocks:>4} blocks {rows[-1]['MFLOPs']:>8.0f} MFLOPs  predicted "
              f"{predicted * 1e3:7.2f} ms  measured {measured * 1e3:7.2f} ms  {rows[-1]['error']:+7.1%}")
    frame = pd.DataFrame(rows)
    sampled = frame[frame.network.str.startswith("sample")]
    many = [sample(space, RandomChoices(random.Random(args.seed + 1))) for _ in range(1000)]
    start_predict = time.perf_counter()
    for spec in many:
        predictor(spec)
    per_spec = (time.perf_counter() - start_predict) / len(many)

    ok = True
    print(f"\nmeasured in {took:.0f} s; {load_text()}")
    calibration = predictor.table.calibration
    print("calibration: " + (f"scale {scale:.3f} from {len(calibration.networks)} whole networks timed with the "
                             f"table (drawn with the calibration's own seed); uncalibrated median abs error "
                             f"{frame.raw_error.abs().median():.1%}, signed {frame.raw_error.median():+.1%}"
                             if calibration is not None else "none (the raw sum of the entries)"))
    for label, part in (("all", frame), (f"{len(sampled)} sampled", sampled)):
        rho = spearman(part.predicted_ms, part.measured_ms)
        mape = part.error.abs().median()
        print(f"{label + ':':<12} prediction Spearman {rho:.3f} (target >= {SPEARMAN_TARGET}), median abs error "
              f"{mape:.1%} (target <= {MAPE_TARGET:.0%}), median signed error {part.error.median():+.1%}; "
              f"FLOPs Spearman {spearman(part.MFLOPs, part.measured_ms):.3f}")
        if label == "all":
            ok = rho >= SPEARMAN_TARGET and mape <= MAPE_TARGET
    print(f"predictor: {per_spec * 1e6:.0f} us a spec (1000 sampled specs)")
    log_path = table_file(args.table).parent / BUILD_LOG
    if log_path.exists():
        log = json.loads(log_path.read_text())
        print(f"table: {log['parts']} parts built in {log['seconds']:.1f} s over {log['runs']} run(s)")
    print("targets " + ("met" if ok else "MISSED"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", choices=("table", "compare"), required=True)
    parser.add_argument("--table", default="runs/bench-latency", help="table file or folder")
    parser.add_argument("--specs", type=int, default=30, help="networks sampled from the space")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4, help="compare: interleaved rounds the runs are split over")
    parser.add_argument("--recalibrate", action="store_true", help="table: time the calibration networks again")
    args = parser.parse_args()
    return step_table(args) if args.step == "table" else step_compare(args)


if __name__ == "__main__":
    sys.exit(main())
