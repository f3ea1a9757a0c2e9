"""The parts a latency table times: a network's stem, each of its blocks and its head, named by a key.

A key holds everything that decides a part's module and input: for a block the op, kernel, stride, input,
expanded and output channels, SE width, input size and whether it adds a residual (all from the block layout
the builder uses); for the stem and the head their channels and input size. Two parts with one key build the
same modules on the same input, so a table entry stands for every block of every network that has that key.
Whether a block is the first of its stage needs no field of its own: it changes the block only through its
stride, input channels and residual, which the key holds. `spec_keys` is the fast path the predictor takes;
`spec_parts` and `space_parts` pair each key with what builds and feeds that part.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from nas.arch.layout import BlockLayout, block_layout
from nas.arch.space import CHOICE_KEYS, PARAM_SUFFIX, SearchSpace, decode
from nas.arch.spec import Spec
from nas.model.builder import STEM_KERNEL, STEM_STRIDE, Block, ConvBN, init_weights


class Part(NamedTuple):
    """One timed piece of a network: its key, its input shape (C, H, W) and a builder of its module."""

    key: str
    input_shape: tuple[int, int, int]
    make: Callable[[], nn.Module]
    channels_last_input: bool  # inside the folded network every part but the stem receives channels-last


def block_key(block: BlockLayout) -> str:
    """E.g. 'mbconv_k5_s2_i24_m144_o40_se6_56px' ('_res' at the end when it adds its input back)."""
    return (f"{block.block}_k{block.kernel}_s{block.stride}_i{block.in_channels}_m{block.mid_channels}"
            f"_o{block.out_channels}_se{block.se_channels}_{block.in_size}px{'_res' if block.residual else ''}")


def stem_key(spec: Spec) -> str:
    return f"stem_i{spec.in_channels}_o{spec.stem_channels}_{spec.resolution}px"


def head_key(spec: Spec, last: BlockLayout) -> str:
    return f"head_i{last.out_channels}_o{spec.head_channels}_c{spec.num_classes}_{last.out_size}px"


def spec_keys(spec: Spec) -> list[str]:
    """The keys of a spec's parts, in network order: stem, every block, head."""
    layout = block_layout(spec)
    return [stem_key(spec), *map(block_key, layout), head_key(spec, layout[-1])]


class Head(nn.Module):
    """The network after its last block: 1x1 head conv, global pool, classifier (dropout is off at inference)."""

    def __init__(self, in_channels: int, head_channels: int, num_classes: int):
        super().__init__()
        self.head = ConvBN(in_channels, head_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.head(x)).flatten(1))


def _initialised(module: nn.Module) -> nn.Module:
    init_weights(module)
    return module


def spec_parts(spec: Spec) -> list[Part]:
    """A spec's parts with their builders, in network order (a key may repeat: blocks 2.. of a stage)."""
    layout = block_layout(spec)
    last = layout[-1]
    stem = Part(stem_key(spec), (spec.in_channels, spec.resolution, spec.resolution),
                lambda: _initialised(ConvBN(spec.in_channels, spec.stem_channels, STEM_KERNEL, STEM_STRIDE)), False)
    blocks = [Part(block_key(block), (block.in_channels, block.in_size, block.in_size),
                   lambda block=block: _initialised(Block(block)), True) for block in layout]
    head = Part(head_key(spec, last), (last.out_channels, last.out_size, last.out_size),
                lambda: _initialised(Head(last.out_channels, spec.head_channels, spec.num_classes)), True)
    return [stem, *blocks, head]


def unique_parts(specs: list[Spec] | tuple[Spec, ...]) -> dict[str, Part]:
    """The distinct parts of several specs, by key, in first-seen order."""
    parts: dict[str, Part] = {}
    for spec in specs:
        for part in spec_parts(spec):
            parts.setdefault(part.key, part)
    return parts


def space_parts(space: SearchSpace, resolution: int | None = None) -> dict[str, Part]:
    """Every distinct part any network of `space` (at `resolution`, default the space's) can hold.

    A stage's first block depends on its own choices and the previous stage's output width, its later blocks
    on its own choices only, the head on the last stage's width. So it is enough to decode, for each stage,
    every combination of its choices (at its most layers, so later blocks appear) with every width of the
    stage before, the other stages at their first choice: a few thousand specs, not the space's product.
    """
    first = {key: choices[0] for key, choices in space.param_choices().items()}
    specs = []
    for index, stage in enumerate(space.stages, start=1):
        own = [getattr(stage, key) for key in CHOICE_KEYS if key != "layers"]
        widths_before = space.stages[index - 2].filters if index > 1 else (None,)
        for values, width_before in itertools.product(itertools.product(*own), widths_before):
            params = dict(first)
            params.update({f"s{index}_{PARAM_SUFFIX[key]}": value
                           for key, value in zip((k for k in CHOICE_KEYS if k != "layers"), values)})
            params[f"s{index}_{PARAM_SUFFIX['layers']}"] = max(stage.layers)
            if width_before is not None:
                params[f"s{index - 1}_{PARAM_SUFFIX['filters']}"] = width_before
            spec = decode(space, params)
            specs.append(spec if resolution is None else spec.replace(resolution=resolution))
    return unique_parts(specs)
