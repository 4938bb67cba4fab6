"""The degradation residual n = D(GT) − down(GT): one resampler, the drawn steps and their statistics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datamodules.dualzoom.degradation import (
    STEPS,
    DegradationDraw,
    area_downscale,
    degradation_residual,
    degrade,
    draw_degradation,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _textured(size: int, seed: int = 0) -> torch.Tensor:
    """A GT-like image in [0, 1] (3, size, size) on the 8-bit grid: smooth colours plus sharp edges."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, size=(3, size // 8, size // 8)).astype(np.float32)
    image = F.interpolate(torch.from_numpy(coarse)[None], size=(size, size), mode="bicubic", align_corners=False)[0]
    image[:, size // 3 : size // 2, :] += 0.3
    return (image.clamp(0, 1) * 255).round() / 255


def test_area_downscale_is_the_block_mean():
    image = torch.rand(2, 3, 12, 8, dtype=torch.float64)
    expected = torch.empty(2, 3, 3, 2, dtype=torch.float64)
    for i in range(3):
        for j in range(2):
            expected[..., i, j] = image[..., 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean(dim=(-2, -1))
    torch.testing.assert_close(area_downscale(image, 4), expected)
    with pytest.raises(ValueError, match="multiple of the scale"):
        area_downscale(image[..., :10, :], 4)


@pytest.mark.parametrize("scale", [2, 4])
def test_one_resampler_on_both_sides(scale):
    """With only the downscaling step, n is the 8-bit rounding alone (≤ 0.5/255) on any image; the
    official mix (cv2 bilinear inside D, torch bicubic align_corners=True outside) is not."""
    gt = _textured(96)
    n = degradation_residual(gt, scale, torch.Generator().manual_seed(0), DegradationDraw(("down",), 0, 95))
    assert n.shape == (3, 96 // scale, 96 // scale) and n.dtype == torch.float32
    assert float(n.abs().max()) <= 0.5 / 255 + 1e-6

    as_bytes = (gt * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    official_inside = cv2.resize(as_bytes, (96 // scale, 96 // scale), interpolation=cv2.INTER_LINEAR)
    official_outside = F.interpolate(gt[None], scale_factor=1 / scale, mode="bicubic", align_corners=True)[0]
    official_n = torch.from_numpy(official_inside).permute(2, 0, 1) / 255 - official_outside
    assert float(official_n.abs().mean()) > 4 * float(n.abs().mean())


def test_draws_cover_the_documented_ranges():
    generator = torch.Generator().manual_seed(1)
    draws = [draw_degradation(generator) for _ in range(600)]
    assert {d.sigma for d in draws} == set(range(5, 31))
    assert {d.quality for d in draws} == set(range(60, 96))
    orders = {d.order for d in draws}
    assert len(orders) == 6 and all(sorted(order) == sorted(STEPS) for order in orders)


def test_noise_before_the_downscale_is_added_at_hr():
    """On a constant image: noise then down leaves σ/s (s² HR samples averaged per LR pixel)."""
    gt = torch.full((3, 128, 128), 128 / 255)
    sigma, scale = 20, 4
    after = degradation_residual(gt, scale, torch.Generator().manual_seed(2), DegradationDraw(("down", "noise"), sigma, 95))
    before = degradation_residual(gt, scale, torch.Generator().manual_seed(2), DegradationDraw(("noise", "down"), sigma, 95))
    assert float(after.std() * 255) == pytest.approx(sigma, rel=0.08)
    assert float(before.std() * 255) == pytest.approx(np.hypot(sigma / scale, 1 / np.sqrt(12)), rel=0.1)
    assert abs(float(after.mean() * 255)) < 0.5 and abs(float(before.mean() * 255)) < 0.3


def test_residual_of_a_constant_image_is_zero_mean_noise_and_jpeg():
    """Every random draw: n of mid-grey is noise (σ 5…30, less when downscaled after) plus JPEG error."""
    gt = torch.full((3, 96, 96), 128 / 255)
    stds = []
    for seed in range(40):
        generator = torch.Generator().manual_seed(seed)
        n = degradation_residual(gt, 2, generator)
        assert n.shape == (3, 48, 48)
        assert abs(float(n.mean()) * 255) < 1.0
        stds.append(float(n.std()) * 255)
    assert 1.0 < min(stds) and max(stds) < 31.0
    assert np.mean(stds) > 5.0


def test_jpeg_step_and_determinism():
    gt = _textured(64, seed=3)
    as_bytes = (gt * 255).round().to(torch.uint8)
    jpeg_only = degrade(as_bytes, 2, DegradationDraw(("jpeg",), 0, 60), torch.Generator())
    assert jpeg_only.shape == (3, 64, 64) and jpeg_only.dtype == torch.uint8
    error = (jpeg_only.float() - as_bytes.float()).abs().mean()
    assert 0.3 < float(error) < 8.0  # lossy, but the same picture
    first = degradation_residual(gt, 2, torch.Generator().manual_seed(7))
    assert torch.equal(first, degradation_residual(gt, 2, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, degradation_residual(gt, 2, torch.Generator().manual_seed(8)))
    with pytest.raises(ValueError, match="'down'"):
        degradation_residual(gt, 2, torch.Generator(), DegradationDraw(("noise",), 5, 90))
