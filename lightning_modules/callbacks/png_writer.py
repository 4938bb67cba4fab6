"""Writes predicted images as 8-bit PNG files, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from datamodules.common.atomic import atomic_path

__all__ = ["PNGPredictionWriter"]


class PNGPredictionWriter(BasePredictionWriter):
    """Save every predicted image as ``<output_dir>/<name>.png``.

    ``predict_step`` must return ``{"image": (B, 3, H, W) in [0, 1], "name": list of B names}``.

    Args:
        output_dir: Folder for the PNGs; default ``<trainer.default_root_dir>/predictions``.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir

    def folder(self, trainer: Trainer) -> Path:
        return Path(self.output_dir) if self.output_dir else Path(trainer.default_root_dir) / "predictions"

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        folder = self.folder(trainer)
        images = (prediction["image"].float().clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()
        for image, name in zip(images, prediction["name"]):
            with atomic_path(folder / f"{name}.png") as tmp:
                Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
