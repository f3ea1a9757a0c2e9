"""The cost a search holds to a target beside accuracy (`--objective`): the FLOPs of the deployed network,
counted from the spec, or its latency as a per-part latency table predicts it (nas.latency.predict).

`CostKind` says where a candidate's cost is recorded and how it prints; `SearchCost` is one study's: the kind,
the target, and the soft window and hard cap as multiples of that target. Every part of the search that
compares, selects or reports by cost (objective, selection, finalists, report) goes through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CostKind:
    """One kind of cost: its trial attribute, its name in prose and formulas, and its printed unit."""

    key: str  # the --objective value
    attr: str  # the trial's user attribute holding a candidate's cost, in base units (FLOPs, seconds)
    name: str  # in prose and in the reward's formula
    unit: str  # printed after the value divided by `scale`
    scale: float  # one printed unit in base units
    digits: int  # decimals of a candidate's printed cost
    column: str | None  # the outputs' table column beside flops and params (None: FLOPs are there already)
    axis: str  # pareto.png's x axis

    def plain(self, value: float) -> str:
        """A target or bound as typed: '400M', '20 ms'."""
        return f"{value / self.scale:g}{self.unit}"

    def short(self, value: float, digits: int | None = None) -> str:
        """A candidate's cost: '123M', '12.34 ms'."""
        return f"{value / self.scale:.{self.digits if digits is None else digits}f}{self.unit}"

    def amount(self, value: float, digits: int | None = None) -> str:
        """A candidate's cost with its name: '123M FLOPs', '12.34 ms latency'."""
        return f"{self.short(value, digits)} {self.name}"

    def columns(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """This cost's column of a trial's row in trials.csv and pareto.csv (none for FLOPs, always there)."""
        if self.column is None:
            return {}
        value = attrs.get(self.attr)
        return {self.column: None if value is None else round(value / self.scale, 6)}


FLOPS = CostKind("flops", "flops", "FLOPs", "M", 1e6, 0, None,
                 "FLOPs of the deployed network (M multiply-adds, 224x224x3, 1000 classes)")
LATENCY = CostKind("latency", "latency_s", "latency", " ms", 1e-3, 2, "latency_ms",
                   "predicted latency of the deployed network (ms, the latency table's device and setup)")
COST_KINDS: dict[str, CostKind] = {kind.key: kind for kind in (FLOPS, LATENCY)}


@dataclass(frozen=True)
class SearchCost:
    """A study's cost: its kind, the target T, the soft window and the hard cap (multiples of T)."""

    kind: CostKind
    target: float
    window_multiples: tuple[float, float]
    hard_cap_multiple: float

    @property
    def window(self) -> tuple[float, float]:
        """The soft window in the cost's base units."""
        low, high = self.window_multiples
        return low * self.target, high * self.target

    @property
    def hard_cap(self) -> float:
        """Candidates above this cost are not scored."""
        return self.hard_cap_multiple * self.target

    def of(self, attrs: Mapping[str, Any]) -> float:
        """A trial's cost from its user attributes."""
        return attrs[self.kind.attr]
