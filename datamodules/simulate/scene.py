"""Procedural scenes that any simulated shot can render at its own resolution.

World coordinates are the pixel coordinates of the reference (longest-focal) shot: x = column,
y = row, pixel centres at integers. A shot whose pixels each cover ``footprint`` world units renders
the same world with the anti-aliasing of that footprint, so a wide shot looks like a filtered,
subsampled version of a tele shot.

A scene is composited back to front from:

* a smooth colour gradient (three sinusoids with periods of 2, 0.5 and 0.1 times the widest field
  of view), multiplied by ``1 + T`` where ``T`` is a multi-scale texture: two sinusoids per octave,
  periods 4 … 512 world units;
* :data:`DEFAULT_LAYERS`: sharp-edged patches (rotated rectangles and discs of mixed and saturated
  colours, cells 16 … 2048 world units), thin lines (1–3 units wide), light text blocks and dark
  text-like strokes (1–2 units wide, 4–7 long, at multiples of 45°) drawn only inside the blocks.

Every pixel shows the mean of the scene over its square footprint (side ``φ`` world units), so a wide
shot is exactly the box-filtered, subsampled version of a tele shot, aliasing included:

* a texture wave ``cos(kx·x + ky·y + p)`` averages to itself times ``sinc(kx·φ/2)·sinc(ky·φ/2)``
  (``sinc t = sin t / t``);
* a shape's coverage of a pixel, in the shape's frame (along-axis ``a``, across ``b``; for a disc ``a`` is
  the distance to its centre and ``b = 0``), is the separable overlap ``box(a; half_length)·box(b;
  half_width)`` with ``box(t; h) = |[t−h, t+h] ∩ [−φ/2, φ/2]| / φ``. It is exact for axis-aligned
  rectangles, preserves every shape's area, and a 1-unit line in a 10-unit pixel gets coverage 0.1;
* a pixel only looks up the shape of the cell its centre falls in; shapes keep 1/8 cell away from the
  cell border, so little of a neighbour's shape is missed while cells span at least
  :data:`MIN_CELL_FOOTPRINTS` footprints (a 10× coarser render is within 42 dB of the box-filtered fine
  one, gamma-encoded). A layer with smaller cells is drawn at ``s × s``
  sub-pixel samples of footprint ``φ/s`` (``s = ⌈MIN_CELL_FOOTPRINTS·φ / cell⌉``) whose coverage and
  premultiplied colour are averaged before the layer is composited.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["ShapeLayer", "DEFAULT_LAYERS", "MIN_CELL_FOOTPRINTS", "ProceduralScene", "cell_uniforms"]

#: Cells of a shape layer must span this many (sub-)pixel footprints; smaller ones are supersampled.
MIN_CELL_FOOTPRINTS = 2.0

# SplitMix64 constants: the golden-ratio increment and the two finaliser multipliers.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, a bijective 64-bit avalanche (uint64 arrays wrap modulo 2^64)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def cell_uniforms(key: int, ix: np.ndarray, iy: np.ndarray, count: int) -> np.ndarray:
    """Uniforms in [0, 1) of shape (N, count) for the cells (ix, iy), each of shape (N,).

    A stateless (counter-based) generator: the numbers of a cell depend only on ``key`` (drawn from
    the scene's seeded generator) and the cell index, so every shot that sees the cell, whatever its
    field of view, renders the same shape.
    """
    z = _mix64(np.uint64(key) + ix.astype(np.int64).astype(np.uint64) * _GOLDEN)
    z = _mix64(z + iy.astype(np.int64).astype(np.uint64) * _GOLDEN)
    counters = np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN
    z = _mix64(z[:, None] + counters[None, :])
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


@dataclass(frozen=True)
class ShapeLayer:
    """A jittered grid holding at most one shape per cell.

    Args:
        cell: Cell width and height (world units).
        density: Probability that a cell holds a shape.
        half_length, half_width: Uniform ranges of the shape's half sizes (world units); a disc uses
            ``half_length`` as its radius. Shapes are shrunk to stay 1/8 cell away from the cell
            border, so a pixel only needs the shape of its own cell.
        disc_share: Probability that a shape is a disc rather than a rectangle.
        angle_step_deg: Rectangles are rotated by a multiple of this angle; 0 means any angle.
        palette: ``"mixed"`` (35 % saturated, 15 % dark, else moderate colours), ``"ink"`` (dark,
            20 % saturated) or ``"paper"`` (light, nearly neutral).
        inside_previous: Draw the shapes only where the previous layer's shapes are (text strokes
            inside text blocks).
    """

    cell: tuple[float, float]
    density: float
    half_length: tuple[float, float]
    half_width: tuple[float, float]
    disc_share: float = 0.0
    angle_step_deg: float = 0.0
    palette: str = "mixed"
    inside_previous: bool = False


def _patches(cell: float, density: float) -> ShapeLayer:
    """Rectangles and discs of 0.2–0.72 cell, any angle, mixed palette."""
    return ShapeLayer((cell, cell), density, (0.1 * cell, 0.36 * cell), (0.1 * cell, 0.36 * cell), disc_share=0.4)


#: Back-to-front layers of the default scene (world units = pixels of the longest-focal shot).
DEFAULT_LAYERS: tuple[ShapeLayer, ...] = (
    _patches(2048.0, 0.6),
    _patches(1024.0, 0.6),
    _patches(512.0, 0.55),
    ShapeLayer((320.0, 320.0), 0.6, (60.0, 120.0), (0.5, 1.5), palette="ink"),
    _patches(256.0, 0.5),
    ShapeLayer((160.0, 160.0), 0.25, (40.0, 60.0), (25.0, 55.0), angle_step_deg=90.0, palette="paper"),
    ShapeLayer((9.0, 14.0), 0.75, (2.0, 3.5), (0.5, 1.0), disc_share=0.1, angle_step_deg=45.0, palette="ink",
               inside_previous=True),
    _patches(128.0, 0.45),
    _patches(64.0, 0.35),
    _patches(32.0, 0.3),
    _patches(16.0, 0.25),
)

# Columns of a per-cell shape table.
_CX, _CY, _COS, _SIN, _HALF_LENGTH, _HALF_WIDTH, _DISC, _RED, _GREEN, _BLUE = range(10)
_UNIFORMS_PER_CELL = 11


def _hue_to_rgb(hue: np.ndarray) -> np.ndarray:
    """Fully saturated colours (N, 3) in [0, 1] for hues in [0, 1)."""
    h6 = hue * 6.0
    return np.clip(np.stack([np.abs(h6 - 3) - 1, 2 - np.abs(h6 - 2), 2 - np.abs(h6 - 4)], axis=1), 0, 1)


def _colours(palette: str, u: np.ndarray) -> np.ndarray:
    """Linear RGB colours (N, 3) for a palette from uniforms u (N, 4).

    Saturated: a pure hue at value 0.5–0.85 with 3 % floor; dark: 0.01–0.06; moderate: 0.05–0.75 per
    channel; paper: 0.62–0.82, ±5 % tint.
    """
    saturated = (0.5 + 0.35 * u[:, 1:2]) * (0.03 + 0.97 * _hue_to_rgb(u[:, 2]))
    dark = (0.01 + 0.05 * u[:, 1:2]) * (0.8 + 0.4 * u[:, 1:4])
    if palette == "paper":
        return (0.62 + 0.2 * u[:, 1:2]) * (0.95 + 0.1 * u[:, 1:4])
    if palette == "ink":
        return np.where(u[:, 0:1] < 0.2, saturated, dark)
    if palette == "mixed":
        moderate = 0.05 + 0.7 * u[:, 1:4]
        return np.where(u[:, 0:1] < 0.35, saturated, np.where(u[:, 0:1] < 0.5, dark, moderate))
    raise ValueError(f"unknown palette {palette!r}; expected 'mixed', 'ink' or 'paper'")


def _shape_table(layer: ShapeLayer, key: int, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """Shape parameters (10, N) of the cells (ix, iy): centre, cos/sin, half sizes, disc flag, colour."""
    u = cell_uniforms(key, ix, iy, _UNIFORMS_PER_CELL)
    cell_w, cell_h = layer.cell
    present = u[:, 0] < layer.density
    disc = u[:, 1] < layer.disc_share
    half_length = np.where(present, layer.half_length[0] + (layer.half_length[1] - layer.half_length[0]) * u[:, 2], 0)
    half_width = layer.half_width[0] + (layer.half_width[1] - layer.half_width[0]) * u[:, 3]
    half_width = np.where(disc, half_length, np.where(present, half_width, 0))
    if layer.angle_step_deg > 0:
        steps = round(180.0 / layer.angle_step_deg)
        angle = np.floor(u[:, 4] * steps) * math.radians(layer.angle_step_deg)
    else:
        angle = u[:, 4] * math.pi
    cos, sin = np.cos(angle), np.sin(angle)
    extent_x = np.where(disc, half_length, np.abs(half_length * cos) + np.abs(half_width * sin))
    extent_y = np.where(disc, half_length, np.abs(half_length * sin) + np.abs(half_width * cos))
    room_x, room_y = 0.375 * cell_w, 0.375 * cell_h
    shrink = np.minimum(1.0, np.minimum(room_x / np.maximum(extent_x, 1e-9), room_y / np.maximum(extent_y, 1e-9)))
    half_length, half_width = half_length * shrink, half_width * shrink
    centre_x = (ix + 0.5) * cell_w + (u[:, 5] - 0.5) * 2 * (room_x - extent_x * shrink)
    centre_y = (iy + 0.5) * cell_h + (u[:, 6] - 0.5) * 2 * (room_y - extent_y * shrink)
    colour = _colours(layer.palette, u[:, 7:11])
    return np.stack([centre_x, centre_y, cos, sin, half_length, half_width, disc.astype(np.float64), *colour.T])


class ProceduralScene:
    """One random, resolution-independent scene.

    Args:
        rng: The scene's seeded generator; everything random about the scene is drawn from it here.
        extent: Width (world units) of the widest field of view; sets the gradients' periods.
        layers: Back-to-front shape layers.
    """

    def __init__(self, rng: np.random.Generator, extent: float, layers: tuple[ShapeLayer, ...] = DEFAULT_LAYERS):
        self.layers = layers
        self.layer_keys = [int(k) for k in rng.integers(0, 2**63, size=len(layers))]
        # Background: base colour + three sinusoidal colour gradients, periods ~2, ~0.5, ~0.1 extents.
        self.base = rng.uniform(0.05, 0.15, size=3)
        periods = extent * np.array([2.0, 0.5, 0.1]) * rng.uniform(0.7, 1.4, size=3)
        self.gradient_waves = self._waves(rng, periods)
        self.gradient_colours = rng.uniform(0.0, 0.17, size=(3, 3))
        # Texture: two sinusoids per octave, periods 4 · 2^o world units (larger scales: the gradients).
        octaves = np.repeat(4.0 * 2.0 ** np.arange(8), 2) * rng.uniform(0.85, 1.15, size=16)
        self.texture_waves = self._waves(rng, octaves)
        self.texture_amplitudes = rng.uniform(0.025, 0.05, size=16)

    @staticmethod
    def _waves(rng: np.random.Generator, periods: np.ndarray) -> list[tuple[float, float, float]]:
        """(kx, ky, phase) of plane waves cos(kx·x + ky·y + phase) with random directions."""
        angles = rng.uniform(0, 2 * np.pi, size=len(periods))
        phases = rng.uniform(0, 2 * np.pi, size=len(periods))
        return [
            (2 * np.pi * np.cos(a) / p, 2 * np.pi * np.sin(a) / p, ph) for a, ph, p in zip(angles, phases, periods)
        ]

    def render(self, x: Tensor, y: Tensor, footprint: float) -> Tensor:
        """Linear RGB (3, H, W) in [0, 1] seen by pixels at world positions ``x``, ``y`` (H, W).

        ``footprint`` is the world size of one pixel (1 for the reference shot, ≈10 for a 10× wider
        shot).
        """
        if x.shape != y.shape or x.dim() != 2:
            raise ValueError(f"expected x and y of the same shape (H, W), got {tuple(x.shape)} and {tuple(y.shape)}")
        image = self._background(x, y, footprint)
        reach = 0.5 * footprint  # sub-pixel samples lie up to half a footprint from the pixel centres
        bounds = (float(x.min()) - reach, float(x.max()) + reach, float(y.min()) - reach, float(y.max()) + reach)
        previous: Tensor | float = 1.0
        for layer, key in zip(self.layers, self.layer_keys):
            previous = self._composite_layer(image, layer, key, x, y, bounds, footprint, previous)
        return image.clamp_(0.0, 1.0)

    def _background(self, x: Tensor, y: Tensor, footprint: float) -> Tensor:
        image = torch.as_tensor(self.base, dtype=x.dtype).view(3, 1, 1).expand(3, *x.shape).clone()
        for (kx, ky, phase), colour in zip(self.gradient_waves, self.gradient_colours):
            ramp = torch.mul(x, kx).add_(y, alpha=ky).add_(phase).sin_().add_(1.0).mul_(0.5)
            image.addcmul_(torch.as_tensor(colour, dtype=x.dtype).view(3, 1, 1), ramp)
        texture = torch.ones_like(x)
        for (kx, ky, phase), amplitude in zip(self.texture_waves, self.texture_amplitudes):
            # Box average over the footprint; np.sinc(t) = sin(πt)/(πt), so sinc(k·φ/2) = np.sinc(k·φ/2π).
            attenuation = amplitude * np.sinc(kx * footprint / (2 * np.pi)) * np.sinc(ky * footprint / (2 * np.pi))
            if abs(attenuation) > 1e-4:
                texture.add_(torch.mul(x, kx).add_(y, alpha=ky).add_(phase).cos_(), alpha=float(attenuation))
        return image.mul_(texture)

    def _composite_layer(
        self,
        image: Tensor,
        layer: ShapeLayer,
        key: int,
        x: Tensor,
        y: Tensor,
        bounds: tuple[float, float, float, float],
        footprint: float,
        previous: Tensor | float,
    ) -> Tensor | float:
        """Draw ``layer`` over ``image`` in place (``image·(1 − α) + α·c``); return its coverage α.

        α and the premultiplied colour α·c are averaged over the layer's sub-pixel samples (module
        docstring); a layer drawn ``inside_previous`` is gated by the previous layer's coverage.
        """
        samples = math.ceil(MIN_CELL_FOOTPRINTS * footprint / min(layer.cell))
        step = footprint / samples
        offsets = [(i + 0.5) * step - 0.5 * footprint for i in range(samples)]
        coverage, premultiplied = torch.zeros_like(x), torch.zeros_like(image)
        for dy, dx in itertools.product(offsets, offsets):
            sample_coverage, colour = self._draw(layer, key, x + dx, y + dy, bounds, step)
            coverage += sample_coverage
            premultiplied.addcmul_(colour, sample_coverage)
        gate = previous if layer.inside_previous else 1.0
        coverage = coverage.mul_(gate / samples**2)
        image.mul_(1.0 - coverage).add_(premultiplied.mul_(gate / samples**2))
        return coverage

    def _draw(
        self,
        layer: ShapeLayer,
        key: int,
        x: Tensor,
        y: Tensor,
        bounds: tuple[float, float, float, float],
        footprint: float,
    ) -> tuple[Tensor, Tensor]:
        """Coverage (H, W) and colour (3, H, W) of the shape in each pixel's cell.

        ``bounds`` = (min x, max x, min y, max y) of the pixels: the cells in between get a table of
        per-shape constants, gathered per pixel column by column (numpy's ``take`` is several times
        faster than torch's gathers on CPU). In the shape's frame ``a = x·cos + y·sin − a₀``,
        ``b = y·cos − x·sin − b₀``; the box overlap is
        ``|[t−h, t+h] ∩ [−φ/2, φ/2]| = clamp(h + φ/2 − |t|, 0, min(2h, φ))``.
        """
        cell_w, cell_h = layer.cell
        ix0, ix1 = math.floor(bounds[0] / cell_w), math.floor(bounds[1] / cell_w)
        iy0, iy1 = math.floor(bounds[2] / cell_h), math.floor(bounds[3] / cell_h)
        grid_x, grid_y = np.meshgrid(np.arange(ix0, ix1 + 1), np.arange(iy0, iy1 + 1))
        centre_x, centre_y, cos, sin, half_length, half_width, disc, *colour = _shape_table(
            layer, key, grid_x.ravel(), grid_y.ravel()
        )
        constants = np.stack(
            [
                cos,
                sin,
                centre_x * cos + centre_y * sin,
                centre_y * cos - centre_x * sin,
                disc,
                half_length + 0.5 * footprint,
                np.minimum(2 * half_length, footprint),
                half_width + 0.5 * footprint,
                np.minimum(2 * half_width, footprint),
                *colour,
            ]
        ).astype(np.float32)
        cell_index = torch.floor(y / cell_h).sub_(iy0).mul_(ix1 - ix0 + 1).add_(torch.floor(x / cell_w).sub_(ix0))
        cell_index = cell_index.long().view(-1).numpy()
        per_pixel = np.empty((len(constants), cell_index.size), dtype=np.float32)
        for row, values in enumerate(constants):
            np.take(values, cell_index, out=per_pixel[row])
        per_pixel = torch.from_numpy(per_pixel).view(-1, *x.shape)
        cos, sin, a0, b0, disc, reach_l, cap_l, reach_w, cap_w = per_pixel[:9]
        along = torch.addcmul(x * cos, y, sin).sub_(a0)
        across = torch.addcmul(y * cos, x, sin, value=-1.0).sub_(b0)
        along = torch.lerp(along, torch.hypot(along, across), disc)
        across.mul_(1.0 - disc)
        coverage = torch.minimum(reach_l - along.abs_(), cap_l).clamp_(min=0.0)
        coverage *= torch.minimum(reach_w - across.abs_(), cap_w).clamp_(min=0.0)
        return coverage.mul_(1.0 / footprint**2), per_pixel[9:]
