"""The preprocessing contract of an export: `config.json`, what an image must go through before the network.

The file is of the kind timm's `pretrained_cfg` and a Hugging Face `config.json` are: input size (C, H, W),
the colour mode (channel order and count), the per-channel mean and std in pixel units (0..255), the
resize and crop rule and the class names when the data set has them. An image becomes a network input by:

1. decoding it and converting it to `color_mode` ("L": one grey channel, "RGB": red, green, blue);
2. resizing it so its shorter side is `input_size[1]` pixels (bilinear, antialiased: Pillow's `resize`);
3. cropping the centre `input_size[1]` x `input_size[2]` pixels;
4. (pixel - mean) / std per channel, as float32, pixels in 0..255;
5. laying it out as N x C x H x W (the graphs take a batch; the ONNX input is named "images").

This is the training pipeline's own rule (`nas.proxy`: the data sets' images resized with antialiased
bilinear interpolation, normalised by the training set's statistics), so an image a user brings reaches the
network as the training images did. `preprocess_images` does it with Pillow and numpy only.

The facts come from the training run (`TrainingRecord`: metrics.json of `nas train`, the checkpoint's
metadata, or the config.json of an earlier export). Without one (an export of a bare spec) mean and std
are null: nothing says how the placeholder weights want their input.
No torch here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas._common.images import read_square_image
from nas._common.runfiles import CONFIG_FILE
from nas.arch.spec import Spec
from nas.errors import NasError

CONFIG_SCHEMA = 1
COLOR_MODES = {1: "L", 3: "RGB"}  # channel count -> Pillow mode, i.e. the channel order
INTERPOLATION = "bilinear"
CROP_MODE = "center"


@dataclass(frozen=True)
class TrainingRecord:
    """What a training run recorded about its input: the data set source, normalisation, resolution, classes,
    and the split (seed, validation fraction) that rebuilds its training and test images."""

    dataset: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resolution: int | None = None
    class_names: tuple[str, ...] | None = None
    seed: int = 0
    val_fraction: float = 0.1

    @classmethod
    def from_run(cls, document: dict[str, Any]) -> TrainingRecord | None:
        """From a metrics.json, checkpoint metadata or config.json dict; None when it records no normalisation."""
        if not isinstance(document, dict) or document.get("mean") is None or document.get("std") is None:
            return None
        preset, spec, size = document.get("preset"), document.get("spec"), document.get("input_size")
        resolution = preset.get("resolution") if isinstance(preset, dict) else None
        if resolution is None and isinstance(spec, dict):
            resolution = spec.get("resolution")
        if resolution is None and isinstance(size, list) and len(size) == 3:
            resolution = size[1]
        names = document.get("class_names")
        return cls(dataset=document.get("data") or document.get("dataset"),
                   mean=tuple(float(v) for v in document["mean"]), std=tuple(float(v) for v in document["std"]),
                   resolution=int(resolution) if resolution is not None else None,
                   class_names=tuple(str(n) for n in names) if names else None,
                   seed=int(document.get("seed") or 0), val_fraction=float(document.get("val_fraction") or 0.1))


@dataclass(frozen=True)
class InputConfig:
    """The contents of config.json (see the module docstring for the rule they describe)."""

    architecture: str | None
    num_classes: int
    input_size: tuple[int, int, int]  # channels, height, width
    color_mode: str | None  # Pillow mode whose channels, in order, are the input's; None: no image mode fits
    mean: tuple[float, ...] | None  # per channel, pixel units (0..255)
    std: tuple[float, ...] | None
    class_names: tuple[str, ...] | None = None
    dataset: str | None = None
    interpolation: str = INTERPOLATION
    crop_mode: str = CROP_MODE
    crop_pct: float = 1.0  # the crop is the whole resized shorter side
    layout: str = "NCHW"
    pixel_range: tuple[int, int] = (0, 255)
    onnx_opset: int | None = None
    schema_version: int = CONFIG_SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = CONFIG_FILE) -> InputConfig:
        """Read a config.json document; a malformed one is a NasError naming `where`."""
        try:
            config = cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})
            channels, height, width = (int(v) for v in config.input_size)
        except (TypeError, ValueError, AttributeError) as exc:
            raise NasError(f"{where}: not an export config ({exc})") from None
        if config.schema_version != CONFIG_SCHEMA:
            raise NasError(f"{where}: config schema {config.schema_version}, this version reads {CONFIG_SCHEMA}")
        for name in ("mean", "std"):
            value = getattr(config, name)
            if value is not None and len(value) != channels:
                raise NasError(f"{where}: {name} has {len(value)} values for {channels} channel(s)")
        if config.class_names is not None and len(config.class_names) != config.num_classes:
            raise NasError(f"{where}: {len(config.class_names)} class names for {config.num_classes} classes")
        return config

    @property
    def normalized(self) -> bool:
        """Whether the config knows the normalisation the network was trained with."""
        return self.mean is not None and self.std is not None

    def class_name(self, index: int) -> str:
        return self.class_names[index] if self.class_names else str(index)


def input_config(spec: Spec, training: TrainingRecord | None = None, onnx_opset: int | None = None) -> InputConfig:
    """The config of an export of `spec` (at the spec's resolution, which is the graphs' input size)."""
    names = training.class_names if training else None
    if names is not None and len(names) != spec.num_classes:
        names = None  # the weights were trained on other classes than the record names
    return InputConfig(
        architecture=spec.name, num_classes=spec.num_classes,
        input_size=(spec.in_channels, spec.resolution, spec.resolution),
        color_mode=COLOR_MODES.get(spec.in_channels),
        mean=training.mean if training else None, std=training.std if training else None,
        class_names=names, dataset=training.dataset if training else None, onnx_opset=onnx_opset,
    )


def read_config(folder: str | os.PathLike[str]) -> InputConfig:
    """The config.json of an exported folder."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise NasError(f"{path} not found: not an export folder (or one written before config.json existed)")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NasError(f"{path}: cannot read ({exc})") from None
    return InputConfig.from_dict(data, str(path))


def preprocess_images(paths: Sequence[str | os.PathLike[str]], config: InputConfig) -> np.ndarray:
    """Image files -> the float32 N x C x H x W batch the network takes, by the config's rule (Pillow, numpy)."""
    if not config.normalized:
        raise NasError("the export records no input normalisation (exported without trained weights, or from "
                       "weights whose run recorded none): its input rule is unknown")
    if config.color_mode is None:
        raise NasError(f"no image colour mode has {config.input_size[0]} channels")
    return np.stack([_preprocess(Path(path), config) for path in paths])


def _preprocess(path: Path, config: InputConfig) -> np.ndarray:
    pixels = read_square_image(path, config.input_size[1], config.color_mode).astype(np.float32)
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1).copy()
