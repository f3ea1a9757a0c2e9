"""The search's selection reward: MnasNet's ACC(m) x [FLOPS(m) / T]^w.

The soft variant (EfficientNet's choice) uses the same exponent w = -0.07 below and above the target T;
the hard variant uses w = 0 below T (no bonus for being small) and w = -1 above it (a steep penalty).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nas.errors import NasError

DEFAULT_TARGET_FLOPS = 400_000_000
DEFAULT_WEIGHT = -0.07
HARD_BELOW, HARD_ABOVE = 0.0, -1.0


@dataclass(frozen=True)
class Reward:
    """Reward settings: the FLOPs target and the exponents used below and above it."""

    target_flops: int = DEFAULT_TARGET_FLOPS
    weight_below: float = DEFAULT_WEIGHT
    weight_above: float = DEFAULT_WEIGHT

    def __post_init__(self) -> None:
        if isinstance(self.target_flops, bool) or not isinstance(self.target_flops, (int, float)) \
                or not self.target_flops > 0 or not math.isfinite(self.target_flops):
            raise NasError(f"target FLOPs must be a positive number, got {self.target_flops!r}")
        for name in ("weight_below", "weight_above"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise NasError(f"reward {name} must be a finite number, got {value!r}")

    @classmethod
    def soft(cls, target_flops: int = DEFAULT_TARGET_FLOPS, weight: float = DEFAULT_WEIGHT) -> Reward:
        return cls(target_flops, weight, weight)

    @classmethod
    def hard(cls, target_flops: int = DEFAULT_TARGET_FLOPS) -> Reward:
        return cls(target_flops, HARD_BELOW, HARD_ABOVE)

    @property
    def kind(self) -> str:
        if (self.weight_below, self.weight_above) == (HARD_BELOW, HARD_ABOVE):
            return "hard"
        return "soft" if self.weight_below == self.weight_above else "custom"

    def __call__(self, accuracy: float, flops: float) -> float:
        """ACC x (FLOPS / T)^w, with w chosen by which side of the target the FLOPs fall."""
        if flops <= 0:
            raise NasError(f"FLOPs must be positive, got {flops!r}")
        weight = self.weight_below if flops <= self.target_flops else self.weight_above
        return accuracy * (flops / self.target_flops) ** weight

    def describe(self) -> str:
        if self.kind == "soft":
            return f"ACC x (FLOPs / {self.target_flops / 1e6:g}M)^{self.weight_below:g}"
        return (f"ACC x (FLOPs / {self.target_flops / 1e6:g}M)^w, w = {self.weight_below:g} below the target, "
                f"{self.weight_above:g} above")


def make_reward(target_flops: float = DEFAULT_TARGET_FLOPS, reward_weight: float = DEFAULT_WEIGHT,
                hard_reward: bool = False) -> Reward:
    """The reward a search's settings name: soft with `reward_weight`, or the hard variant."""
    if hard_reward:
        return Reward.hard(int(target_flops))
    return Reward.soft(int(target_flops), reward_weight)
