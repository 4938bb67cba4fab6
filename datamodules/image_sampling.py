"""Bicubic sampling of a (large) uint8 image at arbitrary pixel coordinates, touching only the needed part."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["sample_bicubic"]


def sample_bicubic(image: np.ndarray, xs: Tensor, ys: Tensor) -> Tensor:
    """Bicubic samples of ``image`` (H, W, C) uint8 at pixel coordinates ``xs``, ``ys`` (h, w).

    Pixel centres are at integers (x = column), so integer coordinates return the pixels exactly.
    Only the bounding box of the coordinates (plus the 4×4 kernel's reach) is converted to float;
    outside the image the border is repeated. Returns float32 (C, h, w) in [0, 1] (clamped, since
    bicubic interpolation overshoots).
    """
    height, width = image.shape[:2]
    left = min(max(math.floor(float(xs.min())) - 2, 0), width - 1)
    top = min(max(math.floor(float(ys.min())) - 2, 0), height - 1)
    right = max(min(math.floor(float(xs.max())) + 4, width), left + 1)
    bottom = max(min(math.floor(float(ys.max())) + 4, height), top + 1)
    patch = torch.from_numpy(np.ascontiguousarray(image[top:bottom, left:right])).permute(2, 0, 1).float() / 255.0
    crop_h, crop_w = patch.shape[-2:]
    grid = torch.stack(
        (2 * (xs - left) / max(crop_w - 1, 1) - 1, 2 * (ys - top) / max(crop_h - 1, 1) - 1), dim=-1
    ).to(torch.float32)
    sampled = F.grid_sample(patch[None], grid[None], mode="bicubic", padding_mode="border", align_corners=True)[0]
    return sampled.clamp(0.0, 1.0)
