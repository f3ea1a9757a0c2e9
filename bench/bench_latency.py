"""The paper's latency comparison on this machine, all measured in one run.

EfficientNet-B0..B3 on every backend -- eager; folded (BN folded, channels-last input, captured by torch.export);
onnxruntime -- next to a ResNet-50 and a ResNet-152 built here, with the paper's protocol: batch 1, one
thread, warm-up, then the mean and median of timed runs (split over interleaved rounds, see
nas.latency.compare_backends). Prints the ResNet-152 / B1 ratio (the paper: 0.554 s / 0.098 s = 5.7x on one
Xeon core) and checks the target: the folded B0 and B1 at least 1.25x faster than the eager network of the
same spec (exit code 1 if missed).

    PYTHONPATH=. .venv/bin/python bench/bench_latency.py [--runs 20] [--resnet-runs 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from resnet import resnet50, resnet152  # noqa: E402  (bench-local baseline models)

from nas.arch.efficientnet import efficientnet  # noqa: E402
from nas.latency.measure import BACKENDS, Latency, compare_backends  # noqa: E402
from nas.model.builder import build_model  # noqa: E402

EFFICIENTNETS = ("b0", "b1", "b2", "b3")
RESNET_PARAMS = {"resnet50": 25_557_032, "resnet152": 60_192_808}
FOLD_TARGET = 1.25
PAPER_RATIO = 5.7


def measure_all(model: torch.nn.Module, resolution: int, args: argparse.Namespace, runs: int) -> dict[str, Latency]:
    """All backends of one network, interleaved in rounds so load changes on a shared machine hit them alike."""
    return compare_backends(model, (3, resolution, resolution), BACKENDS, threads=args.threads, runs=runs,
                            warmup=args.warmup, rounds=min(runs, args.rounds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per EfficientNet and backend")
    parser.add_argument("--resnet-runs", type=int, default=10, help="timed runs per ResNet and backend")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the runs are split over")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"batch 1; {args.runs} runs per EfficientNet, {args.resnet_runs} per ResNet (after {args.warmup} warm-up)")

    results: dict[str, dict[str, Latency]] = {}
    rows = []
    for name in EFFICIENTNETS:
        spec = efficientnet(name)
        torch.manual_seed(0)
        model = build_model(spec).eval()
        results[name] = measure_all(model, spec.resolution, args, args.runs)
        rows.append((spec.name, spec.resolution, sum(p.numel() for p in model.parameters())))
    for name, build in (("resnet50", resnet50), ("resnet152", resnet152)):
        model = build().eval()
        params = sum(p.numel() for p in model.parameters())
        assert params == RESNET_PARAMS[name], f"{name} has {params} parameters"
        results[name] = measure_all(model, 224, args, args.resnet_runs)
        rows.append((name, 224, params))

    header = f"{'model':<16}{'res':>5}{'params':>12}" + "".join(f"{b + ' mean/med ms':>28}" for b in BACKENDS)
    print(header + f"{'folded speed-up':>17}")
    for (label, resolution, params), key in zip(rows, results):
        cells = "".join(f"{r.mean_s * 1e3:>18.1f} /{r.median_s * 1e3:>7.1f}" for r in results[key].values())
        speedup = results[key]["eager"].median_s / results[key]["folded"].median_s
        print(f"{label:<16}{resolution:>5}{params:>12,}{cells}{speedup:>16.2f}x")

    print(f"\nResNet-152 / EfficientNet-B1 latency (median; the paper reports {PAPER_RATIO}x):")
    for backend in BACKENDS:
        ratio = results["resnet152"][backend].median_s / results["b1"][backend].median_s
        print(f"  {backend:<12} {ratio:.1f}x")
    print(f"  ResNet-152 eager vs B1 onnxruntime: "
          f"{results['resnet152']['eager'].median_s / results['b1']['onnxruntime'].median_s:.1f}x")

    ok = True
    for name in ("b0", "b1"):
        speedup = results[name]["eager"].median_s / results[name]["folded"].median_s
        met = speedup >= FOLD_TARGET
        ok &= met
        print(f"target folded {name.upper()} >= {FOLD_TARGET}x eager: {speedup:.2f}x {'met' if met else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
