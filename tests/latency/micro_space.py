"""A space small enough to measure in seconds: two narrow stages of tiny.toml with a few choices each."""

from __future__ import annotations

from pathlib import Path

MICRO_SPACE = """
name = "micro"

[network]
resolution = 32
stem_channels = 8
head_channels = 32

[choices]
block = ["mbconv", "ds"]
kernel = [3]
expand = [3]
se_ratio = [0.0, 0.25]
skip = ["identity", "none"]
filters = [1.0]
layers = [0, 1]

[[stages]]
filters = 8
layers = 1
stride = 1

[[stages]]
filters = 16
layers = 1
stride = 2
"""


def write_micro_space(folder: Path) -> Path:
    path = folder / "micro.toml"
    path.write_text(MICRO_SPACE)
    return path
