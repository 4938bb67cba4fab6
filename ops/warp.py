"""Backward warping by a dense optical flow, with the validity mask of RAW-to-sRGB.

Zhang et al., "Learning RAW-to-sRGB Mappings with Inaccurately Aligned Supervision", ICCV 2021, Eqs. 4
and 6: the target y is warped onto the reference grid with the flow from the reference to y, and a mask
m marks the pixels whose bilinear taps lie inside y (up to a total weight ε outside):

    warped(x) = m(x) · y(x + flow(x))  (bilinear, zero outside),
    m(x) = 1 if W[1](x) > 1 − ε else 0,   W[1] = the all-ones image warped the same way, ε = 10⁻³.

The strict ">" is the official code's rule (``models/base_model.py:L259-267``, reference
``raw_to_srgb.md`` §1.5); Eq. 6 writes "≥", which differs only where W[1] equals 1 − ε exactly.

Pixel coordinates: x = column, y = row, pixel centres at integers; the flow's channel 0 is the x
displacement u, channel 1 the y displacement v, both in pixels.

``normalization`` chooses how pixel flow becomes grid_sample coordinates:

* ``"pixel"`` (default, exact): a flow of f px samples exactly f px away.
* ``"official"``: the RAW-to-sRGB / sniklaus code, pixel-centre base grid (align_corners=False) plus
  u / ((W − 1)/2) and v / ((H − 1)/2), so a flow of f px samples f·W/(W − 1) px (resp. f·H/(H − 1))
  away: a 1.6 % over-shift at W = 64. Use it to reproduce the official numbers bit-compatibly.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["backward_warp", "BackwardWarp"]

Normalization = Literal["pixel", "official"]


def _sampling_grid(flow: Tensor, normalization: Normalization) -> Tensor:
    """grid_sample coordinates (B, H, W, 2) for align_corners=False from a pixel flow (B, 2, H, W)."""
    _, _, height, width = flow.shape
    xs = torch.arange(width, dtype=flow.dtype, device=flow.device).view(1, 1, width)
    ys = torch.arange(height, dtype=flow.dtype, device=flow.device).view(1, height, 1)
    if normalization == "pixel":  # sample position p ↦ (2p + 1)/size − 1, exact for align_corners=False
        grid_x = (2 * (xs + flow[:, 0]) + 1) / width - 1
        grid_y = (2 * (ys + flow[:, 1]) + 1) / height - 1
    else:  # the pixel centres linspace(−1 + 1/W, 1 − 1/W, W) plus the flow over (W − 1)/2
        grid_x = (2 * xs + 1) / width - 1 + flow[:, 0] / ((width - 1) / 2)
        grid_y = (2 * ys + 1) / height - 1 + flow[:, 1] / ((height - 1) / 2)
    return torch.stack((grid_x, grid_y), dim=-1)


def backward_warp(
    image: Tensor, flow: Tensor, *, eps: float = 1e-3, normalization: Normalization = "pixel"
) -> tuple[Tensor, Tensor]:
    """Warp ``image`` (B, C, H, W) by ``flow`` (B, 2, H, W): returns ``(warped, mask)``.

    ``warped`` (B, C, H, W) = mask · image(x + flow(x)), bilinear with zeros outside; ``mask`` (B, 1, H, W)
    in the image's dtype is 1 where the warped all-ones image exceeds 1 − ``eps``, else 0 (see the module
    docstring). Differentiable w.r.t. ``image`` and ``flow`` (the mask is piecewise constant).
    """
    if image.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"expected image (B, C, H, W) and flow (B, 2, H, W), got {tuple(image.shape)} and {tuple(flow.shape)}"
        )
    if image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(
            f"image and flow must share batch and size, got {tuple(image.shape)} and {tuple(flow.shape)}"
        )
    if not image.is_floating_point() or image.dtype != flow.dtype:
        raise ValueError(f"expected floating-point image and flow of one dtype, got {image.dtype} and {flow.dtype}")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"expected 0 < eps < 1, got {eps}")
    if normalization not in ("pixel", "official"):
        raise ValueError(f"expected normalization 'pixel' or 'official', got {normalization!r}")
    if normalization == "official" and min(image.shape[-2:]) < 2:
        raise ValueError(
            f"the 'official' normalization divides by W − 1 and H − 1; got size {tuple(image.shape[-2:])}"
        )
    ones = image.new_ones(image.shape[0], 1, *image.shape[-2:])
    sampled = F.grid_sample(
        torch.cat((image, ones), dim=1),
        _sampling_grid(flow, normalization),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    mask = (sampled[:, -1:] > 1.0 - eps).to(image.dtype)
    return sampled[:, :-1] * mask, mask


class BackwardWarp(nn.Module):
    """Module form of :func:`backward_warp`."""

    def __init__(self, eps: float = 1e-3, normalization: Normalization = "pixel") -> None:
        super().__init__()
        self.eps = eps
        self.normalization = normalization

    def forward(self, image: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
        return backward_warp(image, flow, eps=self.eps, normalization=self.normalization)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, normalization={self.normalization!r}"
