"""The reference learning-rate schedule, compressed to the length of a proxy run.

The reference trains 350 epochs: linear warmup over 5 epochs, then x0.97 every 2.4 epochs (staircase).
A proxy run of any length follows the same curve with every length scaled by proxy_steps / reference length,
so a short run still warms up and anneals to the same final learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REFERENCE_EPOCHS = 350.0


@dataclass(frozen=True)
class LrSchedule:
    """Linear warmup from 0 over `warmup_steps`, then base_lr * decay_rate ** floor(step / decay_steps)."""

    base_lr: float
    warmup_steps: int
    decay_steps: float
    decay_rate: float = 0.97

    def __call__(self, step: int) -> float:
        """Learning rate for optimizer step `step` (0-based), as the TF reference computes it."""
        if step < self.warmup_steps:
            return self.base_lr * step / self.warmup_steps
        return self.base_lr * self.decay_rate ** math.floor(step / self.decay_steps)


def compressed_schedule(base_lr: float, total_steps: int, *, warmup_epochs: float = 5.0,
                        decay_epochs: float = 2.4, decay_rate: float = 0.97,
                        reference_epochs: float = REFERENCE_EPOCHS) -> LrSchedule:
    """The reference schedule (lengths in reference epochs) squeezed into `total_steps` optimizer steps."""
    steps_per_reference_epoch = total_steps / reference_epochs
    return LrSchedule(base_lr=base_lr,
                      warmup_steps=int(warmup_epochs * steps_per_reference_epoch),
                      decay_steps=max(decay_epochs * steps_per_reference_epoch, 1e-9),
                      decay_rate=decay_rate)
