"""Zurich RAW-to-RGB (ZRR, Ignatov et al. 2020), the phone-raw → DSLR-sRGB dataset of RAW-to-sRGB
(Zhang et al., ICCV 2021): on-disk layout and raw packing, the sample dataset and
:class:`~datamodules.zrr.datamodule.ZRRDataModule`.

The DataModule is imported lazily, so reading the data does not import Lightning.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["ZRRDataModule"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("datamodules.zrr.datamodule"), name)
    raise AttributeError(f"module 'datamodules.zrr' has no attribute {name!r}")
