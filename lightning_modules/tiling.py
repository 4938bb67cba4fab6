"""Tiled inference: run an image-to-image network on overlapping tiles.

Whole images rarely fit a network's memory at the output resolution (a 4X zoom net holds 256-channel
maps at 8× the packed-raw size). The input (B, C, h, w) is cut into tiles of ``tile`` input pixels
that overlap by ``overlap`` pixels; each tile's output (scale × larger) is weighted by a separable
ramp that rises linearly across the overlap, and the weighted outputs are normalised:

    out(p) = Σ_t w_t(p) · f(tile_t)(p) / Σ_t w_t(p)

so seams fade out and every output pixel is covered. A function that is exactly local (its output
pixel depends only on input pixels inside the same tile) gives the same result as one full pass.

:func:`tiled_with_halo` is exact instead for a function whose receptive field is bounded: tiles
(``tile`` input pixels) partition the image, each is computed from its window grown by ``halo`` pixels
(clipped at the image border) and only its own part of the output is kept, so the result equals one
full pass wherever the receptive field reaches no further than ``halo``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["tile_starts", "tiled_forward", "tiled_with_halo"]


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


def tiled_with_halo(fn: Callable[[Tensor], Tensor], x: Tensor, *, scale: int, tile: int, halo: int) -> Tensor:
    """Apply ``fn`` ((B, C, h', w') → (B, C', scale·h', scale·w')) to ``x`` (B, C, h, w) on tiles with a halo.

    The output equals ``fn(x)`` exactly when every output pixel of ``fn`` depends only on input pixels
    within ``halo`` of it (module docstring); memory is that of one (tile + 2·halo)² window.
    """
    if x.dim() != 4:
        raise ValueError(f"expected input (B, C, h, w), got {tuple(x.shape)}")
    if tile <= 0 or halo < 0:
        raise ValueError(f"need tile > 0 and halo ≥ 0, got tile={tile}, halo={halo}")
    height, width = x.shape[-2:]
    output: Tensor | None = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            y0, x0 = max(0, top - halo), max(0, left - halo)
            y1, x1 = min(height, top + tile + halo), min(width, left + tile + halo)
            patch = fn(x[:, :, y0:y1, x0:x1])
            if output is None:
                output = patch.new_empty(x.shape[0], patch.shape[1], scale * height, scale * width)
            rows, cols = min(tile, height - top), min(tile, width - left)
            core = patch[..., scale * (top - y0) : scale * (top - y0 + rows), scale * (left - x0) : scale * (left - x0 + cols)]
            output[..., scale * top : scale * (top + rows), scale * left : scale * (left + cols)] = core
    assert output is not None
    return output
