"""Image panels of fixed validation samples, logged to Weights & Biases.

Each panel is ``input | output | target | |error|`` side by side, where the module's
``validation_step`` returns ``{"panels": {"input": …, "output": …, "target": …}}`` with images
(B, 3, H, W) in [0, 1] on the output grid (the input upsampled, the target as aligned for metrics).
The validation loader is not shuffled, so the first ``num_samples`` samples seen by rank 0 are the
same every epoch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

__all__ = ["ImagePanelLogger", "compose_panel"]

PANEL_ORDER = ("input", "output", "target")


def compose_panel(images: dict[str, Tensor], error_gain: float = 4.0) -> Tensor:
    """``input | output | target | clamp(gain·|output − target|)`` for one sample: (3, H, 4W)."""
    tiles = [images[name].float().clamp(0.0, 1.0) for name in PANEL_ORDER]
    error = (error_gain * (images["output"].float() - images["target"].float()).abs()).clamp(0.0, 1.0)
    return torch.cat([*tiles, error], dim=-1)


class ImagePanelLogger(Callback):
    """Log ``num_samples`` validation panels per validation epoch (rank 0, W&B loggers only).

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

    def _active(self, trainer: Trainer) -> bool:
        return trainer.is_global_zero and not trainer.sanity_checking and any(
            isinstance(logger, WandbLogger) for logger in trainer.loggers
        )

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
        for index in range(images["output"].shape[0]):
            if len(self._panels) >= self.num_samples:
                break
            panel = compose_panel({name: images[name][index] for name in PANEL_ORDER}, self.error_gain)
            if panel.shape[-2] > self.max_height:
                factor = self.max_height / panel.shape[-2]
                panel = F.interpolate(panel[None], scale_factor=factor, mode="area")[0]
            self._panels.append(panel.detach().cpu())

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active(trainer) or not self._panels:
            return
        captions = [f"sample {i}: input | output | target | {self.error_gain:g}×|error|" for i in range(len(self._panels))]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/panels", images=list(self._panels), caption=captions)
        self._panels = []
