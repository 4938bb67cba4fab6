"""Per-image test metrics, one row per test image, for every logger.

A module's ``test_step`` returns ``{"metrics": {name: (B,) tensor}, "names": [B file names]}`` (e.g.
SelfDZSR's ``psnr_corner``, ``psnr_bicubic_corner`` … per image). At the end of the test epoch the rows of
all ranks are gathered (images repeated by the distributed sampler's padding are kept once) and written as
the W&B table ``test/per_image`` when a W&B logger is present, else as ``test_per_image.csv`` in the run's
own folder. :attr:`PerImageTestMetrics.rows` keeps the last table.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

from datamodules.common.atomic import atomic_path
from lightning_modules.callbacks.run_config import run_folder

__all__ = ["PerImageTestMetrics"]


class PerImageTestMetrics(Callback):
    """Collect ``outputs["metrics"]`` per image over the test epoch; write them once, sorted by name (rank 0)."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, float]] = {}
        self.rows: list[dict[str, Any]] = []

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rows = {}

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not isinstance(outputs, dict) or "metrics" not in outputs or "names" not in outputs:
            return
        values = {name: value.detach().float().cpu().tolist() for name, value in outputs["metrics"].items()}
        for index, image in enumerate(outputs["names"]):
            self._rows[image] = {name: column[index] for name, column in values.items()}

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rows = self._rows
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            gathered: list[dict[str, dict[str, float]]] = [{} for _ in range(trainer.world_size)]
            dist.all_gather_object(gathered, rows)
            rows = {image: row for part in gathered for image, row in part.items()}
        if not trainer.is_global_zero or not rows:
            return
        columns = sorted({name for row in rows.values() for name in row})
        self.rows = [{"image": image, **{name: rows[image].get(name) for name in columns}} for image in sorted(rows)]
        wandb_loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        for logger in wandb_loggers:
            logger.log_table(
                key="test/per_image", columns=["image", *columns], data=[list(row.values()) for row in self.rows]
            )
        if not wandb_loggers:
            with atomic_path(Path(run_folder(trainer)) / "test_per_image.csv") as tmp:
                with open(tmp, "w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=["image", *columns])
                    writer.writeheader()
                    writer.writerows(self.rows)
