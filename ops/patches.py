"""Dense n×n patch features (stride 1, TF "SAME" zero padding), as used by CoBi_RGB.

Zhang et al., "Zoom to Learn, Learn to Zoom", CVPR 2019, Eq. (3): CoBi on n×n RGB patches
(n = 10 for 4X, n = 15 for 8X); reference ``zoom_learn_zoom.md`` §1.2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["extract_patches", "extract_patches_at", "PatchFeatures"]


def _check_hyper(size: int, dilation: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"expected a patch size that is an int >= 1, got {size!r}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"expected a dilation that is an int >= 1, got {dilation!r}")


def _pad_same(image: Tensor, size: int, dilation: int) -> Tensor:
    """Check the inputs and zero-pad ``image`` as TF "SAME" does for stride 1 (docstring below)."""
    _check_hyper(size, dilation)
    if image.dim() != 4:
        raise ValueError(f"expected an image of shape (B, C, H, W), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"expected a floating-point image, got dtype {image.dtype}")
    total = (size - 1) * dilation
    before, after = total // 2, total - total // 2
    return F.pad(image, (before, after, before, after))


def extract_patches(image: Tensor, size: int, dilation: int = 1) -> Tensor:
    """Every pixel's n×n neighbourhood as a feature vector: (B, C, H, W) → (B, C·n², H, W).

    out[b, c·n² + u·n + v, y, x] = image_pad[b, c, y + u·d, x + v·d], u, v ∈ [0, n), d = dilation,
    where image_pad is ``image`` zero-padded as TF "SAME" does for stride 1: the total pad per axis is
    (n − 1)·d, with ``total // 2`` before and the rest after (n = 10, d = 1: 4 before, 5 after).

    The vector is ordered (channel, patch row, patch column), F.unfold's order; TF orders it
    (patch row, patch column, channel). Distances between patch vectors do not depend on the order.
    """
    padded = _pad_same(image, size, dilation)
    b, c, h, w = image.shape
    return F.unfold(padded, kernel_size=size, dilation=dilation).reshape(b, c * size * size, h, w)


def extract_patches_at(image: Tensor, size: int, positions: Tensor, dilation: int = 1) -> Tensor:
    """:func:`extract_patches` at flat ``positions`` (P,) of the H×W grid only: (B, C, H, W) → (B, C·n², P).

    Equals ``extract_patches(image, size, dilation).flatten(2)[..., positions]`` without building the
    (B, C·n², H, W) map, which for 10×10 RGB patches is 300 values per output pixel.
    """
    padded = _pad_same(image, size, dilation)
    b, c, h, w = image.shape
    padded_width = padded.shape[-1]
    offsets = torch.arange(size, device=image.device) * dilation
    window = (offsets[:, None] * padded_width + offsets[None, :]).reshape(-1)  # (n²,) in (row, column) order
    corner = (positions // w) * padded_width + positions % w  # top-left of each patch in the padded image
    index = (window[:, None] + corner[None, :]).reshape(-1)  # (n²·P,)
    return padded.flatten(2)[..., index].reshape(b, c * size * size, positions.numel())


class PatchFeatures(nn.Module):
    """Module form of :func:`extract_patches`: (B, C, H, W) → (B, C·n², H, W)."""

    def __init__(self, size: int = 10, dilation: int = 1) -> None:
        super().__init__()
        _check_hyper(size, dilation)
        self.size = size
        self.dilation = dilation

    def forward(self, image: Tensor) -> Tensor:
        return extract_patches(image, self.size, self.dilation)

    def extra_repr(self) -> str:
        return f"size={self.size}, dilation={self.dilation}"
