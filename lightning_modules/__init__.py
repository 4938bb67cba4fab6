"""rawzoom's LightningModules, their networks, callbacks and the CLI."""

from lightning_modules.base import ZoomModule
from lightning_modules.raw_to_srgb import RawToSRGBJointModule
from lightning_modules.selfdzsr import SelfDZSRModule
from lightning_modules.zoom_learn import ZoomLearnModule

__all__ = ["ZoomModule", "ZoomLearnModule", "SelfDZSRModule", "RawToSRGBJointModule"]
