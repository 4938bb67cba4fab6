"""Local misalignment: the sub-pixel translation between two aligned grey images, tile by tile.

Phase correlation (Kuglin & Hines 1975) on each ``tile``×``tile`` window of a regular grid: with F, M the
2-D DFTs of the Hann-windowed, mean-free tiles f and m,

    R(y) = Σ_k S_k · e^{2πi k·y/T},   S_k = conj(F_k)·M_k / (|F_k·M_k| + 0.01·max_k |F_k·M_k|),   d = argmax_y R(y),

where the tiles are high-passed first (minus a Gaussian blur of σ = T/16) and the frequencies almost
without energy are damped (the 0.01 term): both would otherwise carry the Hann window's own shape, common
to both tiles, and pull the peak to d = 0;

first on the integer grid (an inverse FFT), then on a grid of 1/``upsample`` px within ±1 px of that
peak, where R is evaluated directly as the sum above (matrix-multiply DFT, Guizar-Sicairos et al. 2008),

so that fixed(x) ≈ moving(x + d): the content at x in ``fixed`` appears at x + d in ``moving`` (the
convention of optical flow, :mod:`ops.flow`). A tile whose peak is weak
(peak value below ``min_peak``, e.g. a flat region without texture) has no reliable shift and is reported
as NaN. Used to measure what a global registration could not fit (parallax, perspective, lens distortion).
"""

from __future__ import annotations

import math

import torch
from kornia.filters import gaussian_blur2d
from torch import Tensor

__all__ = ["local_shifts"]


def _hann(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    window = torch.hann_window(size, periodic=False, dtype=dtype, device=device)
    return window[:, None] * window[None, :]


def _refine(spectrum: Tensor, coarse: Tensor, upsample: int) -> Tensor:
    """argmax of R(y) = Re Σ_k S_k·e^{2πi k·y/T} on the grid coarse + j/upsample, |j| ≤ upsample: (N, 2) → (N, 2)."""
    tiles, size = spectrum.shape[0], spectrum.shape[-1]
    frequencies = torch.fft.fftfreq(size, device=spectrum.device, dtype=torch.float64) * size  # k ∈ [−T/2, T/2)
    offsets = torch.arange(-upsample, upsample + 1, device=spectrum.device, dtype=torch.float64) / upsample
    ys = coarse[:, 0, None] + offsets  # (N, U)
    xs = coarse[:, 1, None] + offsets
    kernel_y = torch.exp(2j * math.pi * frequencies[None, :, None] * ys[:, None, :] / size)  # (N, T, U)
    kernel_x = torch.exp(2j * math.pi * frequencies[None, :, None] * xs[:, None, :] / size)
    surface = torch.einsum("nku,nkl,nlv->nuv", kernel_y, spectrum, kernel_x).real  # (N, U, U)
    best = surface.flatten(1).argmax(dim=1)
    count = offsets.numel()
    return torch.stack((ys[torch.arange(tiles), best // count], xs[torch.arange(tiles), best % count]), dim=1)


def _tiles(image: Tensor, tops: Tensor, lefts: Tensor, tile: int) -> Tensor:
    """(N, T, T) windows of ``image`` with top-left corners (tops, lefts) (N,), the border repeated outside."""
    span = torch.arange(tile, device=image.device)
    rows = (tops[:, None] + span).clamp(0, image.shape[0] - 1)
    cols = (lefts[:, None] + span).clamp(0, image.shape[1] - 1)
    return image[rows[:, :, None], cols[:, None, :]]


def _phase_correlation(f: Tensor, m: Tensor, upsample: int) -> tuple[Tensor, Tensor]:
    """Shift (N, 2) as (dy, dx) with f(x) ≈ m(x + d), and the peak quality (N,), for high-passed tiles (N, T, T)."""
    tile = f.shape[-1]
    window = _hann(tile, f.dtype, f.device)
    f = (f - f.mean(dim=(1, 2), keepdim=True)) * window
    m = (m - m.mean(dim=(1, 2), keepdim=True)) * window
    cross = torch.fft.fft2(f).conj() * torch.fft.fft2(m)
    magnitude = cross.abs()
    spectrum = cross / (magnitude + 0.01 * magnitude.amax(dim=(1, 2), keepdim=True) + 1e-30)
    surface = torch.fft.ifft2(spectrum).real  # (N, T, T), peak at d mod T
    peak, index = surface.flatten(1).max(dim=1)
    quality = peak / spectrum.abs().mean(dim=(1, 2))  # 1 for a perfect translation
    coarse = torch.stack((index // tile, index % tile), dim=1).to(f.dtype)
    coarse = torch.where(coarse > tile / 2, coarse - tile, coarse)
    return _refine(spectrum, coarse, upsample), quality


def local_shifts(
    fixed: Tensor, moving: Tensor, *, tile: int = 64, step: int | None = None, min_peak: float = 0.1, upsample: int = 20
) -> tuple[Tensor, Tensor]:
    """Per-tile shifts d (pixels) with fixed(x) ≈ moving(x + d), for grey images (H, W) of the same size.

    Two passes: the second takes each ``moving`` tile at the first pass's integer shift and measures the
    remainder, so the window's pull towards d = 0 (a few % of d) only acts on less than half a pixel.

    Args:
        fixed, moving: float (H, W).
        tile: side of the square tiles (shifts up to about a quarter of it are found).
        step: distance between tile corners (default ``tile``: no overlap).
        min_peak: tiles whose correlation peak, as a fraction of its value for a perfect translation
            (R(d)·T²/Σ|S_k|), is lower (a flat, textureless tile) get NaN shifts.
        upsample: the sub-pixel resolution is 1/upsample px.

    Returns:
        ``centres`` (N, 2) as (x, y) pixel coordinates of the tile centres, and ``shifts`` (N, 2) as
        (dx, dy), float64.
    """
    if fixed.dim() != 2 or fixed.shape != moving.shape or not fixed.is_floating_point():
        raise ValueError(
            f"expected two float grey images (H, W) of the same size, got {tuple(fixed.shape)} {fixed.dtype} and "
            f"{tuple(moving.shape)} {moving.dtype}"
        )
    step = tile if step is None else step
    if tile < 8 or step < 1 or min(fixed.shape) < tile:
        raise ValueError(f"expected tile ≥ 8 no larger than the image {tuple(fixed.shape)} and step ≥ 1, got {tile}, {step}")
    height, width = fixed.shape
    grid_y, grid_x = torch.meshgrid(
        torch.arange(0, height - tile + 1, step, device=fixed.device),
        torch.arange(0, width - tile + 1, step, device=fixed.device),
        indexing="ij",
    )
    tops, lefts = grid_y.flatten(), grid_x.flatten()
    sigma = tile / 16
    size = 2 * math.ceil(3 * sigma) + 1
    high_pass = lambda image: image - gaussian_blur2d(  # noqa: E731
        image[None, None], (size, size), (sigma, sigma), border_type="reflect"
    )[0, 0]
    f_image, m_image = high_pass(fixed.to(torch.float64)), high_pass(moving.to(torch.float64))
    f = _tiles(f_image, tops, lefts, tile)
    first, _ = _phase_correlation(f, _tiles(m_image, tops, lefts, tile), upsample)
    whole = first.round().long()
    rest, quality = _phase_correlation(f, _tiles(m_image, tops + whole[:, 0], lefts + whole[:, 1], tile), upsample)
    shift = whole + rest  # (dy, dx)
    shifts = shift.flip(1)
    shifts[~(quality >= min_peak)] = math.nan
    centres = torch.stack((lefts, tops), dim=1).to(torch.float64) + (tile - 1) / 2
    return centres, shifts
