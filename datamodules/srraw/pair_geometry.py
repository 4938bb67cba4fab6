"""Geometry of an (input shot s, target shot t) pair: where each output pixel lands in the target JPG.

Coordinates are pixel coordinates, x = column, y = row, pixel centres at integers. A crop is
(top, left, height, width) in *packed* pixels of the input raw (one packed pixel = one 2×2 Bayer tile).
For zoom z, the network maps the crop to S_h × S_w = 2z·height × 2z·width output pixels, and output
pixel (u, v) sits at input Bayer coordinates

    x = 2·left + (u + 0.5)/z − 0.5,    y = 2·top + (v + 0.5)/z − 0.5.

Bayer → input JPG: the input camera's ``raw_to_jpg`` (:mod:`datamodules.srraw.camera_geometry`: the JPG
is a crop of the sensor image). Input JPG → reference → target JPG: ``ref_to_shot[t] · ref_to_shot[s]⁻¹``. So

    bayer_to_target = ref_to_shot[t] · ref_to_shot[s]⁻¹ · raw_to_jpg[s].

The target sample covers u ∈ [−m, S_w + m), v ∈ [−m, S_h + m) for a margin m. A crop is *valid* when
all of it lies inside the target JPG with room for the 4×4 bicubic kernel (1 ≤ X ≤ W_t − 3, same for Y)
and the crop lies inside the raw. :func:`valid_region` returns the largest axis-aligned rectangle of
packed pixels all of whose sub-crops are valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ops.geometry import inner_box

__all__ = ["CropRegion", "bayer_to_target", "output_grid", "valid_region", "centre_crop"]


@dataclass(frozen=True)
class CropRegion:
    """A rectangle (top, left, height, width) in packed pixels; empty when height or width ≤ 0."""

    top: int
    left: int
    height: int
    width: int

    @property
    def empty(self) -> bool:
        return self.height <= 0 or self.width <= 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.top, self.left, self.height, self.width


def bayer_to_target(input_ref_to_shot: np.ndarray, target_ref_to_shot: np.ndarray, input_raw_to_jpg: np.ndarray) -> np.ndarray:
    """3×3 map from the input's Bayer pixel coordinates to the target JPG's pixel coordinates."""
    return target_ref_to_shot @ np.linalg.inv(input_ref_to_shot) @ input_raw_to_jpg


def output_grid(crop: CropRegion, zoom: int, margin: int) -> tuple[Tensor, Tensor]:
    """Input Bayer coordinates (x, y) of the output pixels of ``crop`` with ``margin``, each (S_h + 2m, S_w + 2m)."""
    u = torch.arange(-margin, 2 * zoom * crop.width + margin, dtype=torch.float64)
    v = torch.arange(-margin, 2 * zoom * crop.height + margin, dtype=torch.float64)
    ys, xs = torch.meshgrid(2 * crop.top + (v + 0.5) / zoom - 0.5, 2 * crop.left + (u + 0.5) / zoom - 0.5, indexing="ij")
    return xs, ys


def valid_region(
    bayer_to_target_matrix: np.ndarray,
    raw_size: tuple[int, int],
    target_size: tuple[int, int],
    zoom: int,
    margin: int,
) -> CropRegion:
    """Largest rectangle of packed input pixels whose target sample (margin included) is inside the target.

    The preimage of the target's inner box [1, W_t − 3] × [1, H_t − 3] is a convex quadrilateral in
    Bayer coordinates; we take the axis-aligned box inside it (:func:`ops.geometry.inner_box`), then
    shrink it by the extent of the output grid beyond the crop: the samples of packed columns [l, r)
    span Bayer x from 2l − (m − 0.5)/z − 0.5 to 2r + (m − 0.5)/z − 0.5. Raises ``ValueError`` for a
    map that flips or turns the image by 45° or more.
    """
    height, width = target_size
    x_low, y_low, x_high, y_high = inner_box(bayer_to_target_matrix, (1.0, 1.0, width - 3.0, height - 3.0))
    reach = (margin - 0.5) / zoom + 0.5  # Bayer extent of the samples beyond 2·(packed edge)
    left = max(0, math.ceil((x_low + reach) / 2))
    top = max(0, math.ceil((y_low + reach) / 2))
    right = min(raw_size[1] // 2, math.floor((x_high - reach + 1.0) / 2))
    bottom = min(raw_size[0] // 2, math.floor((y_high - reach + 1.0) / 2))
    return CropRegion(top, left, max(0, bottom - top), max(0, right - left))


def centre_crop(region: CropRegion, size: int | None) -> CropRegion:
    """The centred ``size`` × ``size`` crop of ``region``, clipped to it (``None``: the whole region)."""
    if size is None:
        return region
    height, width = min(size, region.height), min(size, region.width)
    return CropRegion(region.top + (region.height - height) // 2, region.left + (region.width - width) // 2, height, width)
