"""rawzoom's DataModules, dataset readers and the capture simulator.

* ``datamodules.common``: what every dataset reads with (raw files, camera JPGs with EXIF), atomic
  writes, the :class:`~datamodules.common.errors.DatasetError` of bad input, the epoch-aware sampler;
* ``datamodules.srraw``: SR-RAW (Zhang et al. 2019);
* ``datamodules.dualzoom``: DRealSR-Nikon and CameraFusion, the dual-zoom layouts of SelfDZSR (2022);
* ``datamodules.zrr``: Zurich RAW-to-RGB (Ignatov et al. 2020), phone raws and DSLR JPGs;
* ``datamodules.simulate``: the capture simulator writing synthetic data in the real layouts.

The DataModules are imported lazily, so tools that only read or simulate data (``python -m
datamodules.simulate``) do not pay for importing Lightning.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from datamodules.common.raw import read_raw_mosaic

__all__ = ["ZoomDataModule", "SRRAWDataModule", "NikonDataModule", "CameraFusionDataModule", "ZRRDataModule",
           "read_raw_mosaic"]

_LAZY = {
    "ZoomDataModule": "datamodules.base",
    "SRRAWDataModule": "datamodules.srraw.datamodule",
    "NikonDataModule": "datamodules.dualzoom.datamodule",
    "CameraFusionDataModule": "datamodules.dualzoom.datamodule",
    "ZRRDataModule": "datamodules.zrr.datamodule",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
