"""ops.geometry: homogeneous maps, pixel-area scale maps, inner boxes, warping and sampling against naive references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ops.geometry import downscale, inner_box, map_points, pixel_grid, sample_bicubic, scale_map, warp_image

pytestmark = pytest.mark.usefixtures("one_thread")

HOMOGRAPHY = np.array([[1.02, 0.03, 4.5], [-0.02, 0.97, -3.0], [1e-4, -2e-4, 1.0]])


def _naive_map(matrix: np.ndarray, x: float, y: float) -> tuple[float, float]:
    u, v, w = matrix @ np.array([x, y, 1.0])
    return u / w, v / w


def test_map_points_equals_the_homogeneous_product_point_by_point():
    xs = torch.tensor([[0.0, 10.5], [300.0, -7.25]], dtype=torch.float64)
    ys = torch.tensor([[0.0, 2.0], [120.0, 55.5]], dtype=torch.float64)
    mx, my = map_points(HOMOGRAPHY, xs, ys)
    assert mx.shape == xs.shape and mx.dtype == torch.float64
    for index in np.ndindex(*xs.shape):
        expected = _naive_map(HOMOGRAPHY, float(xs[index]), float(ys[index]))
        assert (float(mx[index]), float(my[index])) == pytest.approx(expected, abs=1e-9)


def test_scale_map_keeps_pixel_areas_in_place():
    matrix = scale_map((4, 6), (8, 3))  # rows ×2, columns ×½
    # the left edge of pixel 0 (x = −0.5) stays the left edge, the right edge of the last pixel too
    assert _naive_map(matrix, -0.5, -0.5) == pytest.approx((-0.5, -0.5))
    assert _naive_map(matrix, 5.5, 3.5) == pytest.approx((2.5, 7.5))
    # centre of input pixels 0 and 1 (columns) → the centre of output pixel 0 is their midpoint
    assert _naive_map(matrix, 0.5, 0.0)[0] == pytest.approx(0.0)
    np.testing.assert_allclose(scale_map((5, 7), (5, 7)), np.eye(3))


def test_inner_box_lies_inside_the_preimage_and_rejects_flips():
    to_image = HOMOGRAPHY
    x0, y0, x1, y1 = inner_box(to_image, (1.0, 1.0, 200.0, 150.0))
    assert x1 > x0 and y1 > y0
    for x in np.linspace(x0, x1, 7):
        for y in np.linspace(y0, y1, 7):
            u, v = _naive_map(to_image, x, y)
            assert 1.0 - 1e-9 <= u <= 200.0 + 1e-9 and 1.0 - 1e-9 <= v <= 150.0 + 1e-9
    # tight: the box touches the preimage of the image box on both sides of each axis
    assert _naive_map(to_image, x0, y0)[0] == pytest.approx(1.0, abs=2.0)
    flip = np.diag([-1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="flips"):
        inner_box(flip, (0.0, 0.0, 10.0, 10.0))


def test_warp_image_samples_bilinearly_at_the_mapped_positions():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 20, 30, generator=generator, dtype=torch.float64)
    matrix = np.array([[0.9, 0.1, 3.2], [-0.05, 1.1, 2.7], [0.0, 0.0, 1.0]])
    warped, inside = warp_image(image, matrix, (12, 16), margin=0.0)
    assert warped.shape == (2, 12, 16) and inside.shape == (12, 16)

    def bilinear(channel: torch.Tensor, x: float, y: float) -> float:
        x = min(max(x, 0.0), 29.0)
        y = min(max(y, 0.0), 19.0)
        x0, y0 = min(math.floor(x), 28), min(math.floor(y), 18)
        fx, fy = x - x0, y - y0
        return float(
            (1 - fx) * (1 - fy) * channel[y0, x0] + fx * (1 - fy) * channel[y0, x0 + 1]
            + (1 - fx) * fy * channel[y0 + 1, x0] + fx * fy * channel[y0 + 1, x0 + 1]
        )

    for row in range(12):
        for col in range(16):
            x, y = _naive_map(matrix, col, row)
            assert bool(inside[row, col]) == (0 <= x <= 29 and 0 <= y <= 19)
            for channel in range(2):
                assert float(warped[channel, row, col]) == pytest.approx(bilinear(image[channel], x, y), abs=1e-9)


def test_downscale_returns_the_exact_map_of_its_output_grid():
    xs, ys = pixel_grid(90, 120)
    ramp = (0.01 * xs + 0.02 * ys).float()  # linear: anti-aliasing and resampling keep it exactly, away from borders
    small, matrix = downscale(ramp, 0.3)
    assert small.shape == (27, 36)
    np.testing.assert_allclose(matrix, scale_map((90, 120), (27, 36)))
    # output pixel (u, v) shows the input at matrix⁻¹·(u, v): compare with the ramp's value there
    inverse = np.linalg.inv(matrix)
    for v in range(5, 22, 4):
        for u in range(5, 31, 5):
            x, y = _naive_map(inverse, u, v)
            assert float(small[v, u]) == pytest.approx(0.01 * x + 0.02 * y, abs=1e-4)
    unchanged, identity = downscale(ramp, 1.0)
    assert unchanged is ramp and np.array_equal(identity, np.eye(3))


def test_sample_bicubic_returns_pixels_at_integers_and_reads_a_window_only():
    generator = np.random.default_rng(0)
    image = generator.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    ys, xs = torch.meshgrid(torch.arange(5.0, 9.0), torch.arange(10.0, 16.0), indexing="ij")
    sampled = sample_bicubic(image, xs.double(), ys.double())
    expected = torch.from_numpy(image[5:9, 10:16]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(sampled, expected, rtol=0, atol=1e-6)
    # a tensor image gives the same values as the array
    torch.testing.assert_close(sample_bicubic(torch.from_numpy(image), xs.double() + 0.3, ys.double()),
                               sample_bicubic(image, xs.double() + 0.3, ys.double()))
