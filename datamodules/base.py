"""The base of rawzoom's DataModules: what every model must agree on with its data."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules.common.epoch_sampler import EpochSampler

__all__ = ["ZoomDataModule"]


class ZoomDataModule(LightningDataModule):
    """Base class for the DataModules selectable by ``data.class_path``.

    Subclasses take ``zoom`` and ``patch_size`` constructor arguments (linked into the model by the
    CLI) and report the channel count of the network input through :attr:`in_channels`, which must
    be computable from the constructor arguments alone (no I/O).

    Loaders: ``setup`` fills :attr:`datasets` by split name (``train``, ``val``, ``test``, ``predict``); training
    reads shuffled (index, epoch) keys from :class:`EpochSampler` (per DDP rank), evaluation batches of
    ``eval_batch_size``, prediction one image at a time.
    """

    zoom: int
    patch_size: int
    batch_size: int
    eval_batch_size: int
    num_workers: int
    seed: int
    datasets: dict[str, Dataset]
    #: Drop the incomplete last training batch (the official loaders of the dual-zoom and ZRR papers do).
    drop_last_train_batch: ClassVar[bool] = True

    @property
    @abstractmethod
    def in_channels(self) -> int:
        """Channels of the network input produced by this DataModule."""

    def _dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            raise RuntimeError(f"call setup() for a stage that needs the {name!r} data before asking for its dataloader")
        return self.datasets[name]

    def _loader(self, dataset: Dataset, batch_size: int, sampler=None, drop_last: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochSampler(dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=self.seed)
        return self._loader(dataset, self.batch_size, sampler, drop_last=self.drop_last_train_batch)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val"), self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("predict"), 1)
