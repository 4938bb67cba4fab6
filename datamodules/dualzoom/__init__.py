"""DRealSR-Nikon (×4) and CameraFusion (×2), the dual-zoom datasets of SelfDZSR (Zhang et al., ECCV 2022):
on-disk layout, the degradation residual n, the sample dataset, the DataModules and the ``prepare``
command that turns a user's own short-focus + telephoto captures into the layout.

The DataModules are imported lazily, so reading and preparing data does not import Lightning.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["DualZoomDataModule", "NikonDataModule", "CameraFusionDataModule"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("datamodules.dualzoom.datamodule"), name)
    raise AttributeError(f"module 'datamodules.dualzoom' has no attribute {name!r}")
