"""The cost model: parameters, FLOPs and peak activation memory computed from the spec alone.

FLOPs are multiply-adds counted the way fvcore's FlopCountAnalysis counts the eval-mode network at batch 1
(conv and linear MACs, 2 per element for an affine eval BatchNorm, 1 per input element for adaptive average
pooling; element-wise ops such as SiLU, sigmoid, the SE scale, the SE mean and residual adds are not counted).
The tests hold this against fvcore on the built model.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

from nas.arch.layout import BlockLayout, block_layout
from nas.arch.spec import Spec, conv_output_size

BYTES_PER_ELEMENT = 4  # float32


class Cost(NamedTuple):
    """Parameters and FLOPs of one part of the network (a plain tuple: the search counts many specs)."""

    params: int = 0
    flops: int = 0


def sum_costs(costs: Iterable[Cost]) -> Cost:
    """Add up the costs of several parts."""
    params = flops = 0
    for part in costs:
        params += part.params
        flops += part.flops
    return Cost(params, flops)


def _conv_bn(cin: int, cout: int, kernel: int, out_size: int, groups: int = 1) -> Cost:
    pixels = out_size * out_size
    weights = cout * (cin // groups) * kernel * kernel
    return Cost(params=weights + 2 * cout, flops=weights * pixels + 2 * cout * pixels)


def _squeeze_excite(channels: int, squeeze: int) -> Cost:
    # The SE mean is an aten::mean that fvcore does not count; the two 1x1 convs run on a 1x1 map.
    return Cost(params=2 * channels * squeeze + squeeze + channels, flops=2 * channels * squeeze)


def block_cost(block: BlockLayout) -> Cost:
    """Parameters and FLOPs of one block."""
    parts = []
    if block.has_expansion:
        parts.append(_conv_bn(block.in_channels, block.mid_channels, 1, block.in_size))
    if block.block == "conv":
        parts.append(_conv_bn(block.in_channels, block.out_channels, block.kernel, block.out_size))
    else:
        parts.append(_conv_bn(block.mid_channels, block.mid_channels, block.kernel, block.out_size,
                              groups=block.mid_channels))
    if block.se_channels:
        parts.append(_squeeze_excite(block.mid_channels, block.se_channels))
    if block.block != "conv":
        parts.append(_conv_bn(block.mid_channels, block.out_channels, 1, block.out_size))
    return sum_costs(parts)


def stem_cost(spec: Spec) -> Cost:
    return _conv_bn(spec.in_channels, spec.stem_channels, 3, conv_output_size(spec.resolution, 2))


def head_cost(spec: Spec, layout: list[BlockLayout]) -> Cost:
    """Head conv, global pool and classifier."""
    size = layout[-1].out_size
    conv = _conv_bn(layout[-1].out_channels, spec.head_channels, 1, size)
    pool = Cost(flops=spec.head_channels * size * size)
    linear = Cost(params=spec.head_channels * spec.num_classes + spec.num_classes,
                  flops=spec.head_channels * spec.num_classes)
    return sum_costs((conv, pool, linear))


def total_cost(spec: Spec) -> Cost:
    """Parameters and FLOPs of the whole network."""
    layout = block_layout(spec)
    return sum_costs([stem_cost(spec), head_cost(spec, layout), *map(block_cost, layout)])


def count_params(spec: Spec) -> int:
    """Trainable parameters of the built network (BN running statistics are buffers, not counted)."""
    return total_cost(spec).params


def count_flops(spec: Spec) -> int:
    """Multiply-adds of one eval-mode forward pass at batch 1, as fvcore counts them."""
    return total_cost(spec).flops


def _block_tensors(block: BlockLayout) -> list[int]:
    """Element counts of the tensors a block produces in order, starting with its input."""
    tensors = [block.in_channels * block.in_size**2]
    if block.has_expansion:
        tensors.append(block.mid_channels * block.in_size**2)
    tensors.append(block.mid_channels * block.out_size**2)  # kxk conv output (SE output has the same size)
    if block.block != "conv":
        tensors.append(block.out_channels * block.out_size**2)
    return tensors


def peak_activation_bytes(spec: Spec, batch_size: int = 1) -> int:
    """Peak float32 activation memory of an inference pass, from the spec alone.

    Model: while a layer runs, its input and output are alive, plus the block input when a residual add
    still needs it. The peak is the largest such sum over all layers. Weights are not included.
    """
    stem_out = spec.stem_channels * conv_output_size(spec.resolution, 2) ** 2
    peak = spec.in_channels * spec.resolution**2 + stem_out
    layout = block_layout(spec)
    for block in layout:
        tensors = _block_tensors(block)
        held = tensors[0] if block.residual else 0
        for step, (src, dst) in enumerate(zip(tensors, tensors[1:])):
            peak = max(peak, src + dst + (held if step > 0 else 0))
    last = layout[-1]
    peak = max(peak, (last.out_channels + spec.head_channels) * last.out_size**2)
    return peak * batch_size * BYTES_PER_ELEMENT
