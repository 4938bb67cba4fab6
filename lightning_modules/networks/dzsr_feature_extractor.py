"""SelfDZSR's frozen feature extractor for Ref ↔ LR matching (the official ``ContrasExtractorSep``).

Reference ``selfdzsr.md`` §1.3. Two separate branches of identical structure, one for the LR / aux-LR (``"lr"``)
and one for the Ref (``"ref"``). For an RGB image x (B, 3, H, W) in [0, 1]:

    f = conv3_1(ReLU(conv2_2(ReLU(conv2_1(ReLU(conv1_2(ReLU(conv1_1((x − μ)/σ)))))))))     (B, 256, H, W)
    out = bilinear(f, size=(H//4, W//4), align_corners=True)                                 (B, 256, H//4, W//4)

with VGG16's first five convolutions, both max-pools removed, no ReLU after conv3_1, and the ImageNet μ, σ.
The output size is H//4 × W//4 (floor: an H not divisible by 4 loses nothing but gets H//4 rows). With
align_corners=True the samples run from the first to the last input pixel, so their spacing is (H − 1)/(H//4 − 1)
input pixels (47/11 ≈ 4.27 for H = 48), not exactly the stride 4 that the offset upsampling assumes; the official
code (``scale_factor=1/4``, same sizes and samples) has the same property. H, W ≥ 4.

The official weights start from ImageNet VGG16 (:meth:`DZSRFeatureExtractor.load_torchvision_vgg16`) and were then
contrastively pre-trained (C2-Matching style); that pre-training and its checkpoints are not released. The
extractor is frozen: no parameter requires gradients and it stays in eval mode (it has no mode-dependent layers).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DZSRFeatureExtractor", "IMAGENET_MEAN", "IMAGENET_STD", "VGG16_CONV_INDICES"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Layer name → index in torchvision's ``vgg16().features`` of the convolutions kept.
VGG16_CONV_INDICES = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10}
_CHANNELS = {
    "conv1_1": (3, 64), "conv1_2": (64, 64), "conv2_1": (64, 128), "conv2_2": (128, 128), "conv3_1": (128, 256)
}

Branch = Literal["lr", "ref"]


class VGG16Conv31(nn.Module):
    """One branch: ``model`` = conv1_1, relu1_1, conv1_2, relu1_2, conv2_1, relu2_1, conv2_2, relu2_2, conv3_1."""

    def __init__(self) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for name, (c_in, c_out) in _CHANNELS.items():
            layers[name] = nn.Conv2d(c_in, c_out, 3, padding=1)
            if name != "conv3_1":
                layers[name.replace("conv", "relu")] = nn.ReLU()
        self.model = nn.Sequential(layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class DZSRFeatureExtractor(nn.Module):
    """Frozen two-branch VGG16-conv3_1 features at 1/4 resolution: (B, 3, H, W) → (B, 256, H//4, W//4).

    ``forward(image, branch)`` with branch ``"lr"`` (LR / aux-LR; official ``feature_extraction_image1``) or
    ``"ref"`` (official ``feature_extraction_image2``). 1,110,656 parameters (555,328 per branch), all frozen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lr_branch = VGG16Conv31()
        self.ref_branch = VGG16Conv31()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> DZSRFeatureExtractor:
        """Stay in eval mode: the extractor is frozen."""
        return super().train(False)

    def load_torchvision_vgg16(self, state_dict: Mapping[str, Tensor]) -> None:
        """Copy torchvision VGG16 ``features.{0,2,5,7,10}.{weight,bias}`` into both branches (ImageNet start)."""
        wanted = {
            f"model.{name}.{kind}": f"features.{index}.{kind}"
            for name, index in VGG16_CONV_INDICES.items()
            for kind in ("weight", "bias")
        }
        own = self.lr_branch.state_dict()
        missing = [source for source in wanted.values() if source not in state_dict]
        if missing:
            raise ValueError(f"the VGG16 state dict lacks {missing}; expected a torchvision vgg16 state dict")
        wrong = [
            f"{source}: expected {tuple(own[key].shape)}, got {tuple(state_dict[source].shape)}"
            for key, source in wanted.items()
            if tuple(state_dict[source].shape) != tuple(own[key].shape)
        ]
        if wrong:
            raise ValueError(f"mis-shaped VGG16 weights: {'; '.join(wrong)}")
        weights = {key: state_dict[source] for key, source in wanted.items()}
        self.lr_branch.load_state_dict(weights, strict=True)
        self.ref_branch.load_state_dict(weights, strict=True)

    def forward(self, image: Tensor, branch: Branch) -> Tensor:
        if branch not in ("lr", "ref"):
            raise ValueError(f"expected branch 'lr' or 'ref', got {branch!r}")
        if not isinstance(image, Tensor) or image.dim() != 4 or image.shape[1] != 3 or not image.is_floating_point():
            got = (tuple(image.shape), image.dtype) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"expected a floating-point RGB image of shape (B, 3, H, W), got {got}")
        height, width = image.shape[-2:]
        if height < 4 or width < 4:
            raise ValueError(f"expected an image of at least 4×4 pixels, got {height}×{width}")
        features = (self.lr_branch if branch == "lr" else self.ref_branch)((image - self.mean) / self.std)
        return F.interpolate(features, size=(height // 4, width // 4), mode="bilinear", align_corners=True)
