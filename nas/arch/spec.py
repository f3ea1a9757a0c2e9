"""The architecture spec: an immutable, validated description of an EfficientNet-style network.

Everything in the framework takes and returns a `Spec`: the search samples one, the cost model counts it,
the builder turns it into modules, the scaling stage rescales it and the exporter writes it out. It holds
concrete numbers only (channels, repeats, resolution), never multipliers, so two equal specs are the same
network. No torch here, so specs can be made, compared and stored anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas._common.atomic import write_text_atomic
from nas._common.jsonfile import read_json
from nas.errors import NasError

SCHEMA_VERSION = 1

# 'mbconv': inverted residual (1x1 expand, kxk depthwise, SE, 1x1 project).
# 'ds': depthwise-separable (kxk depthwise, SE, 1x1 project) -- an MBConv with expand ratio 1.
# 'conv': a regular kxk convolution (the MnasNet space's third conv op), then SE.
BLOCK_TYPES = ("mbconv", "ds", "conv")
KERNELS = (1, 3, 5, 7)
STRIDES = (1, 2)
MAX_EXPAND = 16


def _fail(field: str, value: Any, expected: str) -> None:
    raise NasError(f"invalid spec field '{field}': got {value!r}, expected {expected}")


def _check_int(field: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        _fail(field, value, f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""))


def _check_fraction(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value < 1.0):
        _fail(field, value, "a number in [0, 1)")


@dataclass(frozen=True)
class StageSpec:
    """One stage: `repeats` copies of one block; only the first block has the stage's stride."""

    block: str
    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int
    se_ratio: float = 0.25
    skip: bool = True

    def __post_init__(self) -> None:
        # An MBConv without expansion *is* a depthwise-separable block; storing it one way makes equal
        # networks compare equal and lets TF block strings (which only know MBConv) round-trip exactly.
        if self.block == "mbconv" and self.expand == 1:
            object.__setattr__(self, "block", "ds")
        self.validate()

    def validate(self, where: str = "stage") -> None:
        """Raise NasError naming the first field that is not a valid value."""
        if self.block not in BLOCK_TYPES:
            _fail(f"{where}.block", self.block, f"one of {', '.join(BLOCK_TYPES)}")
        _check_int(f"{where}.repeats", self.repeats, 1, 64)
        if isinstance(self.kernel, bool) or self.kernel not in KERNELS:
            _fail(f"{where}.kernel", self.kernel, f"one of {KERNELS}")
        if isinstance(self.stride, bool) or self.stride not in STRIDES:
            _fail(f"{where}.stride", self.stride, f"one of {STRIDES}")
        _check_int(f"{where}.expand", self.expand, 1, MAX_EXPAND)
        if self.block in ("ds", "conv") and self.expand != 1:
            _fail(f"{where}.expand", self.expand, f"1 for block type '{self.block}'")
        _check_int(f"{where}.out_channels", self.out_channels, 1, 100_000)
        _check_fraction(f"{where}.se_ratio", self.se_ratio)
        if not isinstance(self.skip, bool):
            _fail(f"{where}.skip", self.skip, "true or false")


@dataclass(frozen=True)
class Spec:
    """A whole network: stem conv, stages of blocks, 1x1 head conv, pooling, dropout, classifier."""

    stages: tuple[StageSpec, ...]
    in_channels: int = 3
    resolution: int = 224
    num_classes: int = 1000
    stem_channels: int = 32
    head_channels: int = 1280
    dropout: float = 0.2
    drop_connect: float = 0.2
    name: str = ""

    def __post_init__(self) -> None:
        # Accept any sequence of stages but store a tuple, so the spec stays hashable and immutable.
        object.__setattr__(self, "stages", tuple(self.stages))
        self.validate()

    def validate(self) -> None:
        """Raise NasError naming the first field that is not a valid value."""
        if not self.stages:
            _fail("stages", [], "at least one stage")
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, StageSpec):
                _fail(f"stages[{i}]", stage, "a StageSpec")
            stage.validate(f"stages[{i}]")
        _check_int("in_channels", self.in_channels, 1, 64)
        _check_int("resolution", self.resolution, 8, 4096)
        _check_int("num_classes", self.num_classes, 1, 1_000_000)
        _check_int("stem_channels", self.stem_channels, 1, 100_000)
        _check_int("head_channels", self.head_channels, 1, 100_000)
        _check_fraction("dropout", self.dropout)
        _check_fraction("drop_connect", self.drop_connect)
        if not isinstance(self.name, str):
            _fail("name", self.name, "a string")

    def replace(self, **changes: Any) -> Spec:
        """A copy with some fields changed, validated like any new spec."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise NasError(f"invalid spec change: {exc}") from None

    @property
    def num_blocks(self) -> int:
        return sum(stage.repeats for stage in self.stages)

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict carrying the schema version; `Spec.from_dict` inverts it exactly."""
        data = dataclasses.asdict(self)
        data["stages"] = [dataclasses.asdict(stage) for stage in self.stages]
        return {"schema_version": SCHEMA_VERSION, **data}

    @classmethod
    def from_dict(cls, data: Any) -> Spec:
        """Decode `to_dict` output; unknown keys, missing stages or a wrong schema version raise NasError."""
        if not isinstance(data, dict):
            _fail("spec", type(data).__name__, "a JSON object")
        data = dict(data)
        version = data.pop("schema_version", None)
        if version != SCHEMA_VERSION:
            _fail("schema_version", version, str(SCHEMA_VERSION))
        _reject_unknown("spec", data, {f.name for f in dataclasses.fields(cls)})
        raw_stages = data.pop("stages", None)
        if not isinstance(raw_stages, list):
            _fail("stages", raw_stages, "a list of stage objects")
        stages = tuple(_stage_from_dict(i, raw) for i, raw in enumerate(raw_stages))
        try:
            return cls(stages=stages, **data)
        except TypeError as exc:
            raise NasError(f"invalid spec: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Spec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NasError(f"spec is not valid JSON: {exc}") from None
        except RecursionError:  # brackets nested past the decoder's recursion limit
            raise NasError("spec is not valid JSON: nested too deeply") from None
        return cls.from_dict(data)


def _reject_unknown(where: str, data: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise NasError(f"invalid {where}: unknown field(s) {', '.join(map(repr, unknown))}")


def _stage_from_dict(index: int, raw: Any) -> StageSpec:
    where = f"stages[{index}]"
    if not isinstance(raw, dict):
        _fail(where, raw, "a JSON object")
    fields = dataclasses.fields(StageSpec)
    _reject_unknown(where, raw, {f.name for f in fields})
    for field in fields:
        if field.default is dataclasses.MISSING and field.name not in raw:
            raise NasError(f"invalid spec field '{where}.{field.name}': missing")
    raw = dict(raw)
    # JSON has no int/float distinction for whole numbers; keep se_ratio a float for exact round trips.
    if isinstance(raw.get("se_ratio"), int) and not isinstance(raw.get("se_ratio"), bool):
        raw["se_ratio"] = float(raw["se_ratio"])
    try:
        return StageSpec(**raw)
    except NasError as exc:
        raise NasError(str(exc).replace("'stage.", f"'{where}.", 1)) from None


def stage_input_channels(spec: Spec) -> list[int]:
    """The input channel count of each stage (the stem width, then each previous stage's output)."""
    widths = [spec.stem_channels]
    for stage in spec.stages[:-1]:
        widths.append(stage.out_channels)
    return widths


def squeeze_channels(block_in: int, se_ratio: float) -> int:
    """SE squeeze width, relative to the block *input* channels as in the reference (0 means no SE)."""
    if se_ratio <= 0:
        return 0
    return max(1, int(block_in * se_ratio))


def conv_output_size(size: int, stride: int) -> int:
    """Output size of a 'same'-padded odd-kernel conv: ceil(size / stride)."""
    return math.ceil(size / stride)


# --- files ----------------------------------------------------------------------------------------


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read a spec from a JSON file: a plain spec, or a document (like a study's best.json) with a "spec" key."""
    path = Path(path)
    data = read_json(path, "spec file")
    if isinstance(data, dict) and "spec" in data and "stages" not in data:
        data = data["spec"]
    try:
        return Spec.from_dict(data)
    except NasError as exc:
        raise NasError(f"{path}: {exc}") from None


def save_spec(spec: Spec, path: str | os.PathLike[str]) -> None:
    """Write a spec as JSON, atomically."""
    write_text_atomic(path, spec.to_json())
