"""The published EfficientNet family: B0's stages and the hand-rounded B1-B7 coefficients."""

from __future__ import annotations

from dataclasses import dataclass

from nas.arch.compound import scale
from nas.arch.spec import Spec, StageSpec
from nas.errors import NasError

B0_STAGES = (
    StageSpec("ds", 1, 3, 1, 1, 16, 0.25),
    StageSpec("mbconv", 2, 3, 2, 6, 24, 0.25),
    StageSpec("mbconv", 2, 5, 2, 6, 40, 0.25),
    StageSpec("mbconv", 3, 3, 2, 6, 80, 0.25),
    StageSpec("mbconv", 3, 5, 1, 6, 112, 0.25),
    StageSpec("mbconv", 4, 5, 2, 6, 192, 0.25),
    StageSpec("mbconv", 1, 3, 1, 6, 320, 0.25),
)


@dataclass(frozen=True)
class FamilyMember:
    """One published model: its multipliers relative to B0, its resolution and its dropout."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float


FAMILY = (
    FamilyMember("efficientnet_b0", 1.0, 1.0, 224, 0.2),
    FamilyMember("efficientnet_b1", 1.0, 1.1, 240, 0.2),
    FamilyMember("efficientnet_b2", 1.1, 1.2, 260, 0.3),
    FamilyMember("efficientnet_b3", 1.2, 1.4, 300, 0.3),
    FamilyMember("efficientnet_b4", 1.4, 1.8, 380, 0.4),
    FamilyMember("efficientnet_b5", 1.6, 2.2, 456, 0.4),
    FamilyMember("efficientnet_b6", 1.8, 2.6, 528, 0.5),
    FamilyMember("efficientnet_b7", 2.0, 3.1, 600, 0.5),
)
FAMILY_NAMES = tuple(member.name for member in FAMILY)


def efficientnet_b0() -> Spec:
    """The searched baseline, exactly as published (224x224x3 input, 1000 classes)."""
    return Spec(stages=B0_STAGES, name="efficientnet_b0")


def _canonical_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return key if key.startswith("efficientnet_") else f"efficientnet_{key}"


def is_family_name(name: str) -> bool:
    return _canonical_name(name) in FAMILY_NAMES


def efficientnet(name: str) -> Spec:
    """A published family member by name: 'efficientnet_b3', 'efficientnet-b3' or 'b3'."""
    key = _canonical_name(name)
    for member in FAMILY:
        if member.name == key:
            scaled = scale(efficientnet_b0(), width=member.width, depth=member.depth)
            return scaled.replace(resolution=member.resolution, dropout=member.dropout, name=member.name)
    raise NasError(f"unknown model name {name!r}: expected one of {', '.join(FAMILY_NAMES)} (or b0..b7)")
