"""Search spaces: load a declarative TOML space file, validate it, and turn choices into a spec.

A space is the MnasNet factorized hierarchical kind: a list of stages, each repeating one searched block.
`sample(space, trial)` asks an Optuna trial (or anything with `suggest_categorical`) for every stage's
choices and returns the deployed-network `Spec`; `encode(space, spec)` is its inverse, so a known network
such as EfficientNet-B0 can be checked to be in the space and enqueued. The format is documented in
search_spaces/README.md. No Optuna import here: the trial is duck-typed.
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nas._common.parse import is_int, is_number
from nas.arch.compound import round_channels
from nas.arch.spec import BLOCK_TYPES, KERNELS, STRIDES, Spec, StageSpec
from nas.errors import NasError

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
DEFAULT_SPACE = "mnasnet"

SKIP_VALUES = {"identity": True, "none": False}
# Each stage's choices, in the order they are sampled (Optuna parameter s{i}_{key}).
CHOICE_KEYS = ("block", "kernel", "expand", "se_ratio", "skip", "filters", "layers")
PARAM_SUFFIX = {"block": "block", "kernel": "kernel", "expand": "expand", "se_ratio": "se", "skip": "skip",
                "filters": "filters", "layers": "layers"}
NETWORK_DEFAULTS: dict[str, Any] = {"resolution": 224, "stem_channels": 32, "head_channels": 1280,
                                    "dropout": 0.2, "drop_connect": 0.2}
STAGE_KEYS = ("filters", "layers", "stride")
# Choice lists a stage may narrow for itself (its own 'filters' and 'layers' are the base values).
STAGE_OVERRIDES = ("block", "kernel", "expand", "se_ratio", "skip")


class Suggester(Protocol):
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


class RandomChoices:
    """A `Suggester` drawing every choice uniformly from a `random.Random`: random sampling without Optuna."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.rng.choice(list(choices))


@dataclass(frozen=True)
class StageChoices:
    """The effective choices of one stage: absolute filters and layer counts, deduplicated."""

    stride: int
    base_filters: int
    base_layers: int
    block: tuple[str, ...]
    kernel: tuple[int, ...]
    expand: tuple[int, ...]
    se_ratio: tuple[float, ...]
    skip: tuple[str, ...]
    filters: tuple[int, ...]
    layers: tuple[int, ...]


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: fixed network parts plus per-stage choices."""

    name: str
    description: str
    source: str
    network: dict[str, Any]
    stages: tuple[StageChoices, ...]

    def stage_choices(self, index: int) -> StageChoices:
        return self.stages[index]

    def param_choices(self) -> dict[str, tuple[Any, ...]]:
        """Every Optuna parameter name of the space and its choices, in sampling order."""
        params = {}
        for i, stage in enumerate(self.stages, start=1):
            for key in CHOICE_KEYS:
                params[f"s{i}_{PARAM_SUFFIX[key]}"] = getattr(stage, key)
        return params

    @property
    def size(self) -> int:
        """Number of distinct parameter combinations (expand counted for every block type)."""
        total = 1
        for choices in self.param_choices().values():
            total *= len(choices)
        return total


# --- loading and validation ---------------------------------------------------------------------


def space_path(name_or_path: str) -> Path:
    """The file of a space: a path to a .toml file, or the name of one in search_spaces/."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    for folder in (Path.cwd() / "search_spaces", SPACES_DIR):
        if (folder / f"{name_or_path}.toml").is_file():
            return folder / f"{name_or_path}.toml"
    known = sorted(p.stem for p in SPACES_DIR.glob("*.toml"))
    raise NasError(f"unknown search space {name_or_path!r}: expected a .toml file or one of {', '.join(known)}")


def load_space(name_or_path: str = DEFAULT_SPACE) -> SearchSpace:
    """Read and validate a space file; any problem raises NasError naming the file and the field."""
    path = space_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise NasError(f"search space file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NasError(f"cannot read search space file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise NasError(f"{path}: not valid TOML: {exc}") from None
    try:
        return _parse_space(raw, str(path))
    except NasError as exc:
        raise NasError(f"{path}: {exc}") from None


def _bad(field: str, value: Any, expected: str) -> NasError:
    return NasError(f"{field}: got {value!r}, expected {expected}")


def _reject_unknown(where: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise NasError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(known)})")



# Which values each choice list may hold, and how to say so.
_CHOICE_RULES: dict[str, tuple[Any, str]] = {
    "block": (lambda v: isinstance(v, str) and v in BLOCK_TYPES, f"one of {', '.join(BLOCK_TYPES)}"),
    "kernel": (lambda v: is_int(v) and v in KERNELS, f"kernel sizes from {KERNELS}"),
    "expand": (lambda v: is_int(v) and 1 <= v <= 16, "integers from 1 to 16"),
    "se_ratio": (lambda v: is_number(v) and 0 <= v < 1, "numbers in [0, 1)"),
    "skip": (lambda v: isinstance(v, str) and v in SKIP_VALUES, "'identity' or 'none'"),
    "filters": (lambda v: is_number(v) and 0 < v <= 8, "multipliers in (0, 8]"),
    "layers": (lambda v: is_int(v) and -16 <= v <= 16, "integer offsets from -16 to 16"),
}


def _choice_list(where: str, value: Any, key: str) -> tuple[Any, ...]:
    check, expected = _CHOICE_RULES[key]
    if not isinstance(value, list) or not value:
        raise _bad(where, value, f"a non-empty list of {expected}")
    for item in value:
        if not check(item):
            raise _bad(where, item, expected)
    if len(set(value)) != len(value):
        raise _bad(where, value, "distinct values")
    return tuple(float(v) if key == "se_ratio" else v for v in value)


def _parse_network(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _bad("network", raw, "a table")
    _reject_unknown("network", raw, tuple(NETWORK_DEFAULTS))
    network = {**NETWORK_DEFAULTS, **raw}
    for key in ("resolution", "stem_channels", "head_channels"):
        if not is_int(network[key]) or network[key] < 1:
            raise _bad(f"network.{key}", network[key], "a positive integer")
    for key in ("dropout", "drop_connect"):
        if not is_number(network[key]) or not 0 <= network[key] < 1:
            raise _bad(f"network.{key}", network[key], "a number in [0, 1)")
    return network


def _parse_stage(index: int, raw: Any, defaults: dict[str, tuple[Any, ...]]) -> StageChoices:
    where = f"stages[{index}]"
    if not isinstance(raw, dict):
        raise _bad(where, raw, "a table")
    _reject_unknown(where, raw, STAGE_KEYS + STAGE_OVERRIDES)
    for key in STAGE_KEYS:
        if key not in raw:
            raise NasError(f"{where}.{key}: missing")
    filters, layers, stride = raw["filters"], raw["layers"], raw["stride"]
    if not is_int(filters) or not 1 <= filters <= 100_000:
        raise _bad(f"{where}.filters", filters, "a positive integer (the base output filters)")
    if not is_int(layers) or not 1 <= layers <= 64:
        raise _bad(f"{where}.layers", layers, "an integer from 1 to 64 (the base layer count)")
    if not is_int(stride) or stride not in STRIDES:
        raise _bad(f"{where}.stride", stride, "1 or 2")
    choices = dict(defaults)
    choices.update({key: _choice_list(f"{where}.{key}", raw[key], key) for key in STAGE_OVERRIDES if key in raw})
    layer_counts = tuple(sorted({layers + offset for offset in choices["layers"] if layers + offset >= 1}))
    if not layer_counts:
        raise _bad(f"{where}.layers", layers, "a base that leaves at least one layer after the offsets")
    widths = tuple(sorted({round_channels(filters, m) for m in choices["filters"]}))
    return StageChoices(stride=stride, base_filters=filters, base_layers=layers, block=choices["block"],
                        kernel=choices["kernel"], expand=choices["expand"], se_ratio=choices["se_ratio"],
                        skip=choices["skip"], filters=widths, layers=layer_counts)


def _parse_space(raw: dict[str, Any], source: str) -> SearchSpace:
    _reject_unknown("space", raw, ("name", "description", "network", "choices", "stages"))
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _bad("name", name, "a non-empty string")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _bad("description", description, "a string")
    network = _parse_network(raw.get("network", {}))
    choices_raw = raw.get("choices")
    if not isinstance(choices_raw, dict):
        raise _bad("choices", choices_raw, "a table of choice lists")
    _reject_unknown("choices", choices_raw, CHOICE_KEYS)
    for key in CHOICE_KEYS:
        if key not in choices_raw:
            raise NasError(f"choices.{key}: missing")
    defaults = {key: _choice_list(f"choices.{key}", choices_raw[key], key) for key in CHOICE_KEYS}
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise _bad("stages", stages_raw, "one or more [[stages]] tables")
    stages = tuple(_parse_stage(i, stage, defaults) for i, stage in enumerate(stages_raw))
    return SearchSpace(name=name.strip(), description=description, source=source, network=network, stages=stages)


# --- choices <-> spec ----------------------------------------------------------------------------


def decode(space: SearchSpace, params: dict[str, Any]) -> Spec:
    """The deployed-network spec (224-style input, 3 channels, 1000 classes) for one set of choices."""
    stages = []
    for i, stage in enumerate(space.stages, start=1):
        values = {}
        for key in CHOICE_KEYS:
            name = f"s{i}_{PARAM_SUFFIX[key]}"
            if name not in params:
                raise NasError(f"choice {name!r} missing for space {space.name!r}")
            if params[name] not in getattr(stage, key):
                raise _bad(name, params[name], f"one of {list(getattr(stage, key))}")
            values[key] = params[name]
        block = values["block"]
        stages.append(StageSpec(
            block=block,
            repeats=values["layers"],
            kernel=values["kernel"],
            stride=stage.stride,
            expand=values["expand"] if block == "mbconv" else 1,
            out_channels=values["filters"],
            se_ratio=float(values["se_ratio"]),
            skip=SKIP_VALUES[values["skip"]],
        ))
    return Spec(stages=tuple(stages), **space.network)


def sample(space: SearchSpace, trial: Suggester) -> Spec:
    """Define-by-run: ask `trial` for every choice of every stage, in order, and decode them."""
    params = {name: trial.suggest_categorical(name, list(choices))
              for name, choices in space.param_choices().items()}
    return decode(space, params)


def encode(space: SearchSpace, spec: Spec) -> dict[str, Any]:
    """The choices that decode to `spec`; NasError naming the first stage field outside the space."""
    if len(spec.stages) != len(space.stages):
        raise NasError(f"spec has {len(spec.stages)} stages, space {space.name!r} has {len(space.stages)}")
    for key, value in space.network.items():
        if getattr(spec, key) != value:
            raise NasError(f"spec {key} {getattr(spec, key)!r} is not the space's {value!r}")
    params: dict[str, Any] = {}
    for i, (stage, choices) in enumerate(zip(spec.stages, space.stages), start=1):
        if stage.stride != choices.stride:
            raise NasError(f"stage {i}: stride {stage.stride} is not the space's {choices.stride}")
        # A non-MBConv block has no expansion; any listed ratio decodes the same, so take the first.
        expand = stage.expand if stage.block == "mbconv" else choices.expand[0]
        wanted = {"block": stage.block, "kernel": stage.kernel, "expand": expand, "se_ratio": stage.se_ratio,
                  "skip": "identity" if stage.skip else "none", "filters": stage.out_channels,
                  "layers": stage.repeats}
        for key in CHOICE_KEYS:
            if wanted[key] not in getattr(choices, key):
                raise NasError(f"stage {i}: {key} {wanted[key]!r} is not in the space's choices "
                               f"{list(getattr(choices, key))}")
            params[f"s{i}_{PARAM_SUFFIX[key]}"] = wanted[key]
    return params


def arch_code(space: SearchSpace, spec: Spec) -> str:
    """A short readable code, one token per stage: block letter (upper case with SE), MBConv expand ratio,
    kernel, layers, then '+'/'-' for wider/narrower than the base filters and '!' for no skip.
    EfficientNet-B0 in the MnasNet space: 'D31 M632 M652 M633 M653 M654 M631'."""
    tokens = []
    for stage, choices in zip(spec.stages, space.stages):
        letter = {"mbconv": "m", "ds": "d", "conv": "c"}[stage.block]
        letter = letter.upper() if stage.se_ratio > 0 else letter
        expand = str(stage.expand) if stage.block == "mbconv" else ""
        base = choices.base_filters
        width = "+" if stage.out_channels > base else "-" if stage.out_channels < base else ""
        tokens.append(f"{letter}{expand}{stage.kernel}{stage.repeats}{width}{'' if stage.skip else '!'}")
    return " ".join(tokens)
