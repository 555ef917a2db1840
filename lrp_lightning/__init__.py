"""lrp-lightning: training-time explainability for PyTorch Lightning.

LRP attribution (rules, composites, canonizers, attributors), a Parquet run store,
dataset-wide SpRAy analysis and a TensorBoard plugin.

Importing this package is cheap (no torch, Lightning or TensorBoard): the TensorBoard plugin and the
store import it. The names below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "explain": "attribution",
    "Attribution": "attribution",
    "Gradient": "attribution",
    "SmoothGrad": "attribution",
    "IntegratedGradients": "attribution",
    "Occlusion": "attribution",
    "COMPOSITES": "composites",
    "get_composite": "composites",
    "RunStore": "store",
    "LRPCallback": "callbacks",
    "LRPPredictionWriter": "callbacks",
    "ClArCCallback": "callbacks",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lrp_lightning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
