"""The inference form of a network: batch norm folded into the preceding conv, channels-last layout,
compiled to a frozen TorchScript module.

Eval-mode batch norm is an affine map per channel, so it can be absorbed into the conv before it
(w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta). Drop-path and dropout
are already identities in eval mode, so folding leaves only convs, activations, SE and the classifier.
Channels-last is the layout oneDNN's CPU convolutions (depthwise above all) run fastest in. Freezing the
scripted module inlines weights and removes the Python call overhead of ~300 small modules per forward.
`bench/bench_latency.py` times each form against the eager network.
"""

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of `model` with every `.conv`/`.bn` pair folded into one biased conv.

    Works on any module tree whose conv blocks hold `.conv` (nn.Conv2d) and `.bn` (nn.BatchNorm2d),
    e.g. `nas.model.builder.ConvBN`; the folded block keeps its activation and its `.bn` becomes an identity.
    The input model is left untouched.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(conv, bn)
            module.bn = nn.Identity()
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return folded


class ChannelsLast(nn.Module):
    """Runs the wrapped network on a channels-last copy of its NCHW input (same results, faster convs)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))


def inference_model(model: nn.Module) -> nn.Module:
    """The network as deployed: batch norm folded, channels-last, eval mode, no gradients.

    Numerically equal to `model.eval()` up to float rounding (tested within 1e-4 max abs).
    """
    return ChannelsLast(fold_batchnorm(model)).eval()


def frozen_inference_model(model: nn.Module) -> torch.jit.ScriptModule:
    """The inference form scripted and frozen: what `nas export` writes as TorchScript and `folded` latency times."""
    with torch.no_grad():
        return torch.jit.freeze(torch.jit.script(inference_model(model)))
