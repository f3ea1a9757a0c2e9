"""Parsers and type checks for the numbers users type or write in files: FLOPs ('400M'), lists of them,
latencies ('20ms'), timeouts, windows. Each raises NasError naming the option and what it expected."""

from __future__ import annotations

import math
import re
from typing import Any

from nas.errors import NasError

_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}
_FLOPS = re.compile(r"\s*([0-9]*\.?[0-9]+(?:e[+]?[0-9]+)?)\s*([kmgb]?)\s*")
_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_LATENCY = re.compile(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(s|ms|us)\s*")


def is_int(value: Any) -> bool:
    """An int that is not a bool (JSON and TOML give True for `true`)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_flops(text: str, option: str = "--target-flops") -> int:
    """'400M', '0.4G', '4e8' or '400000000' -> 400000000."""
    match = _FLOPS.fullmatch(str(text).lower())
    if not match:
        raise NasError(f"{option}: cannot read {text!r} (expected e.g. 400M, 0.4G or 400000000)")
    value = float(match.group(1)) * _SUFFIX[match.group(2)]
    if not 1 <= value < math.inf:
        raise NasError(f"{option}: must be a positive number of FLOPs, got {text!r}")
    return int(round(value))


def parse_latency(text: str, option: str = "--target-latency") -> float:
    """'20ms', '0.02s' or '20000us' -> 0.02 (seconds); the unit is required, so 20 is not read as 20 s."""
    match = _LATENCY.fullmatch(str(text).lower())
    if not match:
        raise NasError(f"{option}: cannot read {text!r} (expected a time with its unit, e.g. 20ms, 0.02s or 20000us)")
    value = float(match.group(1)) * _SECONDS[match.group(2)]
    if not 0 < value < math.inf:
        raise NasError(f"{option}: must be a positive time, got {text!r}")
    return value


def parse_flops_list(text: str, option: str = "--budgets") -> list[int]:
    """'0.7e9,1.8G' -> [700000000, 1800000000]."""
    return [parse_flops(entry, option) for entry in str(text).split(",")]


def parse_window(text: str, option: str = "--flops-window") -> tuple[float, float]:
    """'0.75,1.25' -> (0.75, 1.25): two multiples of the target, 0 < LOW <= HIGH."""
    try:
        low, high = (float(part) for part in str(text).split(","))
    except ValueError:
        raise NasError(f"{option}: cannot read {text!r} (expected LOW,HIGH multiples of the target, "
                       "e.g. 0.75,1.25)") from None
    if not 0 < low <= high < math.inf:
        raise NasError(f"{option}: {text!r} is not a window: expected 0 < LOW <= HIGH, e.g. 0.75,1.25")
    return low, high


def parse_timeout(text: str, option: str = "--timeout") -> float:
    """'1080' -> 1080.0; 'none' -> no limit (math.inf)."""
    if str(text).strip().lower() in ("none", "inf"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise NasError(f"{option}: cannot read {text!r} (expected seconds or 'none')") from None
    if not 0 < value <= math.inf:
        raise NasError(f"{option}: must be a positive number of seconds, got {text!r}")
    return value


def parse_numbers(text: str, option: str, kind: type = float) -> tuple:
    """'4500,9000' -> (4500, 9000) with `kind` int or float."""
    try:
        return tuple(kind(part) for part in str(text).split(","))
    except ValueError:
        raise NasError(f"{option}: cannot read {text!r} (expected comma-separated {kind.__name__} values)") from None


_BYTES = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*")


def parse_bytes(text: str, option: str = "--memory-budget") -> int:
    """'512M', '8G', '1.5GiB' or '1000000' -> bytes (K, M, G, T are powers of 1024, as memory is sized)."""
    match = _BYTES.fullmatch(str(text).lower())
    if not match:
        raise NasError(f"{option}: cannot read {text!r} (expected e.g. 512M, 8G or a number of bytes)")
    return int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2) or " "))


def parse_field_changes(items: list[str], option: str) -> dict[str, Any]:
    """['lr_per_256=0.016', 'flip=false'] -> {'lr_per_256': 0.016, 'flip': False}: preset fields a bench
    changes (true/false, then int, then float, else the text)."""
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not key or not sep:
            raise NasError(f"{option}: expected FIELD=VALUE, got {item!r}")
        value: Any = {"true": True, "false": False}.get(text.lower(), text)
        for kind in (int, float):
            if isinstance(value, str):
                try:
                    value = kind(text)
                except ValueError:
                    pass
        changes[key] = value
    return changes
