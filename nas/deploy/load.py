"""`nas.load`: rebuild the plain nn.Module from an exported folder, a run folder, a spec file or a Spec.

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

from nas.arch.spec import Spec
from nas.deploy.sources import read_source
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


def load(source: str | os.PathLike[str] | Spec, weights: str | os.PathLike[str] | None = None) -> nn.Module:
    """The plain nn.Module (eval mode) for a Spec, a name, a spec file, or an exported/run folder.

    Weights come from `weights` if given, else from the folder (model.safetensors or checkpoint.safetensors);
    without weights the network is freshly initialised. Input channels and classes follow the weights.
    """
    if isinstance(source, Spec):
        spec, weights_path = source, weights
    else:
        found = read_source(source, weights)
        spec, weights_path = found.spec, found.weights
    if weights_path is None:
        return build_model(spec).eval()
    tensors = read_weights(weights_path)
    return build_with_weights(fit_spec_to_weights(spec, tensors), tensors, origin=str(weights_path))
