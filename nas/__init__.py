"""effnas: EfficientNet-style architecture search, compound scaling and export.

The public API is re-exported here lazily, so `import nas` stays cheap and pulls in neither torch,
Optuna nor fvcore until a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "NasError": "nas.errors",
    "Spec": "nas.spec",
    "StageSpec": "nas.spec",
    "load_spec": "nas.spec",
    "save_spec": "nas.spec",
    "resolve_spec": "nas.resolve",
    "parse_block_strings": "nas.blockstrings",
    "to_tf_strings": "nas.blockstrings",
    "to_timm_strings": "nas.blockstrings",
    "scale": "nas.compound",
    "round_channels": "nas.compound",
    "round_repeats": "nas.compound",
    "efficientnet": "nas.family",
    "FAMILY": "nas.family",
    "count_params": "nas.cost",
    "count_flops": "nas.cost",
    "peak_activation_bytes": "nas.cost",
    "build_model": "nas.model",
    "load_dataset": "nas.data",
    "train": "nas.train",
    "get_preset": "nas.train",
    "ProxyPreset": "nas.train",
    "load_space": "nas.space",
    "SearchConfig": "nas.search_config",
    "run_search": "nas.search",
    "export": "nas.export",
    "load": "nas.loader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nas' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
