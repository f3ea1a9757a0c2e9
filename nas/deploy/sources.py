"""What `nas export` and `nas.load` accept, read into one description: the spec, its weights, where it came from.

A source is a family name or spec file (anything `nas.resolve.resolve_spec` reads), or a folder:
- a study folder (`runs/<study>/best.json`, optional `checkpoint.safetensors`, optional `family/b1.json`...),
- a `nas train` run folder (`metrics.json` whose "spec" is the proxy spec, `checkpoint.safetensors`),
- an exported folder (`spec.json`, optional `model.safetensors`, `config.json`).
What the training run recorded about its input (`TrainingRecord`: normalisation, resolution, classes, data
set) comes from the run document, else from the weights file's metadata, else from an export's config.json.
No torch here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas._common.runfiles import (
    BEST_FILE,
    CONFIG_FILE,
    FAMILY_FOLDER,
    METRICS_FILE,
    SPEC_DOCUMENTS,
    SPEC_FILE,
)
from nas.arch.resolve import resolve_spec
from nas.arch.spec import Spec, load_spec
from nas.deploy.preprocessing import TrainingRecord
from nas.errors import NasError


@dataclass(frozen=True)
class Source:
    """A model to export or load: its spec, its weights file (if any), its provenance and its scaled family."""

    spec: Spec
    weights: Path | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    family: tuple[tuple[str, Spec], ...] = ()  # (member name from its file, e.g. 'b1', spec)
    training: TrainingRecord | None = None  # how the weights were trained to see their input, when recorded


def read_source(source: str | Path, weights: str | Path | None = None) -> Source:
    """Read a name, spec file or run/export folder; an explicit `weights` file overrides the folder's."""
    path = Path(source)
    found = _read_folder(path) if path.is_dir() else Source(resolve_spec(str(source)), provenance={"source": str(source)})
    if weights is None:
        return found
    weights = Path(weights)
    if not weights.is_file():
        raise NasError(f"weights file not found: {weights}")
    return Source(found.spec, weights, found.provenance, found.family, weights_training(weights))


def _read_folder(folder: Path) -> Source:
    for name, weights_name in SPEC_DOCUMENTS:
        document = folder / name
        if document.is_file():
            weights = folder / weights_name
            weights = weights if weights.is_file() else None
            return Source(
                spec=load_spec(document),
                weights=weights,
                provenance={"source": str(folder), **_provenance(document)},
                family=_read_family(folder / FAMILY_FOLDER),
                training=(TrainingRecord.from_run(_read_json(document)) or weights_training(weights)
                          or TrainingRecord.from_run(_read_json(folder / CONFIG_FILE))),
            )
    raise NasError(f"{folder} holds no {BEST_FILE}, {METRICS_FILE} or {SPEC_FILE}: not a study, run or export folder")


def weights_training(path: Path | None) -> TrainingRecord | None:
    """The training record a weights file carries in its safetensors metadata (None if absent)."""
    if path is None:
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            header = {key: json.loads(value) for key, value in (handle.metadata() or {}).items()}
        # An export's weights carry its config.json; a `nas train` checkpoint its run's facts.
        return TrainingRecord.from_run(header.get("config") or header)
    except (SafetensorError, OSError, ValueError):
        return None  # not ours to judge here: reading the weights says what is wrong with the file


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _provenance(document: Path) -> dict[str, Any]:
    """The scalar facts a run document records beside its spec (study, trial, seed, dataset, accuracy...)."""
    data = json.loads(document.read_text())
    if not isinstance(data, dict) or "spec" not in data:
        return {}
    return {key: value for key, value in data.items()
            if key != "spec" and isinstance(value, (str, int, float, bool)) and value is not None}


def _read_family(folder: Path) -> tuple[tuple[str, Spec], ...]:
    """The scaling stage's members, in order b1, b2, ... (the folder may be absent)."""
    if not folder.is_dir():
        return ()
    files = sorted(folder.glob("*.json"), key=lambda p: (_member_number(p.stem), p.stem))
    return tuple((path.stem, load_spec(path)) for path in files)


def _member_number(stem: str) -> int:
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else 10**6
