"""Tiled inference: run an image-to-image network on overlapping tiles and blend the results.

Whole images rarely fit a network's memory at the output resolution (a 4X zoom net holds 256-channel
maps at 8× the packed-raw size). The input (B, C, h, w) is cut into tiles of ``tile`` input pixels
that overlap by ``overlap`` pixels; each tile's output (scale × larger) is weighted by a separable
ramp that rises linearly across the overlap, and the weighted outputs are normalised:

    out(p) = Σ_t w_t(p) · f(tile_t)(p) / Σ_t w_t(p)

so seams fade out and every output pixel is covered. A function that is exactly local (its output
pixel depends only on input pixels inside the same tile) gives the same result as one full pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["tile_starts", "tiled_forward"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap`` overlap."""
    if tile >= length:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(size: int, overlap: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Weights rising linearly over ``overlap`` samples at both ends, strictly positive."""
    position = torch.arange(size, device=device, dtype=dtype) + 0.5
    if overlap <= 0:
        return torch.ones(size, device=device, dtype=dtype)
    return torch.minimum(position, size - position).div(overlap).clamp(max=1.0)


def tiled_forward(
    fn: Callable[[Tensor], Tensor], x: Tensor, *, scale: int, tile: int, overlap: int
) -> Tensor:
    """Apply ``fn`` ((B, C, t, t) → (B, C', scale·t, scale·t)) to ``x`` (B, C, h, w) tile by tile."""
    if x.dim() != 4:
        raise ValueError(f"expected input (B, C, h, w), got {tuple(x.shape)}")
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"need tile > 0 and 0 ≤ overlap < tile, got tile={tile}, overlap={overlap}")
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return fn(x)
    output: Tensor | None = None
    weight_sum: Tensor | None = None
    for top in tile_starts(height, tile, overlap):
        for left in tile_starts(width, tile, overlap):
            patch = fn(x[:, :, top : top + tile, left : left + tile])
            if output is None:
                output = patch.new_zeros(x.shape[0], patch.shape[1], scale * height, scale * width)
                weight_sum = patch.new_zeros(1, 1, scale * height, scale * width)
            th, tw = patch.shape[-2:]
            weights = (
                _ramp(th, scale * overlap, patch.device, patch.dtype)[:, None]
                * _ramp(tw, scale * overlap, patch.device, patch.dtype)[None, :]
            )
            rows = slice(scale * top, scale * top + th)
            cols = slice(scale * left, scale * left + tw)
            output[:, :, rows, cols] += patch * weights
            weight_sum[:, :, rows, cols] += weights
    assert output is not None and weight_sum is not None
    return output / weight_sum
