"""Tables that describe a spec or the family: what `nas show` prints, as plain rows a user can reuse."""

from __future__ import annotations

from typing import Any

from nas.arch.cost import (
    Cost,
    block_cost,
    count_flops,
    count_params,
    head_cost,
    stem_cost,
    sum_costs,
)
from nas.arch.efficientnet import FAMILY, efficientnet
from nas.arch.layout import block_layout
from nas.arch.spec import Spec


def stage_rows(spec: Spec) -> list[dict[str, Any]]:
    """One row per stage (plus stem, head and total) with its settings, parameters and FLOPs."""
    layout = block_layout(spec)
    stem = stem_cost(spec)
    rows: list[dict[str, Any]] = [
        _row("stem", "conv", 1, 3, 2, 1, spec.in_channels, spec.stem_channels, 0.0, stem)
    ]
    for index, stage in enumerate(spec.stages):
        blocks = [block for block in layout if block.stage == index]
        cost = sum_costs(block_cost(block) for block in blocks)
        rows.append(_row(str(index + 1), stage.block, stage.repeats, stage.kernel, stage.stride, stage.expand,
                         blocks[0].in_channels, stage.out_channels, stage.se_ratio, cost,
                         resolution=blocks[-1].out_size, skip=stage.skip))
    head = head_cost(spec, layout)
    rows.append(_row("head", "conv+fc", 1, 1, 1, 1, layout[-1].out_channels, spec.head_channels, 0.0, head))
    total = sum_costs([stem, head, *map(block_cost, layout)])
    rows.append({"stage": "total", "params": total.params, "flops": total.flops})
    return rows


def _row(stage: str, block: str, repeats: int, kernel: int, stride: int, expand: int, cin: int, cout: int,
         se: float, cost: Cost, resolution: int | None = None, skip: bool = False) -> dict[str, Any]:
    return {"stage": stage, "block": block, "repeats": repeats, "kernel": kernel, "stride": stride,
            "expand": expand, "in": cin, "out": cout, "se": se, "skip": skip, "out_size": resolution,
            "params": cost.params, "flops": cost.flops}


def family_rows() -> list[dict[str, Any]]:
    """B0-B7 with multipliers, resolution, parameters and FLOPs (analytic, 1000 classes)."""
    rows = []
    for member in FAMILY:
        spec = efficientnet(member.name)
        rows.append({"model": member.name, "width": member.width, "depth": member.depth,
                     "resolution": member.resolution, "dropout": member.dropout,
                     "blocks": spec.num_blocks, "params": count_params(spec), "flops": count_flops(spec)})
    return rows
