"""Per-block geometry derived from a spec: the one place that decides channels, strides and sizes.

The model builder and the cost model both walk this list, so the network that is built and the network
that is counted cannot drift apart.
"""

from __future__ import annotations

from typing import NamedTuple

from nas.arch.spec import Spec, conv_output_size, squeeze_channels, stage_input_channels


class BlockLayout(NamedTuple):
    """One block as built: which convs it has and the sizes flowing through them (a tuple, for speed)."""

    stage: int
    block: str
    in_channels: int
    mid_channels: int  # width of the depthwise conv (in_channels * expand); for 'conv' the output width
    out_channels: int
    se_channels: int  # SE squeeze width, 0 when the block has no SE
    kernel: int
    stride: int
    in_size: int
    out_size: int
    residual: bool
    drop_path_rate: float

    @property
    def has_expansion(self) -> bool:
        return self.block == "mbconv" and self.mid_channels != self.in_channels


def block_layout(spec: Spec) -> list[BlockLayout]:
    """Expand the stages into one entry per block, first block of a stage carrying its stride."""
    blocks: list[BlockLayout] = []
    total = spec.num_blocks
    size = conv_output_size(spec.resolution, 2)  # after the stride-2 stem
    for stage_index, (stage, stage_in) in enumerate(zip(spec.stages, stage_input_channels(spec))):
        for repeat in range(stage.repeats):
            in_ch = stage_in if repeat == 0 else stage.out_channels
            stride = stage.stride if repeat == 0 else 1
            out_size = conv_output_size(size, stride)
            mid = stage.out_channels if stage.block == "conv" else in_ch * stage.expand
            blocks.append(
                BlockLayout(
                    stage=stage_index,
                    block=stage.block,
                    in_channels=in_ch,
                    mid_channels=mid,
                    out_channels=stage.out_channels,
                    se_channels=squeeze_channels(in_ch, stage.se_ratio),
                    kernel=stage.kernel,
                    stride=stride,
                    in_size=size,
                    out_size=out_size,
                    residual=stage.skip and stride == 1 and in_ch == stage.out_channels,
                    # Stochastic depth grows linearly with block index, as in the TF reference.
                    drop_path_rate=spec.drop_connect * len(blocks) / total,
                )
            )
            size = out_size
    return blocks

