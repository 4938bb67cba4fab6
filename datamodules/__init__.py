"""rawzoom's DataModules, dataset readers and the capture simulator.

The DataModules are imported lazily, so tools that only read or simulate data (``python -m
datamodules.simulate``) do not pay for importing Lightning.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["ZoomDataModule", "SRRAWDataModule"]

_EXPORTS = {"ZoomDataModule": "datamodules.base", "SRRAWDataModule": "datamodules.srraw"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
