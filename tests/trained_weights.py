"""Weights that look trained: fresh BN is an identity and a fresh classifier's outputs are tiny, which would
let a wrong fold or export pass a max-abs check. These give every tensor non-trivial values."""

import torch
from torch import nn


def randomize_batchnorm(net: nn.Module, seed: int = 1) -> None:
    """Non-trivial running statistics and affine parameters on every BatchNorm2d."""
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
            module.num_batches_tracked.fill_(1234)


def trained_like(net: nn.Module, seed: int = 1) -> nn.Module:
    """`net` in eval mode with randomized BN and a classifier scaled up so logits are of order one."""
    randomize_batchnorm(net, seed)
    classifier = getattr(net, "classifier", None)
    if isinstance(classifier, nn.Linear):
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            classifier.weight.copy_(torch.randn(classifier.weight.shape, generator=generator) * 0.5)
            classifier.bias.copy_(torch.randn(classifier.bias.shape, generator=generator))
    return net.eval()
