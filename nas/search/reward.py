"""The search's selection reward: MnasNet's ACC(m) x [COST(m) / T]^w, COST the FLOPs or the predicted latency.

MnasNet's original form uses the latency (ACC x (LAT / T)^w); EfficientNet's search uses FLOPs. The soft
variant (EfficientNet's choice) uses the same exponent w = -0.07 below and above the target T; the hard
variant uses w = 0 below T (no bonus for being small) and w = -1 above it (a steep penalty).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nas.errors import NasError
from nas.search.cost import FLOPS, CostKind

DEFAULT_TARGET_FLOPS = 400_000_000
DEFAULT_WEIGHT = -0.07
HARD_BELOW, HARD_ABOVE = 0.0, -1.0


@dataclass(frozen=True)
class Reward:
    """Reward settings: the target (of `quantity`: FLOPs, or seconds of latency), the exponents below and above it."""

    target: float = DEFAULT_TARGET_FLOPS
    weight_below: float = DEFAULT_WEIGHT
    weight_above: float = DEFAULT_WEIGHT
    quantity: CostKind = FLOPS

    def __post_init__(self) -> None:
        if isinstance(self.target, bool) or not isinstance(self.target, (int, float)) \
                or not self.target > 0 or not math.isfinite(self.target):
            raise NasError(f"target {self.quantity.name} must be a positive number, got {self.target!r}")
        for name in ("weight_below", "weight_above"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise NasError(f"reward {name} must be a finite number, got {value!r}")

    @classmethod
    def soft(cls, target: float = DEFAULT_TARGET_FLOPS, weight: float = DEFAULT_WEIGHT,
             quantity: CostKind = FLOPS) -> Reward:
        return cls(target, weight, weight, quantity)

    @classmethod
    def hard(cls, target: float = DEFAULT_TARGET_FLOPS, quantity: CostKind = FLOPS) -> Reward:
        return cls(target, HARD_BELOW, HARD_ABOVE, quantity)

    @property
    def kind(self) -> str:
        """'soft', 'hard' or 'custom': which exponents."""
        if (self.weight_below, self.weight_above) == (HARD_BELOW, HARD_ABOVE):
            return "hard"
        return "soft" if self.weight_below == self.weight_above else "custom"

    def __call__(self, accuracy: float, cost: float) -> float:
        """ACC x (COST / T)^w, with w chosen by which side of the target the cost falls."""
        if cost <= 0:
            raise NasError(f"{self.quantity.name} must be positive, got {cost!r}")
        weight = self.weight_below if cost <= self.target else self.weight_above
        return accuracy * (cost / self.target) ** weight

    def describe(self) -> str:
        term = f"ACC x ({self.quantity.name} / {self.quantity.plain(self.target)})"
        if self.kind == "soft":
            return f"{term}^{self.weight_below:g}"
        return f"{term}^w, w = {self.weight_below:g} below the target, {self.weight_above:g} above"


def make_reward(target: float = DEFAULT_TARGET_FLOPS, reward_weight: float = DEFAULT_WEIGHT,
                hard_reward: bool = False, quantity: CostKind = FLOPS) -> Reward:
    """The reward a search's settings name: soft with `reward_weight`, or the hard variant; `target` is of
    `quantity` (FLOPs, or seconds of predicted latency) and kept as given (a latency target is a fraction)."""
    if hard_reward:
        return Reward.hard(target, quantity)
    return Reward.soft(target, reward_weight, quantity)
