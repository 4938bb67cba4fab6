"""Pixel-coordinate geometry of images: 3×3 homogeneous maps, resampling and warping.

Coordinates everywhere: x = column, y = row, pixel centres at integers (kornia's ``align_corners=True``
grid). A 3×3 matrix ``M`` maps homogeneous pixel coordinates ``(x, y, 1)`` to ``(x′w, y′w, w)``.
Images are float tensors (H, W), (C, H, W) or (B, C, H, W) unless said otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from kornia.geometry.linalg import transform_points
from kornia.geometry.transform import resize, warp_perspective
from torch import Tensor

__all__ = [
    "map_points",
    "scale_map",
    "pixel_grid",
    "inner_box",
    "central_box",
    "warp_image",
    "downscale",
    "sample_bicubic",
]


def map_points(matrix: Tensor | np.ndarray, xs: Tensor, ys: Tensor) -> tuple[Tensor, Tensor]:
    """(x′, y′) = ((m₀₀x + m₀₁y + m₀₂)/w, (m₁₀x + m₁₁y + m₁₂)/w), w = m₂₀x + m₂₁y + m₂₂, in float64.

    ``xs`` and ``ys`` are coordinate tensors of the same (any) shape; the results have that shape.
    """
    m = torch.as_tensor(matrix, dtype=torch.float64, device=xs.device)
    points = torch.stack((xs, ys), dim=-1).to(torch.float64).reshape(1, -1, 2)
    mapped = transform_points(m[None], points).reshape(*xs.shape, 2)
    return mapped[..., 0], mapped[..., 1]


def scale_map(from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """3×3 map between two pixel grids of one picture, sizes (H, W) → (H′, W′), pixel areas kept in place:

    x′ = (x + 0.5)·W′/W − 0.5,   y′ = (y + 0.5)·H′/H − 0.5.
    """
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def pixel_grid(height: int, width: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Pixel coordinates (xs, ys) of an H×W image, each (H, W) float64."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=device),
        torch.arange(width, dtype=torch.float64, device=device),
        indexing="ij",
    )
    return xs, ys


def inner_box(
    to_image: Tensor | np.ndarray, box: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    """An axis-aligned box of source coordinates that ``to_image`` (source → image) maps inside ``box``.

    ``box`` = (x₀, y₀, x₁, y₁) in image coordinates. Its preimage is a convex quadrilateral; the result
    (x₀′, y₀′, x₁′, y₁′) spans from the larger x of its two left corners to the smaller x of its two
    right corners, and likewise in y, so it lies inside the quadrilateral (empty when x₁′ < x₀′ or
    y₁′ < y₀′). Raises ``ValueError`` for a map that flips the image or turns it by 45° or more.
    """
    x0, y0, x1, y1 = box
    corners_x = torch.tensor([[x0, x1], [x0, x1]], dtype=torch.float64)
    corners_y = torch.tensor([[y0, y0], [y1, y1]], dtype=torch.float64)
    inverse = np.linalg.inv(np.asarray(to_image, dtype=np.float64))
    xs, ys = map_points(inverse, corners_x, corners_y)  # [[top-left, top-right], [bottom-left, bottom-right]]
    if not (xs[:, 1] > xs[:, 0]).all() or not (ys[1, :] > ys[0, :]).all() or not math.isfinite(float(xs.sum() + ys.sum())):
        raise ValueError("the map flips or strongly rotates the image (or is singular)")
    return float(xs[:, 0].max()), float(ys[0, :].max()), float(xs[:, 1].min()), float(ys[1, :].min())


def central_box(height: int, width: int, scale: int) -> tuple[int, int, int, int]:
    """(top, left, ⌊H/s⌋, ⌊W/s⌋): the central box of an H×W image that a s× longer focal length sees, the
    footprint of a telephoto view on the short-focus (LR) grid (SelfDZSR's Ref box at test time)."""
    box_h, box_w = height // scale, width // scale
    return (height - box_h) // 2, (width - box_w) // 2, box_h, box_w


def warp_image(
    image: Tensor, matrix: Tensor | np.ndarray, size: tuple[int, int], margin: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Resample ``image`` so that output pixel x shows image(matrix·x) (``matrix``: output → input coordinates).

    ``image`` is (H, W) or (C, H, W); ``size`` = (h, w). Bilinear, border values repeated outside
    (kornia ``warp_perspective``). Returns the warped image, (h, w) or (C, h, w) in the image's dtype,
    and a bool mask (h, w) of the output pixels that map at least ``margin`` pixels inside the image.
    """
    if image.dim() not in (2, 3) or not image.is_floating_point():
        raise ValueError(f"expected a float image (H, W) or (C, H, W), got {image.dtype} {tuple(image.shape)}")
    stack = image[None, None] if image.dim() == 2 else image[None]
    to_input = torch.as_tensor(matrix, dtype=torch.float64, device=image.device)
    to_output = torch.linalg.inv(to_input).to(image.dtype)[None]
    warped = warp_perspective(stack, to_output, size, mode="bilinear", padding_mode="border", align_corners=True)
    xs, ys = map_points(to_input, *pixel_grid(*size, device=image.device))
    height, width = image.shape[-2:]
    inside = (xs >= margin) & (xs <= width - 1 - margin) & (ys >= margin) & (ys <= height - 1 - margin)
    return (warped[0, 0] if image.dim() == 2 else warped[0]), inside


def downscale(image: Tensor, scale: float) -> tuple[Tensor, np.ndarray]:
    """Anti-aliased downscaling of ``image`` (H, W) or (C, H, W) by ``scale`` ≤ 1 (kornia ``resize``).

    The output has ⌊H·scale⌋ × ⌊W·scale⌋ pixels; returns it and the exact 3×3 map from input to output
    pixel coordinates (:func:`scale_map` of the two sizes). ``scale`` ≥ 1 returns the image unchanged.
    """
    height, width = image.shape[-2:]
    if scale >= 1.0:
        return image, np.eye(3)
    size = (max(1, math.floor(height * scale)), max(1, math.floor(width * scale)))
    small = resize(image, size, interpolation="bilinear", align_corners=False, antialias=True)
    return small, scale_map((height, width), size)


def sample_bicubic(image: np.ndarray | Tensor, xs: Tensor, ys: Tensor) -> Tensor:
    """Bicubic samples of a (large) 8-bit image (H, W, C) at pixel coordinates ``xs``, ``ys`` (h, w).

    Integer coordinates return the pixels exactly. Only the bounding box of the coordinates (plus the
    4×4 kernel's reach) is converted to float, so ``image`` may be a memory map; outside the image the
    border is repeated. Returns float32 (C, h, w) in [0, 1] (clamped, since bicubic overshoots).
    """
    height, width = image.shape[:2]
    left = min(max(math.floor(float(xs.min())) - 2, 0), width - 1)
    top = min(max(math.floor(float(ys.min())) - 2, 0), height - 1)
    right = max(min(math.floor(float(xs.max())) + 4, width), left + 1)
    bottom = max(min(math.floor(float(ys.max())) + 4, height), top + 1)
    window = image[top:bottom, left:right]
    window = torch.from_numpy(np.array(window)) if isinstance(window, np.ndarray) else window  # a writable copy
    patch = window.permute(2, 0, 1).float() / 255.0
    crop_h, crop_w = patch.shape[-2:]
    grid = torch.stack(
        (2 * (xs - left) / max(crop_w - 1, 1) - 1, 2 * (ys - top) / max(crop_h - 1, 1) - 1), dim=-1
    ).to(torch.float32)
    sampled = F.grid_sample(patch[None], grid[None], mode="bicubic", padding_mode="border", align_corners=True)[0]
    return sampled.clamp(0.0, 1.0)
