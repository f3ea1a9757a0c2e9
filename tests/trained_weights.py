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


class Block(nn.Module):
    """A conv block shaped like nas.model.builder.ConvBN but defined here: folding relies only on .conv/.bn/.act."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def toy_network() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(Block(3, 16, 3, 2), Block(16, 16, 3, groups=16), Block(16, 24, 1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(24, 10))
    randomize_batchnorm(net)
    return net.eval()
