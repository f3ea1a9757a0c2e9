"""Step 1 of compound scaling: the (alpha, beta, gamma) grid at phi = 1 and its FLOPs constraint.

A grid point scales the base by depth alpha, width beta and resolution gamma. Nominally FLOPs grow by
alpha * beta^2 * gamma^2; the network actually built rounds channels to multiples of 8, repeats up and the
resolution to a whole pixel, so its real FLOPs ratio (from the cost model) differs. Both are reported, and
either can be the constraint that keeps a point.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from nas.arch.compound import DEPTH_ROUNDINGS, scale
from nas.arch.cost import count_flops
from nas.arch.spec import Spec
from nas.errors import NasError

# The paper's ranges: alpha in [1, 2], beta and gamma in [1, 1.5], all >= 1 so no dimension shrinks.
ALPHA_RANGE = (1.0, 2.0)
BETA_GAMMA_RANGE = (1.0, 1.5)
TARGET_RATIO = 2.0
CONSTRAINTS = ("nominal", "actual")
# Derived families round repeats to nearest by default: the reference ceil puts B0 scaled by the paper's
# (1.2, 1.1, 1.15) well over 2x FLOPs for phi = 1, because one-block stages double (bench_scaling_family.py).
DEFAULT_DEPTH_ROUNDING = "round"


@dataclass(frozen=True)
class GridPoint:
    """One (alpha, beta, gamma) candidate with its nominal and actual (after rounding) FLOPs ratio."""

    alpha: float
    beta: float
    gamma: float
    flops_ratio: float

    @property
    def product(self) -> float:
        """alpha * beta^2 * gamma^2: the FLOPs ratio before any rounding."""
        return self.alpha * self.beta**2 * self.gamma**2

    @property
    def label(self) -> str:
        """A stable text key for the point (the value of the study's grid parameter)."""
        return f"a{self.alpha:.4g}_b{self.beta:.4g}_g{self.gamma:.4g}"


def axis_values(low: float, high: float, step: float) -> list[float]:
    """low, low + step, ... up to high inclusive, without float drift (1.0 + 3 * 0.1 is 1.3, not 1.30000004)."""
    count = int((high - low) / step + 1e-9)
    return [round(low + i * step, 9) for i in range(count + 1)]


def check_depth_rounding(depth_rounding: str) -> None:
    if depth_rounding not in DEPTH_ROUNDINGS:
        raise NasError(f"invalid --depth-rounding {depth_rounding!r}: expected one of {', '.join(DEPTH_ROUNDINGS)}")


def scale_point(base: Spec, alpha: float, beta: float, gamma: float, depth_rounding: str = DEFAULT_DEPTH_ROUNDING) -> Spec:
    """The base scaled by depth alpha, width beta and resolution gamma with the foundation's rounding
    (`nas.compound.scale`); depth_rounding 'round' rounds each stage's repeats to nearest instead of up."""
    check_depth_rounding(depth_rounding)
    return scale(base, width=beta, depth=alpha, resolution=gamma, depth_rounding=depth_rounding)


def flops_ratio(base: Spec, alpha: float, beta: float, gamma: float, depth_rounding: str = DEFAULT_DEPTH_ROUNDING) -> float:
    """FLOPs of the rounded, scaled network over the base's (both at their deployed resolution)."""
    return count_flops(scale_point(base, alpha, beta, gamma, depth_rounding)) / count_flops(base)


def check_grid_options(step: float, tolerance: float, constraint: str) -> None:
    """Raise NasError naming the first option that cannot make a grid."""
    if not (isinstance(step, (int, float)) and 0 < step <= 1):
        raise NasError(f"invalid --grid-step {step!r}: expected a number in (0, 1]")
    if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < TARGET_RATIO):
        raise NasError(f"invalid --tolerance {tolerance!r}: expected a number in [0, 2)")
    if constraint not in CONSTRAINTS:
        raise NasError(f"invalid --constraint {constraint!r}: expected one of {', '.join(CONSTRAINTS)}")


def grid_points(
    base: Spec, step: float, tolerance: float, constraint: str = "nominal", depth_rounding: str = DEFAULT_DEPTH_ROUNDING
) -> list[GridPoint]:
    """The grid at phi = 1 kept by the constraint: |alpha*beta^2*gamma^2 - 2| <= tolerance ('nominal', the
    paper's way) or |actual FLOPs ratio - 2| <= tolerance ('actual'). NasError if no point is kept."""
    check_grid_options(step, tolerance, constraint)
    alphas = axis_values(*ALPHA_RANGE, step)
    betas = axis_values(*BETA_GAMMA_RANGE, step)
    kept = []
    for alpha, beta, gamma in itertools.product(alphas, betas, betas):
        point = GridPoint(alpha, beta, gamma, flops_ratio(base, alpha, beta, gamma, depth_rounding))
        measure = point.product if constraint == "nominal" else point.flops_ratio
        # The epsilon keeps points exactly on the boundary (e.g. 1.9 with tolerance 0.1) despite float error.
        if abs(measure - TARGET_RATIO) <= tolerance + 1e-9:
            kept.append(point)
    if not kept:
        raise NasError(
            f"no grid point within --tolerance {tolerance:g} of a FLOPs ratio of 2 at --grid-step {step:g}"
            f" ({constraint} constraint): use a finer step or a larger tolerance"
        )
    return kept
