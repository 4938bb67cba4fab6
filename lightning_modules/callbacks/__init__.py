"""Callbacks: image panels for W&B, PNG prediction writer, per-run config saving."""

from lightning_modules.callbacks.image_panels import ImagePanelLogger
from lightning_modules.callbacks.png_writer import PNGPredictionWriter
from lightning_modules.callbacks.run_config import RunConfigSaver

__all__ = ["ImagePanelLogger", "PNGPredictionWriter", "RunConfigSaver"]
