"""Bayer mosaic operators: packing, levels, white balance, gamma, demosaicing, synthetic mosaics.

Conventions (shared by the whole project):

* A *mosaic* is a single-channel Bayer image of shape (..., H, W) with H, W even.
* A *packed* raw has shape (..., 4, H/2, W/2) with channels always in the order **R, G1, B, G2**,
  whatever the sensor's CFA: G1 is the green on the red rows, G2 the green on the blue rows.
  For RGGB this is [even row, even col], [even, odd], [odd, odd], [odd, even] (Zhang et al. 2019,
  reference ``zoom_learn_zoom.md`` §2.2).
* White-balance gains are per colour (R, G, B), normalised so that G = 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.color import CFA, raw_to_rgb
from torch import Tensor, nn

__all__ = [
    "BAYER_PATTERNS",
    "pack_bayer",
    "unpack_bayer",
    "normalize_levels",
    "apply_white_balance",
    "gamma_compress",
    "gamma_expand",
    "demosaic",
    "mosaic_rgb",
    "packed_to_rgb_preview",
    "PackBayer",
    "Demosaic",
]

#: Supported 2×2 CFA patterns, written in raster order (top-left, top-right, bottom-left, bottom-right).
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

# Raster offsets (row, col) of R, G1 (green sharing a row with R), B, G2 inside the 2×2 tile.
_OFFSETS = {
    "RGGB": ((0, 0), (0, 1), (1, 1), (1, 0)),
    "BGGR": ((1, 1), (1, 0), (0, 0), (0, 1)),
    "GRBG": ((0, 1), (0, 0), (1, 0), (1, 1)),
    "GBRG": ((1, 0), (1, 1), (0, 1), (0, 0)),
}

# kornia names a CFA after OpenCV's convention; this maps our raster names onto it.
_KORNIA_CFA = {"RGGB": CFA.BG, "BGGR": CFA.RG, "GRBG": CFA.GB, "GBRG": CFA.GR}


def _check_pattern(pattern: str) -> str:
    pattern = pattern.upper()
    if pattern not in _OFFSETS:
        raise ValueError(f"unsupported Bayer pattern {pattern!r}; expected one of {BAYER_PATTERNS}")
    return pattern


def _check_mosaic(mosaic: Tensor) -> None:
    if mosaic.dim() < 2:
        raise ValueError(f"expected a mosaic of shape (..., H, W), got {tuple(mosaic.shape)}")
    h, w = mosaic.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"a Bayer mosaic needs even height and width, got {h}×{w}")


def _check_packed(packed: Tensor) -> None:
    if packed.dim() < 3 or packed.shape[-3] != 4:
        raise ValueError(f"expected a packed raw of shape (..., 4, H, W), got {tuple(packed.shape)}")


def pack_bayer(mosaic: Tensor, pattern: str = "RGGB") -> Tensor:
    """Pack a Bayer mosaic (..., H, W) into (..., 4, H/2, W/2) with channels R, G1, B, G2."""
    pattern = _check_pattern(pattern)
    _check_mosaic(mosaic)
    return torch.stack([mosaic[..., r::2, c::2] for r, c in _OFFSETS[pattern]], dim=-3)


def unpack_bayer(packed: Tensor, pattern: str = "RGGB") -> Tensor:
    """Inverse of :func:`pack_bayer`: (..., 4, h, w) → mosaic (..., 2h, 2w)."""
    pattern = _check_pattern(pattern)
    _check_packed(packed)
    h, w = packed.shape[-2:]
    mosaic = packed.new_empty(*packed.shape[:-3], 2 * h, 2 * w)
    for channel, (r, c) in enumerate(_OFFSETS[pattern]):
        mosaic[..., r::2, c::2] = packed[..., channel, :, :]
    return mosaic


def normalize_levels(raw: Tensor, black: float | Tensor, white: float | Tensor, clip: bool = False) -> Tensor:
    """(raw − black) / (white − black); no clipping by default, as in the official code.

    ``black``/``white`` may be tensors broadcastable against ``raw`` (e.g. per packed channel).
    """
    scale = torch.as_tensor(white, dtype=raw.dtype, device=raw.device) - torch.as_tensor(
        black, dtype=raw.dtype, device=raw.device
    )
    if bool((scale <= 0).any()):
        raise ValueError(f"white level must exceed black level, got black={black}, white={white}")
    out = (raw.to(scale.dtype) - torch.as_tensor(black, dtype=raw.dtype, device=raw.device)) / scale
    return out.clamp(0.0, 1.0) if clip else out


def _gains_view(gains: Tensor, image: Tensor, channel_dim: int) -> Tensor:
    """Reshape per-image gains (B, C) or (C,) to broadcast over ``image`` along ``channel_dim``."""
    gains = torch.as_tensor(gains, dtype=image.dtype, device=image.device)
    channels = image.shape[channel_dim]
    if gains.shape[-1] != channels:
        raise ValueError(f"expected {channels} gains, got shape {tuple(gains.shape)}")
    trailing = image.dim() - (channel_dim % image.dim()) - 1
    return gains.reshape(*gains.shape, *([1] * trailing))


def apply_white_balance(image: Tensor, gains: Tensor, exponent: float = 1.0) -> Tensor:
    """Multiply channel c of ``image`` (B, C, H, W) or (C, H, W) by ``gains[..., c] ** exponent``.

    Gains of shape (C,) or (B, C). For a packed raw (C = 4) give 4 gains (R, G, B, G); for RGB give 3.
    ``exponent = 1/2.2`` applies the gains in the gamma domain (reference §3.8); use ``-1/2.2`` to
    remove them.
    """
    return image * _gains_view(gains, image, -3) ** exponent


def gamma_compress(linear: Tensor, gamma: float = 2.2) -> Tensor:
    """Simple power-law encoding x^(1/γ) of a linear image, clamped to be non-negative first."""
    return linear.clamp_min(0.0) ** (1.0 / gamma)


def gamma_expand(encoded: Tensor, gamma: float = 2.2) -> Tensor:
    """Inverse of :func:`gamma_compress`: x^γ."""
    return encoded.clamp_min(0.0) ** gamma


def demosaic(mosaic: Tensor, pattern: str = "RGGB") -> Tensor:
    """Bilinear demosaicing (kornia) of a mosaic (B, 1, H, W) → RGB (B, 3, H, W)."""
    pattern = _check_pattern(pattern)
    if mosaic.dim() != 4 or mosaic.shape[1] != 1:
        raise ValueError(f"expected a mosaic of shape (B, 1, H, W), got {tuple(mosaic.shape)}")
    _check_mosaic(mosaic)
    return raw_to_rgb(mosaic, _KORNIA_CFA[pattern])


def mosaic_rgb(rgb: Tensor, pattern: str = "RGGB") -> Tensor:
    """Sample an RGB image (..., 3, H, W) on a Bayer grid → mosaic (..., H, W).

    This is the "synthetic raw" of Zhang et al. 2019 §5.2 (before noise is added).
    """
    pattern = _check_pattern(pattern)
    if rgb.dim() < 3 or rgb.shape[-3] != 3:
        raise ValueError(f"expected an RGB image of shape (..., 3, H, W), got {tuple(rgb.shape)}")
    _check_mosaic(rgb[..., 0, :, :])
    packed = torch.stack(
        [rgb[..., colour, r::2, c::2] for colour, (r, c) in zip((0, 1, 2, 1), _OFFSETS[pattern])], dim=-3
    )
    return unpack_bayer(packed, pattern)


def packed_to_rgb_preview(packed: Tensor, gains: Tensor | None = None, gamma: float = 2.2, scale: int = 2) -> Tensor:
    """Quick look at a packed raw (B, 4, h, w): RGB (B, 3, scale·h, scale·w) from R, mean(G1, G2), B.

    Optional white-balance gains (B, 3) are applied in the linear domain, then the image is upsampled
    bilinearly (``scale`` 2 gives the mosaic's own size) and gamma-encoded. No colour matrix: meant for
    panels, notebooks and as a starting point for networks, not for metrics.
    """
    _check_packed(packed)
    rgb = torch.stack([packed[:, 0], 0.5 * (packed[:, 1] + packed[:, 3]), packed[:, 2]], dim=1)
    if gains is not None:
        rgb = apply_white_balance(rgb, gains)
    rgb = F.interpolate(rgb, scale_factor=scale, mode="bilinear", align_corners=False)
    return gamma_compress(rgb, gamma).clamp(0.0, 1.0)


class PackBayer(nn.Module):
    """Module form of :func:`pack_bayer`."""

    def __init__(self, pattern: str = "RGGB") -> None:
        super().__init__()
        self.pattern = _check_pattern(pattern)

    def forward(self, mosaic: Tensor) -> Tensor:
        return pack_bayer(mosaic, self.pattern)


class Demosaic(nn.Module):
    """Module form of :func:`demosaic`."""

    def __init__(self, pattern: str = "RGGB") -> None:
        super().__init__()
        self.pattern = _check_pattern(pattern)

    def forward(self, mosaic: Tensor) -> Tensor:
        return demosaic(mosaic, self.pattern)
