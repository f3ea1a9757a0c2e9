"""Exponential moving average of a model's weights, the copy the reference evaluates."""

from __future__ import annotations

import copy

import torch
from torch import nn

# The reference averages with decay 0.9999 per step over 350 epochs of ImageNet at batch 4096
# (1,281,167 / 4096 * 350 ~= 109,476 steps): its memory, 1 / (1 - decay) = 10,000 steps, is ~9% of training.
REFERENCE_DECAY = 0.9999
REFERENCE_STEPS = 1_281_167 / 4096 * 350


def compressed_decay(total_steps: int, reference_decay: float = REFERENCE_DECAY) -> float:
    """Decay whose averaging window is the same fraction of a `total_steps` run as the reference's."""
    window = (1.0 / (1.0 - reference_decay)) / REFERENCE_STEPS * total_steps
    return max(0.0, 1.0 - 1.0 / max(window, 1.0))


class ModelEma:
    """EMA of parameters and float buffers (BN statistics); integer buffers are copied.

    Like TF's ExponentialMovingAverage with num_updates, the decay used at update n is
    min(decay, (1 + n) / (10 + n)), so early updates are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards `model`'s current weights."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        averaged, current = [], []
        for mine, theirs in zip(self.module.state_dict().values(), model.state_dict().values()):
            if mine.is_floating_point():
                averaged.append(mine)
                current.append(theirs)
            else:
                mine.copy_(theirs)
        torch._foreach_lerp_(averaged, current, 1.0 - decay)
