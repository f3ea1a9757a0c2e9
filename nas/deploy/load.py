"""`nas.load`: rebuild the plain nn.Module from an exported folder, a run folder, a spec file or a Spec, and,
when asked, the preprocessing its input needs (the export's config.json, see nas.deploy.preprocessing).

Needs only torch, safetensors and the spec/model modules -- never Optuna or fvcore -- so an exported
architecture runs wherever torch does.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from nas._common.runfiles import CONFIG_FILE
from nas.arch.spec import Spec
from nas.deploy.preprocessing import InputConfig, input_config, read_config
from nas.deploy.sources import read_source, weights_training
from nas.errors import NasError
from nas.model.builder import EfficientNet, build_model


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; a missing or corrupt file is a NasError naming it."""
    path = Path(path)
    if not path.is_file():
        raise NasError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise NasError(f"{path}: not a readable safetensors file ({exc})") from None


def fit_spec_to_weights(spec: Spec, tensors: dict[str, torch.Tensor]) -> Spec:
    """The spec with input channels and classes taken from the weights.

    A search's checkpoint is trained at the proxy shape (e.g. 1 channel, 10 classes) while its best.json
    holds the deployed spec; everything else must match, which `build_with_weights` checks.
    """
    changes = {}
    if "stem.conv.weight" in tensors:
        changes["in_channels"] = int(tensors["stem.conv.weight"].shape[1])
    if "classifier.weight" in tensors:
        changes["num_classes"] = int(tensors["classifier.weight"].shape[0])
    return spec.replace(**changes)


def build_with_weights(spec: Spec, tensors: dict[str, torch.Tensor], origin: str = "weights") -> EfficientNet:
    """The network for `spec` holding exactly `tensors` (strict: every key, every shape), in eval mode."""
    model = build_model(spec)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()
        reason = detail[1].strip() if len(detail) > 1 else detail[0]
        raise NasError(f"the weights in {origin} do not fit the spec: {reason}") from None
    return model.eval()


def load(source: str | os.PathLike[str] | Spec, weights: str | os.PathLike[str] | None = None, *,
         with_config: bool = False) -> nn.Module | tuple[nn.Module, InputConfig]:
    """The plain nn.Module (eval mode) for a Spec, a name, a spec file, or an exported/run folder.

    Weights come from `weights` if given, else from the folder (model.safetensors or checkpoint.safetensors);
    without weights the network is freshly initialised. Input channels and classes follow the weights.
    With `with_config=True` returns `(model, config)`: the export's config.json, or for other sources the
    config an export would write (mean and std None when no training run recorded them).
    """
    if isinstance(source, Spec):
        spec, weights_path = source, Path(weights) if weights is not None else None
        training = weights_training(weights_path)
    else:
        found = read_source(source, weights)
        spec, weights_path, training = found.spec, found.weights, found.training
    if weights_path is None:
        model = build_model(spec).eval()
    else:
        tensors = read_weights(weights_path)
        spec = fit_spec_to_weights(spec, tensors)
        model = build_with_weights(spec, tensors, origin=str(weights_path))
    if not with_config:
        return model
    if not isinstance(source, Spec) and (Path(source) / CONFIG_FILE).is_file():
        return model, read_config(source)
    if training is not None and training.resolution:
        spec = spec.replace(resolution=training.resolution)
    return model, input_config(spec, training if weights_path is not None else None)
