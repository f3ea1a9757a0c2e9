"""The family derived from B0 with the paper's alpha = 1.2, beta = 1.1, gamma = 1.15: actual FLOPs ratio to B0
after rounding, for phi = 1..7, next to 2^phi and (alpha * beta^2 * gamma^2)^phi.

    .venv/bin/python bench/bench_scaling_family.py [--alpha 1.2 --beta 1.1 --gamma 1.15]

Target (issue 6): each actual ratio within 25% of 2^phi. Printed for both repeat roundings: 'ceil' (the
reference's, the default) and 'round' (to nearest).
"""

from __future__ import annotations

import argparse

from nas._common.tables import print_table
from nas.arch.cost import count_flops
from nas.arch.efficientnet import efficientnet
from scaling.family import compound_family
from scaling.grid import DEPTH_ROUNDINGS

TOLERANCE = 0.25


def table(alpha: float, beta: float, gamma: float, depth_rounding: str) -> list[dict[str, object]]:
    members = compound_family(efficientnet("b0"), alpha, beta, gamma, depth_rounding)
    base_flops = count_flops(members[0].spec)
    product = alpha * beta**2 * gamma**2
    rows = []
    for member in members[1:]:
        ratio = count_flops(member.spec) / base_flops
        rows.append({
            "phi": int(member.phi),
            "repeats": "/".join(str(stage.repeats) for stage in member.spec.stages),
            "resolution": member.spec.resolution,
            "flops": count_flops(member.spec),
            "actual_ratio": round(ratio, 3),
            "2^phi": 2 ** int(member.phi),
            "product^phi": round(product**member.phi, 3),
            "off_2^phi": f"{ratio / 2**member.phi - 1:+.1%}",
            "within_25%": abs(ratio / 2**member.phi - 1) <= TOLERANCE,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=1.2)
    parser.add_argument("--beta", type=float, default=1.1)
    parser.add_argument("--gamma", type=float, default=1.15)
    args = parser.parse_args()
    for rounding in DEPTH_ROUNDINGS:
        print(f"\nalpha={args.alpha} beta={args.beta} gamma={args.gamma} from B0, repeats rounded by {rounding}:")
        print_table(table(args.alpha, args.beta, args.gamma, rounding))


if __name__ == "__main__":
    main()
