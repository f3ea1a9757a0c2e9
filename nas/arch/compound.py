"""Compound-scaling rules: pure functions on the spec (width, depth, resolution multipliers)."""

from __future__ import annotations

import dataclasses
import math

from nas.arch.spec import Spec
from nas.errors import NasError

CHANNEL_DIVISOR = 8
# 'ceil' is the reference's repeat rounding (it reproduces the published B1-B7); 'round' (to nearest, at least
# one block) keeps derived families closer to 2^phi, since ceil doubles one-block stages at small depth gains.
DEPTH_ROUNDINGS = ("ceil", "round")


def round_channels(channels: int, width: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Scale a channel count by `width` and round to a multiple of `divisor`, never losing more than 10%.

    A width of exactly 1 leaves the count alone, so scaling by (1, 1, 1) is the identity on any spec.
    """
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return rounded


def round_repeats(repeats: int, depth: float, rounding: str = "ceil") -> int:
    """Scale a stage's block count by `depth`, rounding up (ceil) as the reference does, or to nearest."""
    if rounding not in DEPTH_ROUNDINGS:
        raise NasError(f"invalid depth rounding {rounding!r}: expected one of {', '.join(DEPTH_ROUNDINGS)}")
    # Round away float noise first so that e.g. 1.1 * 10 does not ceil to 12.
    scaled = round(repeats * depth, 6)
    return int(math.ceil(scaled)) if rounding == "ceil" else max(1, int(math.floor(scaled + 0.5)))


def round_resolution(resolution: int, multiplier: float) -> int:
    """Scale the input resolution, to the nearest whole pixel."""
    return int(round(resolution * multiplier))


def scale(spec: Spec, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0,
          depth_rounding: str = "ceil") -> Spec:
    """Apply compound-scaling multipliers: width to stem, stage and head channels, depth to stage repeats
    (rounded by `depth_rounding`), resolution to the input size. Each multiplier must be positive."""
    for name, value in (("width", width), ("depth", depth), ("resolution", resolution)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise NasError(f"invalid scaling multiplier '{name}': got {value!r}, expected a positive number")
    stages = tuple(
        dataclasses.replace(
            stage,
            repeats=round_repeats(stage.repeats, depth, depth_rounding),
            out_channels=round_channels(stage.out_channels, width),
        )
        for stage in spec.stages
    )
    return spec.replace(
        stages=stages,
        stem_channels=round_channels(spec.stem_channels, width),
        head_channels=round_channels(spec.head_channels, width),
        resolution=round_resolution(spec.resolution, resolution),
    )
