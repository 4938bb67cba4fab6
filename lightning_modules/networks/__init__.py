"""Plain ``nn.Module`` networks: no losses, optimizers or data."""

from lightning_modules.networks.zoom_learn_net import ZoomLearnNet

__all__ = ["ZoomLearnNet"]
