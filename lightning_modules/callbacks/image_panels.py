"""Image panels of fixed validation samples, for every logger.

Each panel shows the images a module's ``validation_step`` returns under ``{"panels": {name: (B, 3, H, W)}}``
(values in [0, 1], all on the output grid), side by side in the order given, followed by the amplified
absolute error ``clamp(gain·|output − target|)`` when both ``output`` and ``target`` are among them. E.g.
Zoom-to-Learn returns input | output | target. The validation loader is not shuffled, so the first
``num_samples`` samples seen by rank 0 are the same every epoch.

Panels are 8-bit RGB (round(255·x)). They go to W&B (``val/panels``) when a W&B logger is present, else
to PNG files ``panels/val_epoch<E>_sample<i>.png`` in the run's own folder (the CSV or TensorBoard
``version_N`` folder, or ``default_root_dir``). :attr:`ImagePanelLogger.last_panels` keeps the panels
of the last epoch as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from PIL import Image
from torch import Tensor

from datamodules.common.atomic import atomic_path
from lightning_modules.callbacks.run_config import run_folder

__all__ = ["ImagePanelLogger", "compose_panel", "panel_to_uint8"]


def compose_panel(images: dict[str, Tensor], error_gain: float = 4.0) -> Tensor:
    """The tiles of one sample side by side, plus ``clamp(gain·|output − target|)``: (3, H, k·W) in [0, 1]."""
    tiles = [image.float().clamp(0.0, 1.0) for image in images.values()]
    if "output" in images and "target" in images:
        tiles.append((error_gain * (images["output"].float() - images["target"].float()).abs()).clamp(0.0, 1.0))
    return torch.cat(tiles, dim=-1)


def panel_to_uint8(panel: Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] → (H, W, 3) uint8 = round(255·x), what every logger is given."""
    return (panel.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


class ImagePanelLogger(Callback):
    """Log ``num_samples`` validation panels per validation epoch (rank 0).

    Args:
        num_samples: Number of fixed validation samples shown.
        max_height: Panels taller than this are downscaled (bounds the upload size).
        error_gain: Amplification of the absolute error tile.
    """

    def __init__(self, num_samples: int = 4, max_height: int = 384, error_gain: float = 4.0) -> None:
        self.num_samples = num_samples
        self.max_height = max_height
        self.error_gain = error_gain
        self._panels: list[Tensor] = []
        self._names: tuple[str, ...] = ()
        self.last_panels: list[np.ndarray] = []

    def _active(self, trainer: Trainer) -> bool:
        return trainer.is_global_zero and not trainer.sanity_checking

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._panels = []

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self._active(trainer) or len(self._panels) >= self.num_samples:
            return
        if not isinstance(outputs, dict) or "panels" not in outputs:
            return
        images = outputs["panels"]
        self._names = tuple(images)
        for index in range(next(iter(images.values())).shape[0]):
            if len(self._panels) >= self.num_samples:
                break
            panel = compose_panel({name: image[index] for name, image in images.items()}, self.error_gain)
            if panel.shape[-2] > self.max_height:
                factor = self.max_height / panel.shape[-2]
                panel = F.interpolate(panel[None], scale_factor=factor, mode="area")[0]
            self._panels.append(panel.detach().cpu())

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active(trainer) or not self._panels:
            return
        panels = [panel_to_uint8(panel) for panel in self._panels]
        layout = " | ".join(self._names) + (f" | {self.error_gain:g}×|error|" if {"output", "target"} <= set(self._names) else "")
        captions = [f"sample {i}: {layout}" for i in range(len(panels))]
        wandb_loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        for logger in wandb_loggers:
            logger.log_image(key="val/panels", images=panels, caption=captions)
        if not wandb_loggers:
            folder = run_folder(trainer) / "panels"
            for index, panel in enumerate(panels):
                with atomic_path(Path(folder) / f"val_epoch{trainer.current_epoch}_sample{index}.png") as tmp:
                    Image.fromarray(panel).save(tmp, format="PNG")
        self.last_panels = panels
        self._panels = []
