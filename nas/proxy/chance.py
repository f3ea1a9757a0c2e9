"""Whether a run's accuracy left chance: the rule the search's summary and the scaling grid share (no torch)."""

from __future__ import annotations

# A run trained only when its validation accuracy is above this multiple of chance (1 / classes): below it, a
# ranking of runs is a ranking of noise.
CHANCE_MULTIPLE = 2.0


def near_chance(accuracy: float, num_classes: int) -> bool:
    """Whether `accuracy` is at most CHANCE_MULTIPLE x chance (1 / `num_classes`)."""
    return not accuracy > CHANCE_MULTIPLE / num_classes
