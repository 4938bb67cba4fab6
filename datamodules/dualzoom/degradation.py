"""The degradation residual n of SelfDZSR's auxiliary-LR (paper eq. 5; reference selfdzsr.md §3.2).

For a GT patch y (3, s·p, s·p) in [0, 1]:

    n = D(y) − down(y),      D = the three steps below in a random order, each ending in uint8
                                 (values rounded and clipped to 0…255, as the official code clips):
        "down":  down(·) by s;
        "noise": + N(0, σ²), σ ~ U{5, …, 30} on the 0–255 scale, added at the current resolution
                 (at HR when it comes before "down");
        "jpeg":  Pillow JPEG in memory, quality ~ U{60, …, 95}, 4:2:0 chroma subsampling.

``down`` is ONE resampler on both sides of the subtraction: s×s area averaging (pixel areas kept in
place, LR pixel (i, j) = mean of HR pixels s·i … s·i + s − 1). The official code used cv2 bilinear
inside D and torch bicubic with ``align_corners=True`` outside, which leaves an image-dependent kernel
difference and up to ±1.5 HR px of grid offset in n (reference §8 item 11); here n holds only the
noise, the JPEG error and rounding. The JPEG works on RGB as RGB (the official passed RGB to OpenCV as
BGR). All randomness comes from the caller's torch generator.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

__all__ = ["STEPS", "DegradationDraw", "area_downscale", "draw_degradation", "degrade", "degradation_residual"]

STEPS = ("down", "noise", "jpeg")
NOISE_SIGMAS = (5, 30)
JPEG_QUALITIES = (60, 95)


@dataclass(frozen=True)
class DegradationDraw:
    """One draw of D: the steps in order (any subset of :data:`STEPS`), σ (0–255 scale) and JPEG quality."""

    order: tuple[str, ...]
    sigma: float
    quality: int


def draw_degradation(generator: torch.Generator) -> DegradationDraw:
    """A random order of the three steps, σ ~ U{5…30} and quality ~ U{60…95}, always drawn in that order."""
    order = tuple(STEPS[i] for i in torch.randperm(len(STEPS), generator=generator).tolist())
    sigma = int(torch.randint(NOISE_SIGMAS[0], NOISE_SIGMAS[1] + 1, (), generator=generator))
    quality = int(torch.randint(JPEG_QUALITIES[0], JPEG_QUALITIES[1] + 1, (), generator=generator))
    return DegradationDraw(order, sigma, quality)


def area_downscale(image: Tensor, scale: int) -> Tensor:
    """s×s area averaging of a float image (..., H, W) with H, W multiples of s → (..., H/s, W/s)."""
    height, width = image.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(f"image of {height}×{width} is not a multiple of the scale {scale}")
    flat = image.reshape(-1, 1, height, width)
    return F.avg_pool2d(flat, scale).reshape(*image.shape[:-2], height // scale, width // scale)


def _to_uint8(values: Tensor) -> Tensor:
    return values.round().clamp_(0, 255).to(torch.uint8)


def _jpeg(image: Tensor, quality: int) -> Tensor:
    """Pillow JPEG round trip of uint8 RGB (3, H, W)."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality, subsampling="4:2:0")
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return torch.from_numpy(np.array(decoded.convert("RGB"))).permute(2, 0, 1).contiguous()


def degrade(gt: Tensor, scale: int, draw: DegradationDraw, generator: torch.Generator) -> Tensor:
    """D(gt): uint8 (3, H, W) → uint8 (3, H/s, W/s) when ``draw.order`` holds "down" (see the module docstring)."""
    if gt.dtype != torch.uint8 or gt.dim() != 3 or gt.shape[0] != 3:
        raise ValueError(f"expected a uint8 RGB image (3, H, W), got {gt.dtype} {tuple(gt.shape)}")
    image = gt
    for step in draw.order:
        if step == "down":
            image = _to_uint8(area_downscale(image.float(), scale))
        elif step == "noise":
            noise = torch.randn(image.shape, generator=generator) * draw.sigma
            image = _to_uint8(image.float() + noise)
        elif step == "jpeg":
            image = _jpeg(image, draw.quality)
        else:
            raise ValueError(f"unknown degradation step {step!r}; expected one of {STEPS}")
    return image


def degradation_residual(
    gt: Tensor, scale: int, generator: torch.Generator, draw: DegradationDraw | None = None
) -> Tensor:
    """n = D(gt)/255 − down(gt) for a GT patch (3, H, W) in [0, 1] → float32 (3, H/s, W/s).

    ``draw`` defaults to :func:`draw_degradation` from ``generator``, which then also draws the noise.
    """
    draw = draw_degradation(generator) if draw is None else draw
    if "down" not in draw.order:
        raise ValueError(f"the degradation must contain the 'down' step, got {draw.order}")
    as_bytes = _to_uint8(gt.float() * 255.0)
    degraded = degrade(as_bytes, scale, draw, generator).float() / 255.0
    return degraded - area_downscale(gt.float(), scale)
