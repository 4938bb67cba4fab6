"""Plain ``nn.Module`` networks: no losses, optimizers or data."""

from lightning_modules.networks.aux_lr_generator import AuxLRGenerator
from lightning_modules.networks.dzsr_feature_extractor import DZSRFeatureExtractor
from lightning_modules.networks.gcm import GlobalColorMapping
from lightning_modules.networks.liteispnet import LiteISPNet
from lightning_modules.networks.patchgan import PatchGANDiscriminator
from lightning_modules.networks.selfdzsr_net import SelfDZSRNet
from lightning_modules.networks.zoom_learn_net import RAW_TO_SRGB_BACKBONE, ZoomLearnNet

__all__ = [
    "AuxLRGenerator",
    "DZSRFeatureExtractor",
    "GlobalColorMapping",
    "LiteISPNet",
    "PatchGANDiscriminator",
    "RAW_TO_SRGB_BACKBONE",
    "SelfDZSRNet",
    "ZoomLearnNet",
]
