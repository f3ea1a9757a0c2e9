"""Compact block-string notations: the TF reference's and timm's arch-def strings.

TF reference:  r1_k3_s11_e1_i32_o16_se0.25   (repeats, kernel, stride, expand, in, out, SE; 'noskip')
timm arch-def: ds_r1_k3_s1_e1_c16_se0.25     ('ds' depthwise-separable, 'ir' MBConv, 'cn' regular conv)

One string describes one stage. A whole network is the stage strings in order, separated by spaces,
commas or newlines; the fields a string cannot carry (resolution, classes, head...) come from keywords.
"""

from __future__ import annotations

import re
from typing import Any

from nas.arch.spec import Spec, StageSpec, stage_input_channels
from nas.errors import NasError

TIMM_PREFIX = {"ds": "ds", "mbconv": "ir", "conv": "cn"}
TIMM_BLOCK = {prefix: block for block, prefix in TIMM_PREFIX.items()}
_OPTION = re.compile(r"^([a-z]+)(.*)$")


def _format_se(se_ratio: float) -> str:
    return f"_se{se_ratio!r}" if se_ratio > 0 else ""


def to_tf_strings(spec: Spec) -> list[str]:
    """One TF reference string per stage. Regular-conv stages have no TF notation and raise NasError."""
    strings = []
    for index, (stage, stage_in) in enumerate(zip(spec.stages, stage_input_channels(spec))):
        if stage.block == "conv":
            raise NasError(f"stages[{index}]: block type 'conv' has no TF block-string form; use timm strings")
        text = (
            f"r{stage.repeats}_k{stage.kernel}_s{stage.stride}{stage.stride}_e{stage.expand}"
            f"_i{stage_in}_o{stage.out_channels}{_format_se(stage.se_ratio)}"
        )
        strings.append(text + ("" if stage.skip else "_noskip"))
    return strings


def to_timm_strings(spec: Spec) -> list[str]:
    """One timm arch-def string per stage (timm nests them one list per stage)."""
    strings = []
    for stage in spec.stages:
        expand = "" if stage.block == "conv" else f"_e{stage.expand}"
        text = (
            f"{TIMM_PREFIX[stage.block]}_r{stage.repeats}_k{stage.kernel}_s{stage.stride}{expand}"
            f"_c{stage.out_channels}{_format_se(stage.se_ratio)}"
        )
        strings.append(text + ("" if stage.skip else "_noskip"))
    return strings


def _parse_options(text: str, parts: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in parts:
        match = _OPTION.match(part)
        if not match:
            raise NasError(f"malformed block string {text!r}: cannot read option {part!r}")
        key, value = match.groups()
        if key in options:
            raise NasError(f"malformed block string {text!r}: option {key!r} given twice")
        options[key] = value
    return options


def _number(text: str, options: dict[str, str], key: str, kind: type, default: Any = None) -> Any:
    if key not in options:
        if default is None:
            raise NasError(f"malformed block string {text!r}: missing option {key!r}")
        return default
    raw = options.pop(key)
    try:
        return kind(raw)
    except ValueError:
        raise NasError(f"malformed block string {text!r}: option {key!r} has bad value {raw!r}") from None


def _stride(text: str, options: dict[str, str]) -> int:
    raw = options.pop("s", None)
    # isdigit() alone takes '²', which int() refuses: only ASCII digits are a stride.
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) not in (1, 2) or len(set(raw)) != 1:
        raise NasError(f"malformed block string {text!r}: stride must look like s1, s2, s11 or s22")
    return int(raw[0])


def _build_stage(text: str, block: str, options: dict[str, str], out_key: str) -> StageSpec:
    skip = "noskip" not in options
    options.pop("noskip", None)
    fields = dict(
        block=block,
        repeats=_number(text, options, "r", int),
        kernel=_number(text, options, "k", int),
        stride=_stride(text, options),
        expand=_number(text, options, "e", int, default=1),
        out_channels=_number(text, options, out_key, int),
        se_ratio=_number(text, options, "se", float, default=0.0),
        skip=skip,
    )
    if options:
        raise NasError(f"malformed block string {text!r}: unknown option(s) {', '.join(sorted(options))}")
    try:
        return StageSpec(**fields)
    except NasError as exc:
        raise NasError(f"block string {text!r}: {exc}") from None


def parse_tf_string(text: str) -> tuple[StageSpec, int]:
    """Decode one TF reference string into a stage and its input channel count."""
    options = _parse_options(text, text.split("_"))
    in_channels = _number(text, options, "i", int)
    return _build_stage(text, "mbconv", options, "o"), in_channels


def parse_timm_string(text: str) -> StageSpec:
    """Decode one timm arch-def string into a stage."""
    prefix, _, rest = text.partition("_")
    if prefix not in TIMM_BLOCK:
        raise NasError(f"malformed block string {text!r}: unknown block type {prefix!r} (expected ds, ir or cn)")
    return _build_stage(text, TIMM_BLOCK[prefix], _parse_options(text, rest.split("_")), "c")


def is_block_string(text: str) -> bool:
    """True when the text looks like block strings rather than a name or a path."""
    first = text.replace(",", " ").split()
    return bool(first) and bool(re.match(r"^(r\d|ds_|ir_|cn_)", first[0]))


def parse_block_strings(text: str, **spec_fields: Any) -> Spec:
    """Decode a whole network written as stage strings (all TF or all timm), plus keyword spec fields.

    TF strings carry each stage's input width, so the stem width comes from the first one and the chain
    is checked; timm strings take the stem width from `stem_channels` (default 32).
    """
    tokens = text.replace(",", " ").split()
    if not tokens:
        raise NasError("empty block string")
    if all(token.startswith("r") for token in tokens):
        decoded = [parse_tf_string(token) for token in tokens]
        stages = [stage for stage, _ in decoded]
        chain = [spec_fields.get("stem_channels", decoded[0][1])] + [stage.out_channels for stage in stages[:-1]]
        for token, (_, declared), expected in zip(tokens, decoded, chain):
            if declared != expected:
                raise NasError(f"block string {token!r}: input channels i{declared} do not match {expected}")
        spec_fields.setdefault("stem_channels", decoded[0][1])
    else:
        stages = [parse_timm_string(token) for token in tokens]
    return Spec(stages=tuple(stages), **spec_fields)
