"""Predicted latency: a network's latency as the sum of its parts' table entries (stem, blocks, head), scaled
by the table's calibration on whole networks.

The lookup is the search's second objective, so it is pure Python over the block layout (no torch work,
well under a millisecond a spec). A part the table lacks is a one-line NasError naming it, unless the caller
asks for it to be measured (`measure_missing`), which needs this machine to be the table's setup.
`LatencyPredictor` is what a search holds: a table checked up front to cover its whole space.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from nas.arch.space import SearchSpace
from nas.arch.spec import Spec
from nas.errors import NasError
from nas.latency.parts import space_parts, spec_keys, spec_parts
from nas.latency.table import LatencyTable, Progress, build_table, load_table

BUILD_HINT = "nas latency-table"


def _missing_error(table: LatencyTable, missing: Sequence[str], what: str, hint: str) -> NasError:
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    return NasError(f"latency table {table.path or '(not saved)'} has no entry for {missing[0]!r}{more} ({what}): {hint}")


def latency_breakdown(table: LatencyTable, spec: Spec, *, measure_missing: bool = False,
                      progress: Progress | None = None) -> list[tuple[str, float]]:
    """(key, seconds) of each part of `spec` in network order: stem, every block, head; the raw entries, whose
    sum times `table.scale` is the prediction.

    With `measure_missing` the parts the table lacks are measured into it first (and saved); otherwise a
    missing part is a NasError naming it.
    """
    keys = spec_keys(spec)
    missing = table.missing(keys)
    if missing and measure_missing:
        build_table(table, {part.key: part for part in spec_parts(spec)}, progress=progress)
    elif missing:
        raise _missing_error(table, missing, f"a part of {spec.name or 'the spec'}",
                             f"add it with `{BUILD_HINT} --spec {spec.name or 'SPEC'} --out {table.path or 'TABLE'}` or measure on demand "
                             "(--measure-missing)")
    return [(key, table.entries[key]) for key in keys]


def predict_latency(table: LatencyTable, spec: Spec, *, measure_missing: bool = False) -> float:
    """Predicted latency in seconds: the sum of the table's entries for the spec's parts, times the table's
    calibration scale (1 for an uncalibrated table)."""
    if not measure_missing:
        entries = table.entries
        try:
            return table.scale * sum(entries[key] for key in spec_keys(spec))
        except KeyError:
            pass  # latency_breakdown names every missing part
    parts = latency_breakdown(table, spec, measure_missing=measure_missing)
    return table.scale * sum(seconds for _, seconds in parts)


def check_covers(table: LatencyTable, space: SearchSpace, resolution: int | None = None) -> None:
    """NasError unless the table holds every part any network of `space` can have."""
    missing = table.missing(space_parts(space, resolution))
    if missing:
        res = f" --resolution {resolution}" if resolution is not None else ""
        raise _missing_error(table, missing, f"a part of space {space.name!r}",
                             f"complete it with `{BUILD_HINT} --space {space.source}{res} --out {table.path or 'TABLE'}`")


@dataclass(frozen=True)
class LatencyPredictor:
    """Predicted latency for the specs of one space: call it with a spec, get seconds.

    Made by `load_predictor`, which checks once that the table covers the space, so no call fails mid-search.
    """

    table: LatencyTable

    def __call__(self, spec: Spec) -> float:
        return predict_latency(self.table, spec)

    def breakdown(self, spec: Spec) -> list[tuple[str, float]]:
        return latency_breakdown(self.table, spec)


def load_predictor(path: str | os.PathLike[str], space: SearchSpace | None = None,
                   resolution: int | None = None) -> LatencyPredictor:
    """The predictor of the table at `path` (a file or a run folder), checked to cover `space` if given."""
    table = load_table(path)
    if space is not None:
        check_covers(table, space, resolution)
    return LatencyPredictor(table)
