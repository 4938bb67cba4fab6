"""Callbacks on their own: panel composition, and best-value summaries of a real (offline) W&B run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from torch.utils.data import DataLoader

from lightning_modules.callbacks import WandbBestSummaries
from lightning_modules.callbacks.image_panels import compose_panel, panel_to_uint8


def test_panel_is_the_tiles_and_the_amplified_error_in_eight_bits():
    output = torch.full((3, 2, 2), 0.5)
    target = torch.full((3, 2, 2), 0.4)
    panel = compose_panel({"input": torch.zeros(3, 2, 2), "output": output, "target": target}, error_gain=4.0)
    assert panel.shape == (3, 2, 8)
    pixels = panel_to_uint8(panel)
    assert pixels.dtype == np.uint8 and pixels.shape == (2, 8, 3)
    assert pixels[0, :, 0].tolist() == [0, 0, 128, 128, 102, 102, 102, 102]  # round(255·x); error 4·0.1 = 0.4
    # a tile list without both output and target gets no error tile
    assert compose_panel({"lr": torch.ones(3, 2, 2), "ref": torch.ones(3, 2, 3)}).shape == (3, 2, 5)


class _LogsValidation(LightningModule):
    """Logs val/psnr = 1, 3, 2 and val/loss = 4, 2, 3 in three validation epochs."""

    PSNR = (1.0, 3.0, 2.0)

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return (self.weight - 1.0) ** 2

    def validation_step(self, batch, batch_idx):
        psnr = self.PSNR[self.current_epoch]
        self.log_dict({"val/psnr": psnr, "val/loss": 5.0 - psnr})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def metric_goals(self) -> dict[str, str]:
        return {"val/psnr": "max", "val/loss": "min"}


def test_wandb_summaries_keep_the_best_validation_values(tmp_path):
    logger = WandbLogger(project="rawzoom-test", save_dir=str(tmp_path), offline=True)
    loader = DataLoader(torch.zeros(1, 1))
    trainer = Trainer(
        max_epochs=3, logger=logger, callbacks=[WandbBestSummaries()], enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
    )
    trainer.fit(_LogsValidation(), loader, loader)
    summary = logger.experiment.summary
    try:
        assert summary["val/psnr"]["max"] == pytest.approx(3.0)  # not the last value, 2
        assert summary["val/loss"]["min"] == pytest.approx(2.0)
    finally:
        logger.experiment.finish()
