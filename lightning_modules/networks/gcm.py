"""Global colour mapping (GCM) of "Learning RAW-to-sRGB Mappings with Inaccurately Aligned Supervision"
(Zhang et al., ICCV 2021, §3.2 and Table A; reference ``raw_to_srgb.md`` §1.1).

GCM maps the demosaicked raw to the colours of the target, pixel by pixel, so that optical flow can be
estimated between two images of the same colours (GCM output ↔ target). It only exists for training and
for aligning the target at evaluation; the ISP network never sees it.

    x̂g = x̂^(1/2.2)                                          gamma-encoded bilinear demosaic (B, 3, H, W)
    g  = GuideNet([x̂g, y, τ])                               (B, 64, 1, 1), one vector per image
    f  = ReLU(conv1×1([x̂g, τ]));  f ← f·g + f               SPN head, channel-wise modulation
    ỹ  = conv1×1(3 × [conv1×1 → ReLU](f)) + x̂g              SPN body and tail, residual on x̂g, no clamp

GuideNet: 7×7 stride-2 conv (no padding) + ReLU, 3×3 conv + ReLU + 3×3 conv, global average pool, 1×1
conv to 64 channels (the code's layers, followed here; Table A lists no first ReLU, and 222² for 221²).

Every SPN layer is 1×1, so ỹ at a pixel depends on x̂g and τ at that pixel and on g only. g is global and
also sees x̂: with g held fixed (:meth:`GlobalColorMapping.spn`) the mapping is strictly per-pixel, and a
change of one raw pixel reaches other output pixels only through g (GuideNet's global average). τ is the
[−1, 1] coordinate map (:func:`coordinate_map`), on by default as in both official scripts
(``--gcm_coord True``): 46,243 parameters with it, 42,979 without. The module names are the official
ones (``guide_net``, ``align_head`` / ``align_base`` / ``align_tail`` = SPN), so official checkpoints load
key for key (:func:`lightning_modules.checkpoints.gcm_state_from_official`).

Inputs of the official forward: ZRR passes the bilinear demosaic of the 448² mosaic and the 448² target;
SR-RAW passes the demosaic of the packed crop (H = 2h) and the target bilinearly resized
(align_corners=True) to that size. The per-image white balance (SR-RAW) is applied to ỹ outside GCM.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ops.bayer import gamma_compress

__all__ = ["GlobalColorMapping", "coordinate_map"]


def coordinate_map(
    height: int, width: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> Tensor:
    """The official ``get_coord(H, W, 1, 1)``: pixel centres of an align_corners=False grid on [−1, 1].

    τ[0, i, j] = −1 + (2j + 1)/W (varies along W),  τ[1, i, j] = −1 + (2i + 1)/H (varies along H);
    computed in float64, returned as (2, H, W) in ``dtype``.
    """
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, dtype=torch.float64, device=device)
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, dtype=torch.float64, device=device)
    return torch.stack((xs.expand(height, width), ys[:, None].expand(height, width))).to(dtype)


def _check_image(name: str, image: Tensor) -> None:
    if image.dim() != 4 or image.shape[1] != 3 or not image.is_floating_point():
        raise ValueError(f"expected {name} as a floating-point (B, 3, H, W), got {image.dtype} {tuple(image.shape)}")


class GlobalColorMapping(nn.Module):
    """GCM = GuideNet + SPN (+ coordinate map), see the module docstring.

    Args:
        coord: Concatenate the coordinate map τ to the GuideNet and SPN inputs (official: True).
        guide_width: GuideNet channels (32).
        width: SPN channels and length of the guidance vector (64).

    Shapes: ``raw_rgb`` (B, 3, H, W) linear bilinear demosaic, ≥ 0 (negative values are clamped to 0 before
    the gamma, where the official ``pow`` gives NaN); ``guide`` (B, 3, H, W) target sRGB in
    [0, 1] at the same size (H, W ≥ 7); ``coord`` optional (B or 1, 2, H, W), default
    :func:`coordinate_map` (H, W) (the official training flips τ together with the images, hence the
    argument) → colour-mapped image (B, 3, H, W) in the gamma domain.
    """

    def __init__(self, coord: bool = True, guide_width: int = 32, width: int = 64) -> None:
        super().__init__()
        self.coord = coord
        extra = 2 if coord else 0
        self.guide_net = nn.Sequential(
            nn.Sequential(nn.Conv2d(6 + extra, guide_width, 7, stride=2), nn.ReLU(inplace=True)),
            nn.Sequential(
                nn.Conv2d(guide_width, guide_width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(guide_width, guide_width, 3, padding=1),
            ),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(guide_width, width, 1),
        )
        self.align_head = nn.Sequential(nn.Conv2d(3 + extra, width, 1), nn.ReLU(inplace=True))
        self.align_base = nn.Sequential(
            *(layer for _ in range(3) for layer in (nn.Conv2d(width, width, 1), nn.ReLU(inplace=True)))
        )
        self.align_tail = nn.Conv2d(width, 3, 1)

    def _coord(self, raw_rgb: Tensor, coord: Tensor | None) -> Tensor | None:
        """The checked coordinate map (B, 2, H, W) in the dtype of ``raw_rgb``, or None without coordinates."""
        if not self.coord:
            if coord is not None:
                raise ValueError("coord given to a GlobalColorMapping built with coord=False")
            return None
        batch, _, height, width = raw_rgb.shape
        if coord is None:
            coord = coordinate_map(height, width, raw_rgb.dtype, raw_rgb.device)[None]
        if coord.dim() != 4 or coord.shape[1:] != (2, height, width) or coord.shape[0] not in (1, batch):
            raise ValueError(f"expected coord (B or 1, 2, {height}, {width}), got {tuple(coord.shape)}")
        return coord.to(raw_rgb.dtype).expand(batch, -1, -1, -1)

    def guidance(self, raw_rgb: Tensor, guide: Tensor, coord: Tensor | None = None) -> Tensor:
        """g = GuideNet([x̂g, y, τ]): (B, 3, H, W) twice → (B, width, 1, 1)."""
        _check_image("raw_rgb", raw_rgb)
        _check_image("guide", guide)
        if guide.shape != raw_rgb.shape:
            raise ValueError(f"guide {tuple(guide.shape)} must have the shape of raw_rgb {tuple(raw_rgb.shape)}")
        if min(raw_rgb.shape[-2:]) < 7:
            raise ValueError(f"GCM needs images of at least 7×7 (GuideNet's 7×7 conv), got {tuple(guide.shape)}")
        coord = self._coord(raw_rgb, coord)
        inputs = (gamma_compress(raw_rgb), guide) if coord is None else (gamma_compress(raw_rgb), guide, coord)
        return self.guide_net(torch.cat(inputs, dim=1))

    def spn(self, raw_rgb: Tensor, guidance: Tensor, coord: Tensor | None = None) -> Tensor:
        """The per-pixel mapping given g: (B, 3, H, W), g (B, width, 1, 1) → (B, 3, H, W); output pixel (i, j)
        depends on ``raw_rgb`` and τ at (i, j) only."""
        _check_image("raw_rgb", raw_rgb)
        encoded = gamma_compress(raw_rgb)
        coord = self._coord(raw_rgb, coord)
        features = self.align_head(encoded if coord is None else torch.cat((encoded, coord), dim=1))
        features = features * guidance + features
        return self.align_tail(self.align_base(features)) + encoded

    def forward(self, raw_rgb: Tensor, guide: Tensor, coord: Tensor | None = None) -> Tensor:
        """ỹ = SPN(x̂, GuideNet(x̂, y, τ), τ); shapes in the class docstring."""
        return self.spn(raw_rgb, self.guidance(raw_rgb, guide, coord), coord)
