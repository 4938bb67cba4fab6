"""Saves the resolved LightningCLI configuration into each run's own folder and into W&B.

Lightning's stock ``SaveConfigCallback`` writes ``config.yaml`` into ``trainer.log_dir``, which for
W&B is the shared ``save_dir``: a second run into the same folder then aborts. Here the file goes to
the run's own folder — the W&B run's files folder (synced with the run) or the CSV/TensorBoard
``version_N`` folder — and the whole configuration is also logged as W&B hyper-parameters.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from datamodules.common.atomic import atomic_path

__all__ = ["RunConfigSaver", "run_folder"]


def run_folder(trainer: Trainer) -> Path:
    """The folder that belongs to this run only (falls back to ``default_root_dir``)."""
    logger = trainer.logger
    if isinstance(logger, WandbLogger):
        return Path(logger.experiment.dir)
    if logger is not None and logger.log_dir is not None:
        return Path(logger.log_dir)
    return Path(trainer.default_root_dir)


class RunConfigSaver(SaveConfigCallback):
    """Write ``config.yaml`` into :func:`run_folder` (rank 0) and log it to every logger."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        path = run_folder(trainer) / self.config_filename
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        config = yaml.safe_load(text)
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config} if not isinstance(logger, WandbLogger) else config)
