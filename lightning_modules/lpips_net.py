"""LPIPS (Zhang et al. 2018, v0.1, AlexNet) built without any download.

The lpips wheel ships the small linear calibration layers; the AlexNet backbone comes through the
``pretrained`` resolution (:mod:`lightning_modules.pretrained`). With ``pretrained=False`` the backbone
is random: the value is then *not* LPIPS, and callers must log it under another name
(:func:`lpips_metric_name`).
"""

from __future__ import annotations

import warnings

import lpips
import torch
from torch import Tensor, nn

from lightning_modules.pretrained import Pretrained, load_weights

__all__ = ["build_lpips", "lpips_distance", "lpips_metric_name"]


def lpips_metric_name(pretrained: Pretrained) -> str:
    """``"lpips"`` with a real backbone, ``"lpips_random_backbone"`` otherwise."""
    return "lpips" if pretrained is not False else "lpips_random_backbone"


def build_lpips(pretrained: Pretrained) -> nn.Module:
    """Frozen LPIPS-alex in eval mode; the AlexNet backbone from ``pretrained`` (or random)."""
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    state = load_weights(pretrained, "alexnet")
    if state is not None:
        # lpips splits torchvision's `features` into slices that keep the original module indices.
        backbone = {}
        for slice_name, block in model.net.named_children():
            for index, _ in block.named_children():
                for param in ("weight", "bias"):
                    key = f"features.{index}.{param}"
                    if key in state:
                        backbone[f"{slice_name}.{index}.{param}"] = state[key]
        model.net.load_state_dict(backbone, strict=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def lpips_distance(model: nn.Module, pred: Tensor, target: Tensor) -> Tensor:
    """Per-image LPIPS (B,) of images in [0, 1] (B, 3, H, W), computed in float32."""
    with torch.autocast(device_type=pred.device.type, enabled=False):
        return model(pred.float() * 2 - 1, target.float() * 2 - 1).flatten()
