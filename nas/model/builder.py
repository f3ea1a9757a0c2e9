"""The model builder: turns a `Spec` into a plain `torch.nn.Module`.

The geometry of every block comes from `nas.layout.block_layout`, the same list the cost model counts,
so this file only decides which torch modules realise each piece.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.layout import BlockLayout, block_layout
from nas.arch.spec import Spec
from nas.errors import NasError

# The TF reference's BN settings, in PyTorch's convention (momentum 0.01 == TF decay 0.99).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
STEM_KERNEL, STEM_STRIDE = 3, 2


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm -> optional SiLU: the unit every block is made of."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act: nn.Module = nn.SiLU(inplace=True) if act else nn.Identity()
        self.crop_taps_in_training = False  # a speed-up the trainer switches on (skip_unreachable_taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.crop_taps_in_training and self.training:
            return self._train_forward_on_reachable_taps(x)
        return self.act(self.bn(self.conv(x)))

    @torch.jit.unused  # a training path: the scripted inference form (export, latency) leaves it out
    def _train_forward_on_reachable_taps(self, x):  # no annotations: TorchScript cannot resolve postponed ones here
        return self.act(self.bn(conv_on_reachable_taps(self.conv, x)))


def conv_on_reachable_taps(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` for a conv padded by kernel // 2, computed with only the kernel taps that can reach `x`.

    A tap more than H - 1 rows (W - 1 columns) from the kernel's centre only ever multiplies padding. At the
    proxy's resolutions the last stages run on 1x1 and 2x2 maps, where oneDNN still computes all 25 taps of a
    5x5 kernel, backward too. The cropped kernel gives the same output, and the same weight gradient: zero for
    the taps left out. `bench/bench_train_speed.py` measures the training speed with it.
    """
    kh, kw = conv.kernel_size
    crop_h, crop_w = max(0, kh // 2 - x.shape[-2] + 1), max(0, kw // 2 - x.shape[-1] + 1)
    if crop_h == 0 and crop_w == 0:
        return conv(x)
    weight = conv.weight[:, :, crop_h:kh - crop_h, crop_w:kw - crop_w]
    return F.conv2d(x, weight, conv.bias, conv.stride, (kh // 2 - crop_h, kw // 2 - crop_w), conv.dilation,
                    conv.groups)


def skip_unreachable_taps(model: nn.Module) -> nn.Module:
    """Switch every `ConvBN` of `model` to `conv_on_reachable_taps` while training; eval is unchanged."""
    for module in model.modules():
        if isinstance(module, ConvBN):
            module.crop_taps_in_training = True
    return model


class SqueezeExcite(nn.Module):
    """Channel gating: global pool -> 1x1 reduce -> SiLU -> 1x1 expand -> sigmoid -> scale."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1, bias=True)
        self.act = nn.SiLU(inplace=True)
        self.expand = nn.Conv2d(squeeze, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = self.expand(self.act(self.reduce(gate)))
        return x * gate.sigmoid()


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample while training; identity at eval."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0], 1, 1, 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


class Block(nn.Module):
    """An MBConv, depthwise-separable or regular-conv block, as laid out by `BlockLayout`."""

    def __init__(self, layout: BlockLayout):
        super().__init__()
        cin, mid, cout, k, s = (layout.in_channels, layout.mid_channels, layout.out_channels,
                                layout.kernel, layout.stride)
        self.expand: nn.Module = ConvBN(cin, mid, 1) if layout.has_expansion else nn.Identity()
        if layout.block == "conv":
            self.conv: nn.Module = ConvBN(cin, cout, k, s)
        else:
            self.conv = ConvBN(mid, mid, k, s, groups=mid)
        self.se: nn.Module = SqueezeExcite(mid, layout.se_channels) if layout.se_channels else nn.Identity()
        self.project: nn.Module = nn.Identity() if layout.block == "conv" else ConvBN(mid, cout, 1, act=False)
        self.residual = layout.residual
        self.drop_path = DropPath(layout.drop_path_rate) if layout.residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.conv(self.expand(x))))
        if self.residual:
            out = self.drop_path(out) + x
        return out


class EfficientNet(nn.Module):
    """Stem, blocks, head conv, global pool, dropout and classifier, built from a spec."""

    def __init__(self, spec: Spec):
        super().__init__()
        layout = block_layout(spec)
        self.stem = ConvBN(spec.in_channels, spec.stem_channels, STEM_KERNEL, STEM_STRIDE)
        self.blocks = nn.Sequential(*(Block(block) for block in layout))
        self.head = ConvBN(layout[-1].out_channels, spec.head_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(spec.head_channels, spec.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.forward_features(x)).flatten(1)
        return self.classifier(self.dropout(x))


def init_weights(model: nn.Module) -> None:
    """The TF reference initialisation: He-normal on fan-out for convs, uniform(1/sqrt(out)) for the classifier."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.out_features)
            nn.init.uniform_(module.weight, -bound, bound)
            nn.init.zeros_(module.bias)


INIT_SCHEMES = ("reference", "fan_in")


def build_model(spec: Spec, init: str = "reference") -> EfficientNet:
    """A freshly initialised network for the spec.

    `init="reference"` is the TF reference initialisation (the deployed network's). `init="fan_in"` keeps
    PyTorch's fan-in defaults: weights about 5x smaller under BN, so a proxy run of a few hundred steps
    learns faster (`bench/bench_proxy_recipe.py` prints both).
    """
    if init not in INIT_SCHEMES:
        raise NasError(f"unknown init scheme {init!r}: expected one of {', '.join(INIT_SCHEMES)}")
    model = EfficientNet(spec)
    if init == "reference":
        init_weights(model)
    return model


def model_from_state(spec: Spec, state_dict: dict[str, torch.Tensor]) -> EfficientNet:
    """The network for `spec` holding exactly `state_dict` (every key and shape must fit), without spending
    time on an initialisation the weights replace: the modules are made on the meta device, then take the
    tensors as their own. RuntimeError (from load_state_dict) when the weights do not fit."""
    with torch.device("meta"):
        model = EfficientNet(spec)
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model
