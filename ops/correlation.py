"""PWC-Net cost volume (correlation layer) in pure PyTorch, CPU and CUDA, differentiable through autograd.

Sun et al., "PWC-Net: CNNs for Optical Flow Using Pyramid, Warping, and Cost Volume", CVPR 2018, Eq. 1,
with a 1×1 patch, stride 1 and maximum displacement d (d = 4 in PWC-Net, giving 81 channels):

    out[b, k, y, x] = (1/C) · Σ_c first[b, c, y, x] · second[b, c, y + dy_k, x + dx_k],

``second`` zero outside the image. The displacements are ordered row-major, dy outer and dx inner:

    k = (dy + d)·(2d + 1) + (dx + d),   dy, dx ∈ [−d, d],

which is the channel order of sniklaus' CuPy kernel that the RAW-to-sRGB code uses (it reads
``dx = k mod 9 − 4`` and ``dy = ⌊k / 9⌋ − 4`` and divides the sum by the channel count; reference
``raw_to_srgb.md`` §1.5). Channel 40 (for d = 4) is therefore the zero displacement.

Memory: one displacement at a time, so besides the zero-padded copy of ``second`` (and the output)
the forward pass only holds one (B, C, H, W) product at a time; autograd keeps views, not copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["correlation", "Correlation"]


def correlation(first: Tensor, second: Tensor, max_displacement: int = 4) -> Tensor:
    """Cost volume of two feature maps (B, C, H, W) → (B, (2d + 1)², H, W), d = ``max_displacement``.

    See the module docstring for the formula and the channel order (dy outer, dx inner).
    """
    if first.dim() != 4 or first.shape != second.shape:
        raise ValueError(
            f"expected two feature maps of one shape (B, C, H, W), got {tuple(first.shape)} and {tuple(second.shape)}"
        )
    if not first.is_floating_point() or first.dtype != second.dtype:
        raise ValueError(f"expected two floating-point maps of one dtype, got {first.dtype} and {second.dtype}")
    if first.shape[1] == 0:
        raise ValueError("expected at least one channel, got C = 0")
    if isinstance(max_displacement, bool) or not isinstance(max_displacement, int) or max_displacement < 0:
        raise ValueError(f"expected an integer max_displacement ≥ 0, got {max_displacement!r}")
    d = max_displacement
    height, width = first.shape[-2:]
    padded = F.pad(second, (d, d, d, d))
    planes = [
        (first * padded[:, :, dy : dy + height, dx : dx + width]).mean(dim=1)
        for dy in range(2 * d + 1)
        for dx in range(2 * d + 1)
    ]
    return torch.stack(planes, dim=1)


class Correlation(nn.Module):
    """Module form of :func:`correlation` (no parameters)."""

    def __init__(self, max_displacement: int = 4) -> None:
        super().__init__()
        self.max_displacement = max_displacement

    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        return correlation(first, second, self.max_displacement)

    def extra_repr(self) -> str:
        return f"max_displacement={self.max_displacement}"
