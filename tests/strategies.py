"""Hypothesis strategies for random valid specs, kept small so building and fvcore stay fast."""

from __future__ import annotations

from hypothesis import strategies as st

from nas.arch.spec import Spec, StageSpec


@st.composite
def stage_specs(draw: st.DrawFn) -> StageSpec:
    block = draw(st.sampled_from(["mbconv", "ds", "conv"]))
    return StageSpec(
        block=block,
        repeats=draw(st.integers(1, 3)),
        kernel=draw(st.sampled_from([1, 3, 5, 7])),
        stride=draw(st.sampled_from([1, 2])),
        expand=draw(st.sampled_from([2, 3, 4, 6])) if block == "mbconv" else 1,
        out_channels=draw(st.integers(1, 48)),
        se_ratio=draw(st.sampled_from([0.0, 0.25, 0.5, 0.1])),
        skip=draw(st.booleans()),
    )


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    return Spec(
        stages=tuple(draw(st.lists(stage_specs(), min_size=1, max_size=5))),
        in_channels=draw(st.sampled_from([1, 3])),
        resolution=draw(st.integers(8, 72)),
        num_classes=draw(st.integers(1, 20)),
        stem_channels=draw(st.integers(1, 40)),
        head_channels=draw(st.integers(1, 96)),
        dropout=draw(st.sampled_from([0.0, 0.2, 0.5])),
        drop_connect=draw(st.sampled_from([0.0, 0.2])),
    )
