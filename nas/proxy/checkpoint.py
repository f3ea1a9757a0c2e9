"""What a training run leaves in its folder: a safetensors checkpoint of the weights, a metrics JSON, and
the training state a killed run resumes from.

The checkpoint's metadata carries the spec of the trained network and the input normalisation, so the file
alone is enough to rebuild and run the model. The training state (`save_train_state`) is one safetensors
file too: the tensors (weights, EMA, optimizer buffers, random-generator states) under prefixed names, and
everything else (step, history, what the run is) as JSON in its metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from nas._common.atomic import write_bytes_atomic, write_text_atomic
from nas.arch.spec import Spec
from nas.errors import NasError


def save_checkpoint(path: str | os.PathLike[str], state_dict: dict[str, torch.Tensor], spec: Spec,
                    metadata: dict[str, Any] | None = None) -> None:
    """Write `state_dict` as safetensors, atomically, with the spec (and any JSON-able `metadata`) embedded."""
    header = {"spec": spec.to_json(), **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    tensors = {k: v.detach().contiguous() for k, v in state_dict.items()}
    # In memory first: safetensors' file writer reports a full disk as its own error type, not OSError.
    write_bytes_atomic(path, save(tensors, metadata=header))


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], Spec, dict[str, Any]]:
    """(state_dict, spec, metadata) from a checkpoint written by `save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise NasError(f"checkpoint not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        state_dict = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise NasError(f"{path}: not a safetensors checkpoint ({exc})") from exc
    if "spec" not in header:
        raise NasError(f"{path}: checkpoint has no spec in its metadata")
    spec = Spec.from_json(header.pop("spec"))
    return state_dict, spec, {k: json.loads(v) for k, v in header.items()}


def write_metrics(path: str | os.PathLike[str], metrics: dict[str, Any]) -> None:
    """Write `metrics` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(metrics, indent=2, sort_keys=False) + "\n")


def save_train_state(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write a resumable training state atomically: `tensors` as safetensors, `meta` (JSON-able) beside them."""
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                metadata={"train_state": json.dumps(meta)})
    write_bytes_atomic(path, data)  # in memory first, as save_checkpoint: a full disk is an OSError


def load_train_state(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of a state written by `save_train_state`; a damaged file is a NasError naming it."""
    path = Path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path))
        meta = json.loads(header["train_state"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise NasError(f"{path}: not a training state this tool wrote ({exc}); delete it to start afresh") from exc
    return tensors, meta
