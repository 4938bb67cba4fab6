"""The simulated camera: photometric drift, the Bayer sensor and the in-camera ISP that makes the JPG.

Optics and sensor, for the scene's linear sRGB ``s`` (3, H, W) seen by one shot:

    s' = G_σ * s                          lens + anti-aliasing filter: Gaussian PSF of σ pixels
    x = M⁻¹ · (e · τ ⊙ s') / g            camera RGB, normalised to [0, 1] (then the RGGB mosaic of it)
    x̃ = x + sqrt(shot·x + read²) · n      n ~ N(0, 1): Gaussian approximation of Poisson-Gaussian noise
    raw = clip(round(black + x̃·(white − black)), black, white)      uint16, 12 or 14 bit (:data:`SENSOR_LEVELS`)

with exposure ``e``, per-channel tint ``τ``, white-balance gains ``g`` (R, 1, B) (the illuminant
cast the camera's white balance removes) and ``M`` = :data:`CAMERA_TO_SRGB`, sampled on a 2×2 CFA of any of
the four Bayer orders (RGGB by default).

ISP (the camera JPG)::

    v = clip(M · (g ⊙ (demosaic(raw) − black)/(white − black)), 0, 1)^(1/2.2)
    jpg = round(255 · clip(NR(v), 0, 1))

so up to noise, clipping and demosaicing the JPG shows ``e · τ ⊙ s``. ``NR`` is the in-camera noise
reduction, done as cameras do it on the gamma-encoded image in YCbCr (BT.601, kornia): luma gets an
edge-preserving bilateral filter of spatial σ = ``luma_denoise`` pixels and range σ =
:data:`LUMA_DENOISE_RANGE`, chroma a Gaussian blur of σ = ``chroma_denoise`` pixels. Both default to 0
(no NR). Like a real camera's NR it removes sensor noise and, with it, fine texture the raw still has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from kornia.color import rgb_to_ycbcr, ycbcr_to_rgb
from kornia.filters import bilateral_blur, gaussian_blur2d
from torch import Tensor

from ops.bayer import demosaic, gamma_compress, mosaic_rgb, normalize_levels

__all__ = [
    "CAMERA_MAKE",
    "CAMERA_MODEL",
    "BLACK_LEVEL",
    "WHITE_LEVEL",
    "CFA_PATTERN",
    "SENSOR_LEVELS",
    "SRGB_TO_CAMERA",
    "CAMERA_TO_SRGB",
    "XYZ_TO_SRGB",
    "XYZ_TO_CAMERA",
    "LUMA_DENOISE_RANGE",
    "ShotPhotometry",
    "lens_blur",
    "capture_mosaic",
    "camera_isp",
]

CAMERA_MAKE = "rawzoom"
CAMERA_MODEL = "SR-RAW simulator"
BLACK_LEVEL = 512
WHITE_LEVEL = 16383
CFA_PATTERN = "RGGB"
#: (black, white) level of the raw by bit depth (Sony's 12- and 14-bit levels).
SENSOR_LEVELS = {12: (128, 4095), 14: (BLACK_LEVEL, WHITE_LEVEL)}

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
#: Range σ of the luma noise reduction, in gamma-encoded units: steps well above it (edges) survive.
LUMA_DENOISE_RANGE = 0.05


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


def lens_blur(scene_rgb: Tensor, sigma: float) -> Tensor:
    """The image (3, H, W) that a lens with a Gaussian PSF of ``sigma`` pixels forms of ``scene_rgb``.

    Reflected at the borders; ``sigma = 0`` returns the input.
    """
    if sigma < 0:
        raise ValueError(f"lens blur σ must be ≥ 0, got {sigma}")
    if sigma == 0:
        return scene_rgb
    return _gaussian_blur(scene_rgb[None], sigma)[0]


def _gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of (B, C, H, W) with σ = ``sigma`` > 0 pixels, kernel ±3σ, reflected borders."""
    size = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur2d(images, (size, size), (sigma, sigma), border_type="reflect")


def capture_mosaic(
    scene_rgb: Tensor,
    photometry: ShotPhotometry,
    shot_noise: float,
    read_noise: float,
    rng: np.random.Generator,
    pattern: str = CFA_PATTERN,
    black_level: int = BLACK_LEVEL,
    white_level: int = WHITE_LEVEL,
) -> np.ndarray:
    """The raw mosaic (H, W) uint16 of a linear sRGB scene (3, H, W) on the CFA ``pattern`` (module docstring)."""
    if scene_rgb.dim() != 3 or scene_rgb.shape[0] != 3:
        raise ValueError(f"expected a linear RGB image (3, H, W), got {tuple(scene_rgb.shape)}")
    drift = photometry.exposure * torch.tensor(photometry.tint, dtype=torch.float64)
    mixing = torch.from_numpy(SRGB_TO_CAMERA) * drift[None, :] / torch.tensor(photometry.wb_gains)[:, None]
    camera = torch.einsum("ij,jhw->ihw", mixing.to(scene_rgb.dtype), scene_rgb)
    signal = mosaic_rgb(camera, pattern).numpy().astype(np.float32)
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    signal += np.sqrt(shot_noise * np.clip(signal, 0.0, None) + read_noise**2) * noise
    levels = np.rint(black_level + signal * (white_level - black_level))
    return np.clip(levels, black_level, white_level).astype(np.uint16)


def camera_isp(
    raw: np.ndarray,
    wb_gains: tuple[float, float, float],
    gamma: float = 2.2,
    luma_denoise: float = 0.0,
    chroma_denoise: float = 0.0,
    pattern: str = CFA_PATTERN,
    black_level: int = BLACK_LEVEL,
    white_level: int = WHITE_LEVEL,
) -> np.ndarray:
    """The camera's rendering of a raw mosaic (H, W) on the CFA ``pattern`` → 8-bit sRGB (H, W, 3).

    demosaic (bilinear) → (x − black)/(white − black) → white balance → :data:`CAMERA_TO_SRGB` →
    clip to [0, 1] → x^(1/γ) → noise reduction (σ in pixels, 0 = off; module docstring) → round to 8 bit.
    """
    if raw.ndim != 2:
        raise ValueError(f"expected a raw mosaic (H, W), got shape {raw.shape}")
    if luma_denoise < 0 or chroma_denoise < 0:
        raise ValueError(f"noise reduction σ must be ≥ 0, got luma {luma_denoise} and chroma {chroma_denoise}")
    mosaic = torch.from_numpy(raw.astype(np.float32))[None, None]
    linear = normalize_levels(demosaic(mosaic, pattern)[0], black_level, white_level)
    colour = torch.from_numpy(CAMERA_TO_SRGB * np.asarray(wb_gains)[None, :]).float()
    srgb = torch.einsum("ij,jhw->ihw", colour, linear).clamp_(0.0, 1.0)
    encoded = _noise_reduction(gamma_compress(srgb, gamma), luma_denoise, chroma_denoise)
    encoded = encoded.clamp_(0.0, 1.0).mul_(255.0).round_()
    return encoded.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _noise_reduction(encoded: Tensor, luma_sigma: float, chroma_sigma: float) -> Tensor:
    """Bilateral luma and Gaussian chroma filtering of a gamma-encoded image (3, H, W) in YCbCr."""
    if luma_sigma == 0 and chroma_sigma == 0:
        return encoded
    ycbcr = rgb_to_ycbcr(encoded[None])
    luma, chroma = ycbcr[:, :1], ycbcr[:, 1:]
    if luma_sigma > 0:
        size = 2 * math.ceil(2 * luma_sigma) + 1
        luma = bilateral_blur(luma, (size, size), LUMA_DENOISE_RANGE, (luma_sigma, luma_sigma))
    if chroma_sigma > 0:
        chroma = _gaussian_blur(chroma, chroma_sigma)
    return ycbcr_to_rgb(torch.cat([luma, chroma], dim=1))[0]
