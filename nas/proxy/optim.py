"""RMSProp with TensorFlow semantics, as the EfficientNet reference trains with it.

PyTorch's `torch.optim.RMSprop` differs from TF's on three points the recipe depends on: TF puts epsilon
inside the square root, starts the square average at one (not zero), and folds the learning rate into the
momentum buffer (so a learning-rate change does not rescale the momentum already accumulated).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class RMSpropTF(torch.optim.Optimizer):
    """ms = rho*ms + (1-rho)*g^2 (ms starts at 1); mom = momentum*mom + lr*g/sqrt(ms+eps); p -= mom.

    `weight_decay` adds an L2 term to the gradient (g += weight_decay * p) before the update, which is the
    reference's L2 loss on the weights; use `weight_decay_groups` to restrict it to conv and linear weights.
    """

    def __init__(self, params: Iterable, lr: float = 0.016, rho: float = 0.9, momentum: float = 0.9,
                 eps: float = 1e-3, weight_decay: float = 0.0) -> None:
        if lr < 0 or not 0 <= rho < 1 or not 0 <= momentum < 1 or eps <= 0 or weight_decay < 0:
            raise ValueError(f"invalid RMSpropTF settings lr={lr} rho={rho} momentum={momentum} eps={eps} "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, rho=rho, momentum=momentum, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        """Apply one update to every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            squares, moms = [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                squares.append(state["square_avg"])
                moms.append(state["momentum_buffer"])
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            torch._foreach_mul_(squares, group["rho"])
            torch._foreach_addcmul_(squares, grads, grads, value=1.0 - group["rho"])
            denom = torch._foreach_add(squares, group["eps"])
            torch._foreach_sqrt_(denom)
            torch._foreach_mul_(moms, group["momentum"])
            torch._foreach_addcdiv_(moms, grads, denom, value=group["lr"])
            torch._foreach_sub_(params, moms)
        return loss


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: conv and linear weights get `weight_decay`; BN parameters and biases get none."""
    decayed = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]
