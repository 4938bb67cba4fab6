"""The shared metric protocols: values, naming, and the aligned-target protocol under a known shift."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.evaluation import ImageQualityMetrics, aligned_target, bicubic_baseline, center_crop


def _scene(size: int, seed: int = 0) -> torch.Tensor:
    noise = torch.rand(2, 3, size // 4, size // 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def test_aligned_protocol_acts_under_a_known_shift():
    world = _scene(64)
    target = world[..., 8:56, 8:56]  # a 48×48 target: the 32×32 output grid plus a margin of 8
    shift = (3, -2)  # the output shows the world 3 px lower and 2 px left of where the registration put it
    image = world[..., 16 + shift[0] : 48 + shift[0], 16 + shift[1] : 48 + shift[1]]
    registered = center_crop(target, image.shape[-2:])
    aligned = aligned_target(image, target)
    assert torch.equal(aligned, image)  # the search finds the window exactly
    metrics = ImageQualityMetrics(pretrained=False, comparisons=("", "_aligned"))
    metrics.build()
    metrics.update("val", "", image, registered)
    metrics.update("val", "_aligned", image.clamp(0, 0.999), aligned)  # not identical: a finite PSNR
    psnr = {key: metrics.accumulators[key].compute().item() for key in ("val_psnr", "val_psnr_aligned")}
    assert psnr["val_psnr_aligned"] > psnr["val_psnr"] + 10


def test_psnr_ssim_lpips_values_and_names():
    image = _scene(32, 1)
    reference = (image + 0.1 * _scene(32, 2) - 0.05).clamp(0, 1)
    metrics = ImageQualityMetrics(pretrained=False, comparisons=("",))
    metrics.build()
    logged = metrics.update("test", "", image, reference)
    assert set(logged) == {"test/psnr", "test/ssim", "test/lpips_random_backbone"}
    mse = ((image - reference) ** 2).flatten(1).mean(1)
    assert logged["test/psnr"].compute().item() == pytest.approx((10 * torch.log10(1 / mse)).mean().item(), rel=1e-5)
    assert 0.5 < logged["test/ssim"].compute().item() < 1
    assert logged["test/lpips_random_backbone"].compute().item() > 0
    assert metrics.goals("val") == {"val/psnr": "max", "val/ssim": "max", "val/lpips_random_backbone": "min"}
    assert ImageQualityMetrics(pretrained=True, comparisons=("",)).goals("val")["val/lpips"] == "min"
    with pytest.raises(ValueError, match="unknown comparison"):
        metrics.update("test", "_aligned", image, reference)


def test_bicubic_baseline_keeps_pixel_areas_in_place():
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 3, 8, 8) / 10
    up = bicubic_baseline(ramp, 4)
    assert up.shape == (1, 3, 32, 32)
    # input pixel x covers output pixels 4x … 4x + 3: their mean is the input value (a linear ramp stays linear)
    assert up[0, 0, 16, 12:16].mean().item() == pytest.approx(0.3, abs=1e-6)
    assert math.isclose(up.min().item(), 0.0) and up.max().item() <= 1.0
