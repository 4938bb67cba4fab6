"""The simulated camera: photometric drift, the Bayer sensor and the in-camera ISP that makes the JPG.

Sensor, for the scene's linear sRGB ``s`` (3, H, W) seen by one shot:

    x = M⁻¹ · (e · τ ⊙ s) / g            camera RGB, normalised to [0, 1] (then the RGGB mosaic of it)
    x̃ = x + sqrt(shot·x + read²) · n      n ~ N(0, 1): Gaussian approximation of Poisson-Gaussian noise
    raw = clip(round(black + x̃·(white − black)), black, white)      uint16, 14 bit

with exposure ``e``, per-channel tint ``τ``, white-balance gains ``g`` (R, 1, B) (the illuminant
cast the camera's white balance removes) and ``M`` = :data:`CAMERA_TO_SRGB`.

ISP (the camera JPG)::

    jpg = round(255 · clip(M · (g ⊙ (demosaic(raw) − black)/(white − black)), 0, 1)^(1/2.2))

so up to noise, clipping and demosaicing the JPG shows ``e · τ ⊙ s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ops.bayer import demosaic, gamma_compress, mosaic_rgb, normalize_levels

__all__ = [
    "CAMERA_MAKE",
    "CAMERA_MODEL",
    "BLACK_LEVEL",
    "WHITE_LEVEL",
    "CFA_PATTERN",
    "SRGB_TO_CAMERA",
    "CAMERA_TO_SRGB",
    "XYZ_TO_SRGB",
    "XYZ_TO_CAMERA",
    "ShotPhotometry",
    "capture_mosaic",
    "camera_isp",
]

CAMERA_MAKE = "rawzoom"
CAMERA_MODEL = "SR-RAW simulator"
BLACK_LEVEL = 512
WHITE_LEVEL = 16383
CFA_PATTERN = "RGGB"

#: Linear sRGB → camera RGB: how the sensor's colour filters mix the scene's primaries. Non-negative,
#: rows summing to 1 (a white scene gives a neutral camera signal before the illuminant cast).
SRGB_TO_CAMERA = np.array([[0.62, 0.30, 0.08], [0.13, 0.75, 0.12], [0.04, 0.26, 0.70]])
#: Camera RGB → linear sRGB, the ISP's colour matrix (rows sum to 1, negative off-diagonals).
CAMERA_TO_SRGB = np.linalg.inv(SRGB_TO_CAMERA)
#: CIE XYZ (D65) → linear sRGB (IEC 61966-2-1 primaries, the values LibRaw uses).
XYZ_TO_SRGB = np.linalg.inv(
    np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
)
#: XYZ (D65) → camera RGB: the DNG's ColorMatrix1.
XYZ_TO_CAMERA = SRGB_TO_CAMERA @ XYZ_TO_SRGB


@dataclass(frozen=True)
class ShotPhotometry:
    """Photometric state of one shot.

    Args:
        exposure: Gain ``e`` (drift around 1).
        tint: Per-channel colour drift ``τ`` (R, G, B) around 1.
        wb_gains: As-shot white-balance gains ``g`` (R, 1, B); the DNG's AsShotNeutral is 1/g.
    """

    exposure: float
    tint: tuple[float, float, float]
    wb_gains: tuple[float, float, float]


def capture_mosaic(
    scene_rgb: Tensor, photometry: ShotPhotometry, shot_noise: float, read_noise: float, rng: np.random.Generator
) -> np.ndarray:
    """The raw RGGB mosaic (H, W) uint16 of a linear sRGB scene (3, H, W) (see the module docstring)."""
    if scene_rgb.dim() != 3 or scene_rgb.shape[0] != 3:
        raise ValueError(f"expected a linear RGB image (3, H, W), got {tuple(scene_rgb.shape)}")
    drift = photometry.exposure * torch.tensor(photometry.tint, dtype=torch.float64)
    mixing = torch.from_numpy(SRGB_TO_CAMERA) * drift[None, :] / torch.tensor(photometry.wb_gains)[:, None]
    camera = torch.einsum("ij,jhw->ihw", mixing.to(scene_rgb.dtype), scene_rgb)
    signal = mosaic_rgb(camera, CFA_PATTERN).numpy().astype(np.float32)
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    signal += np.sqrt(shot_noise * np.clip(signal, 0.0, None) + read_noise**2) * noise
    levels = np.rint(BLACK_LEVEL + signal * (WHITE_LEVEL - BLACK_LEVEL))
    return np.clip(levels, BLACK_LEVEL, WHITE_LEVEL).astype(np.uint16)


def camera_isp(raw: np.ndarray, wb_gains: tuple[float, float, float], gamma: float = 2.2) -> np.ndarray:
    """The camera's rendering of a raw RGGB mosaic (H, W) → 8-bit sRGB (H, W, 3).

    demosaic (bilinear) → (x − black)/(white − black) → white balance → :data:`CAMERA_TO_SRGB` →
    clip to [0, 1] → x^(1/γ) → round to 8 bit.
    """
    if raw.ndim != 2:
        raise ValueError(f"expected a raw mosaic (H, W), got shape {raw.shape}")
    mosaic = torch.from_numpy(raw.astype(np.float32))[None, None]
    linear = normalize_levels(demosaic(mosaic, CFA_PATTERN)[0], BLACK_LEVEL, WHITE_LEVEL)
    colour = torch.from_numpy(CAMERA_TO_SRGB * np.asarray(wb_gains)[None, :]).float()
    srgb = torch.einsum("ij,jhw->ihw", colour, linear).clamp_(0.0, 1.0)
    encoded = gamma_compress(srgb, gamma).mul_(255.0).round_()
    return encoded.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
