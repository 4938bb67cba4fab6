"""The base of rawzoom's DataModules: what every model must agree on with its data."""

from __future__ import annotations

from abc import abstractmethod

from lightning.pytorch import LightningDataModule

__all__ = ["ZoomDataModule"]


class ZoomDataModule(LightningDataModule):
    """Base class for the DataModules selectable by ``data.class_path``.

    Subclasses take ``zoom`` and ``patch_size`` constructor arguments (linked into the model by the
    CLI) and report the channel count of the network input through :attr:`in_channels`, which must
    be computable from the constructor arguments alone (no I/O).
    """

    zoom: int
    patch_size: int

    @property
    @abstractmethod
    def in_channels(self) -> int:
        """Channels of the network input produced by this DataModule."""
