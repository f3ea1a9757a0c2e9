"""Step 2 of compound scaling: from (alpha, beta, gamma) and a base, the family of networks for growing phi.

Member phi has depth alpha^phi, width beta^phi and resolution gamma^phi times the base's. Rounding is the
foundation's (`nas.compound.scale`): channels to a multiple of 8 never losing more than 10%, repeats up
(ceil), resolution to the nearest pixel. Dropout rises as in the paper, 0.2 for B0/B1 up to 0.5 for B6/B7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nas.arch.cost import count_flops, count_params
from nas.arch.efficientnet import FAMILY
from nas.arch.spec import Spec
from nas.errors import NasError
from scaling.grid import DEFAULT_DEPTH_ROUNDING, check_depth_rounding, scale_point

PHIS = tuple(range(1, 8))
DROPOUT_START, DROPOUT_STEP, DROPOUT_MAX = 0.2, 0.1, 0.5
# Upper end of the phi search for a FLOPs budget: 2^20 times the base's FLOPs is beyond any real budget.
MAX_PHI = 20.0
PHI_PRECISION = 1e-4


@dataclass(frozen=True)
class Member:
    """One network of the family with the multipliers that made it (relative to the base)."""

    name: str
    phi: float
    depth: float
    width: float
    resolution: float
    spec: Spec

    def row(self, base_flops: int) -> dict[str, object]:
        """The member's line of family.csv."""
        flops = count_flops(self.spec)
        return {
            "name": self.name,
            "phi": round(float(self.phi), 4),
            "depth": round(self.depth, 4),
            "width": round(self.width, 4),
            "resolution_multiplier": round(self.resolution, 4),
            "resolution": self.spec.resolution,
            "dropout": self.spec.dropout,
            "params": count_params(self.spec),
            "flops": flops,
            "flops_ratio": round(flops / base_flops, 4),
            "two_pow_phi": round(2.0**self.phi, 4),
        }


def paper_dropout(phi: float) -> float:
    """The paper's dropout for B<phi>: 0.2 (B0, B1), 0.3 (B2, B3), 0.4 (B4, B5), 0.5 (B6, B7 and beyond)."""
    return min(DROPOUT_MAX, round(DROPOUT_START + DROPOUT_STEP * math.floor(phi / 2 + 1e-9), 6))


def _member(
    base: Spec, name: str, phi: float, coefficients: tuple[float, float, float], depth_rounding: str
) -> Member:
    alpha, beta, gamma = coefficients
    depth, width, resolution = alpha**phi, beta**phi, gamma**phi
    spec = scale_point(base, depth, width, resolution, depth_rounding)
    spec = spec.replace(dropout=paper_dropout(phi), name=name)
    return Member(name, phi, depth, width, resolution, spec)


def check_coefficients(alpha: float, beta: float, gamma: float) -> None:
    """Raise NasError unless each coefficient is a number >= 1 (scaling never shrinks a dimension)."""
    for field, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1.0:
            raise NasError(f"invalid --{field} {value!r}: expected a number >= 1")


def _base_member(base: Spec) -> Member:
    return Member("b0", 0.0, 1.0, 1.0, 1.0, base.replace(name="b0"))


def compound_family(
    base: Spec, alpha: float, beta: float, gamma: float, depth_rounding: str = DEFAULT_DEPTH_ROUNDING, phis=PHIS
) -> list[Member]:
    """The base (phi 0, named b0) and one member per phi, named b<phi>.

    A member past the spec's limits (more than 64 blocks in a stage, more than 4096 pixels: alpha = 2
    reaches 128 blocks at phi = 7) is left out; the caller sees which phis are missing.
    """
    check_coefficients(alpha, beta, gamma)
    check_depth_rounding(depth_rounding)
    members = [_base_member(base)]
    for phi in phis:
        try:
            members.append(_member(base, f"b{phi:g}", phi, (alpha, beta, gamma), depth_rounding))
        except NasError:  # the spec's own validation: this member is past its limits
            continue
    return members


def published_family(base: Spec) -> list[Member]:
    """The published B0-B7 multipliers applied to the base; from B0 itself these are exactly B0-B7.

    The published resolutions are absolute (240, 260, ... 600 for a 224 base); for another base they are
    taken relative to 224, so a 112-pixel base gets 120, 130, ... 300.
    """
    b0_resolution = FAMILY[0].resolution
    members = []
    for phi, published in enumerate(FAMILY):
        resolution = published.resolution / b0_resolution
        spec = scale_point(base, published.depth, published.width, 1.0, "ceil")  # the reference rounding
        spec = spec.replace(
            resolution=round(base.resolution * resolution), dropout=published.dropout, name=f"b{phi}"
        )
        members.append(Member(f"b{phi}", float(phi), published.depth, published.width, resolution, spec))
    return members


def largest_phi_within(
    base: Spec, alpha: float, beta: float, gamma: float, budget: float, depth_rounding: str = DEFAULT_DEPTH_ROUNDING
) -> float:
    """The largest phi (to PHI_PRECISION) whose rounded network's FLOPs fit `budget`.

    Rounding makes FLOPs a non-decreasing step function of phi, so bisection finds the last step that fits.
    """
    check_coefficients(alpha, beta, gamma)
    base_flops = count_flops(base)
    if budget < base_flops:
        raise NasError(f"FLOPs budget {budget:.4g} is below the base network's {base_flops:.4g} FLOPs")
    if alpha * beta * gamma == 1.0:
        raise NasError("alpha = beta = gamma = 1 never grows the network: no phi is defined by a budget")

    def fits(phi: float) -> bool:
        try:
            spec = scale_point(base, alpha**phi, beta**phi, gamma**phi, depth_rounding)
        except NasError:  # past the spec's limits (64 repeats, 4096 pixels): no network, so nothing fits
            return False
        return count_flops(spec) <= budget

    low, high = 0.0, 1.0
    while fits(high):
        if high >= MAX_PHI:
            raise NasError(f"FLOPs budget {budget:.4g} exceeds what phi <= {MAX_PHI:g} reaches")
        low, high = high, high * 2
    while high - low > PHI_PRECISION:
        middle = (low + high) / 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def budget_family(
    base: Spec, alpha: float, beta: float, gamma: float, budgets: list[float], depth_rounding: str = DEFAULT_DEPTH_ROUNDING
) -> list[Member]:
    """The base and, per FLOPs budget, the member at the largest phi that fits it (named after the budget)."""
    members = [_base_member(base)]
    for budget in sorted(budgets):
        phi = largest_phi_within(base, alpha, beta, gamma, budget, depth_rounding)
        name = f"budget_{budget / 1e9:g}G" if budget >= 1e9 else f"budget_{budget / 1e6:g}M"
        members.append(_member(base, name, phi, (alpha, beta, gamma), depth_rounding))
    return members
