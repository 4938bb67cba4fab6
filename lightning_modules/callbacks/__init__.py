"""Callbacks: image panels, PNG prediction writer, per-run config saving, best-value W&B summaries,
per-image test metrics."""

from lightning_modules.callbacks.image_panels import ImagePanelLogger
from lightning_modules.callbacks.per_image_metrics import PerImageTestMetrics
from lightning_modules.callbacks.png_writer import PNGPredictionWriter
from lightning_modules.callbacks.run_config import RunConfigSaver
from lightning_modules.callbacks.wandb_summaries import WandbBestSummaries

__all__ = ["ImagePanelLogger", "PerImageTestMetrics", "PNGPredictionWriter", "RunConfigSaver", "WandbBestSummaries"]
