"""BatchNorm statistics recomputed from data: what a network extracted from a supernet (whose training never
tracks them, since they would mix architectures) or a freshly initialised placeholder needs before it is run
in eval mode."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Set every BatchNorm's running mean and variance to their exact averages over `batches`.

    Only the BN layers run in training mode (dropout and stochastic depth stay off), each with a cumulative
    average (momentum None), so the statistics do not depend on the order of the batches. Returns the
    model in eval mode with the BN momenta it had.
    """
    model.eval()
    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in batchnorms]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    for batch in batches:
        model(batch)
    for bn, momentum in zip(batchnorms, momenta):
        bn.momentum = momentum
    return model.eval()
