"""effnas: EfficientNet-style architecture search, compound scaling and export.

The public API is re-exported here lazily, so `import nas` stays cheap and pulls in neither torch,
Optuna nor fvcore until a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "NasError": "nas.errors",
    "EnvironmentFault": "nas.errors",
    "Spec": "nas.arch.spec",
    "StageSpec": "nas.arch.spec",
    "load_spec": "nas.arch.spec",
    "save_spec": "nas.arch.spec",
    "resolve_spec": "nas.arch.resolve",
    "parse_block_strings": "nas.arch.blockstrings",
    "to_tf_strings": "nas.arch.blockstrings",
    "to_timm_strings": "nas.arch.blockstrings",
    "scale": "nas.arch.compound",
    "round_channels": "nas.arch.compound",
    "round_repeats": "nas.arch.compound",
    "efficientnet": "nas.arch.efficientnet",
    "FAMILY": "nas.arch.efficientnet",
    "count_params": "nas.arch.cost",
    "count_flops": "nas.arch.cost",
    "peak_activation_bytes": "nas.arch.cost",
    "build_model": "nas.model.builder",
    "load_dataset": "nas.proxy.data",
    "train": "nas.proxy.trainer",
    "get_preset": "nas.proxy.presets",
    "ProxyPreset": "nas.proxy.presets",
    "load_space": "nas.arch.space",
    "measure_latency": "nas.latency.measure",
    "build_latency_table": "nas.latency.table",
    "LatencyTable": "nas.latency.table",
    "load_predictor": "nas.latency.predict",
    "predict_latency": "nas.latency.predict",
    "SearchConfig": "nas.search.config",
    "run_search": "nas.search.run",
    "export": "nas.deploy.export",
    "load": "nas.deploy.load",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nas' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
