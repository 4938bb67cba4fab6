"""One level of the orthonormal 2-D Haar wavelet transform (DWT) and its inverse (IWT).

The convention of LiteISPNet in the official RAW-to-sRGB code (``models/networks.py:L182-207``,
reference ``raw_to_srgb.md`` §1.2), inherited from MW-ISPNet / MWCNN (Liu et al., "Multi-level
Wavelet-CNN for Image Restoration", CVPRW 2018). Each 2×2 block [[a, b], [c, d]] (a top-left, b
top-right, c bottom-left, d bottom-right) of every input channel gives four coefficients:

    LL = ( a + b + c + d)/2    low-pass in x and y
    LH = ( a + b − c − d)/2    top row − bottom row (low-pass in x, high-pass in y)
    HL = ( a − b + c − d)/2    left column − right column (high-pass in x, low-pass in y)
    HH = ( a − b − c + d)/2    diagonal

The four filters (entries ±½) form an orthonormal basis of the 2×2 blocks, so the transform keeps the
energy (Σ x² = Σ y²) and the inverse is the transpose: a = (LL + LH + HL + HH)/2 and so on.

Channel layout, as in LiteISPNet: interleaved per input channel, i.e. output channel 4c + j holds band
j ∈ (LL, LH, HL, HH) of input channel c (not grouped by band as in MWCNN). The DWT is a depthwise
2×2 stride-2 convolution, the IWT the matching transposed convolution. Unlike the official code, the
module forms keep the filters as (non-persistent) buffers, not frozen parameters: they appear in
neither ``parameters()`` nor state dicts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["HAAR_BANDS", "haar_filters", "haar_dwt", "haar_iwt", "HaarDWT", "HaarIWT"]

#: Sub-band order within each group of four output channels.
HAAR_BANDS = ("LL", "LH", "HL", "HH")


def haar_filters(dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Tensor:
    """The four 2×2 Haar filters (4, 1, 2, 2) in :data:`HAAR_BANDS` order, entries ±½."""
    signs = [[[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]], [[1, -1], [-1, 1]]]
    return 0.5 * torch.tensor(signs, dtype=dtype, device=device).unsqueeze(1)


def _dwt(x: Tensor, filters: Tensor) -> Tensor:
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"expected a floating-point tensor (B, C, H, W), got {x.dtype} {tuple(x.shape)}")
    height, width = x.shape[-2:]
    if height % 2 or width % 2:
        raise ValueError(f"the Haar DWT needs an even height and width, got {height}×{width}")
    channels = x.shape[1]
    weight = filters.to(x.dtype).repeat(channels, 1, 1, 1)
    return F.conv2d(x, weight, stride=2, groups=channels)


def _iwt(y: Tensor, filters: Tensor) -> Tensor:
    if y.dim() != 4 or not y.is_floating_point():
        raise ValueError(f"expected a floating-point tensor (B, 4C, H/2, W/2), got {y.dtype} {tuple(y.shape)}")
    if y.shape[1] == 0 or y.shape[1] % 4:
        raise ValueError(f"the Haar IWT needs a positive multiple of 4 channels, got {y.shape[1]}")
    channels = y.shape[1] // 4
    weight = filters.to(y.dtype).repeat(channels, 1, 1, 1)
    return F.conv_transpose2d(y, weight, stride=2, groups=channels)


def haar_dwt(x: Tensor) -> Tensor:
    """Haar DWT (B, C, H, W) → (B, 4C, H/2, W/2); H and W must be even. See the module docstring."""
    return _dwt(x, haar_filters(x.dtype, x.device))


def haar_iwt(y: Tensor) -> Tensor:
    """Inverse Haar DWT (B, 4C, H/2, W/2) → (B, C, H, W): ``haar_iwt(haar_dwt(x)) == x``."""
    return _iwt(y, haar_filters(y.dtype, y.device))


class HaarDWT(nn.Module):
    """Module form of :func:`haar_dwt`; the filters are a buffer (no parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("filters", haar_filters(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return _dwt(x, self.filters)


class HaarIWT(nn.Module):
    """Module form of :func:`haar_iwt`; the filters are a buffer (no parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("filters", haar_filters(), persistent=False)

    def forward(self, y: Tensor) -> Tensor:
        return _iwt(y, self.filters)
