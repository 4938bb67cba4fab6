"""Callbacks: image panels, PNG prediction writer, per-run config saving, best-value W&B summaries."""

from lightning_modules.callbacks.image_panels import ImagePanelLogger
from lightning_modules.callbacks.png_writer import PNGPredictionWriter
from lightning_modules.callbacks.run_config import RunConfigSaver
from lightning_modules.callbacks.wandb_summaries import WandbBestSummaries

__all__ = ["ImagePanelLogger", "PNGPredictionWriter", "RunConfigSaver", "WandbBestSummaries"]
