"""Analytic cost model vs fvcore on B0-B7: counts, agreement and speed ratio, measured in one run.

    .venv/bin/python bench/bench_cost.py [--repeats N]

Target (issue 3): the analytic FLOPs count at least 1000x faster than fvcore's FlopCountAnalysis.
The fvcore time covers what a user pays for a count: building the module and tracing it.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from fvcore.nn import FlopCountAnalysis

from nas.arch.cost import count_flops, count_params
from nas.arch.efficientnet import FAMILY_NAMES, efficientnet
from nas.model.builder import build_model


def time_analytic(spec, repeats: int) -> tuple[int, int, float]:
    start = time.perf_counter()
    for _ in range(repeats):
        flops = count_flops(spec)
    params = count_params(spec)
    return flops, params, (time.perf_counter() - start) / repeats


def time_fvcore(spec) -> tuple[int, float]:
    start = time.perf_counter()
    model = build_model(spec).eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, 3, spec.resolution, spec.resolution))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    flops = int(analysis.total())
    return flops, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="analytic repetitions to average")
    args = parser.parse_args()
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    torch.set_num_threads(2)
    print(f"{'model':<16}{'params':>12}{'analytic':>16}{'fvcore':>16}{'diff':>9}"
          f"{'t_analytic':>12}{'t_fvcore':>10}{'speedup':>10}")
    ratios = []
    for name in FAMILY_NAMES:
        spec = efficientnet(name)
        flops, params, t_analytic = time_analytic(spec, args.repeats)
        fv_flops, t_fvcore = time_fvcore(spec)
        ratios.append(t_fvcore / t_analytic)
        print(f"{name:<16}{params:>12,}{flops:>16,}{fv_flops:>16,}{(flops - fv_flops) / fv_flops:>9.2%}"
              f"{t_analytic * 1e3:>10.3f}ms{t_fvcore:>9.2f}s{ratios[-1]:>9,.0f}x")
    print(f"min speedup {min(ratios):,.0f}x (target >= 1000x)")


if __name__ == "__main__":
    main()
