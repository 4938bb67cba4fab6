"""ZoomLearnModule pieces without a Trainer: white-balance conventions and the sampled CoBi_RGB."""

import pytest
import torch

from lightning_modules import ZoomLearnModule
from ops import cobi_loss, extract_patches

SMALL = {"width": 8, "num_blocks": 1, "up_width": 8, "w_vgg": 0.0, "pretrained": False, "patch_size": 4}


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "input": torch.rand(2, 4, 4, 4, generator=generator),
        "wb_input": torch.tensor([[2.0, 1.0, 1.5], [1.8, 1.0, 1.2]]),
        "wb_target": torch.tensor([[2.1, 1.0, 1.4], [1.7, 1.0, 1.3]]),
        "target": torch.rand(2, 3, 32, 32, generator=generator),
    }


def test_paper_white_balance_divides_the_target_and_multiplies_the_output():
    module = ZoomLearnModule(**SMALL)
    batch = _batch()
    assert module._network_input(batch) is batch["input"]
    wb_free = module._loss_target(batch["target"], batch["wb_target"])
    gains = batch["wb_target"] ** (1 / 2.2)
    torch.testing.assert_close(wb_free, batch["target"] / gains[:, :, None, None])
    # A prediction equal to the white-balance-free target gives back the JPG with the same gains.
    torch.testing.assert_close(module._output(wb_free, batch["wb_target"]), batch["target"].clamp(0, 1))


def test_input_white_balance_scales_the_raw_and_predicts_the_jpg():
    module = ZoomLearnModule(white_balance="input", **SMALL)
    batch = _batch()
    scaled = module._network_input(batch)
    for channel, gain in enumerate([0, 1, 2, 1]):  # packed R, G1, B, G2
        torch.testing.assert_close(scaled[:, channel], batch["input"][:, channel] * batch["wb_input"][:, gain, None, None])
    assert module._loss_target(batch["target"], batch["wb_target"]) is batch["target"]
    pred = torch.linspace(-0.5, 1.5, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    torch.testing.assert_close(module._output(pred, batch["wb_input"]), pred.clamp(0, 1))
    with pytest.raises(ValueError, match="needs packed raw input"):
        ZoomLearnModule(white_balance="input", in_channels=12, **SMALL)
    with pytest.raises(ValueError, match="white_balance must be"):
        ZoomLearnModule(white_balance="camera", **SMALL)


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_cobi_rgb_on_sampled_patches_equals_cobi_on_the_full_patch_maps(variant):
    """Patches are extracted only where they are used; the loss and its gradient do not change."""
    # paper: 64 sampled prediction positions against every target position; official: its own 63² of 70×70,
    # whatever cobi_max_positions says
    module = ZoomLearnModule(cobi_variant=variant, cobi_max_positions=64, w_spatial=0.2, **SMALL)
    generator = torch.Generator().manual_seed(3)
    pred = torch.rand(2, 3, 70, 70, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 70, 70, generator=generator, dtype=torch.float64)
    sampled, share = module._cobi_term(pred, target, torch.Generator().manual_seed(11), patch_size=10)
    scale = 255.0 if variant == "official" else 1.0
    full = cobi_loss(
        extract_patches(pred * scale, 10),
        extract_patches(target * scale, 10),
        w_spatial=0.2,
        distance="l2",
        variant=variant,
        max_positions=64 if variant == "paper" else "auto",
        generator=torch.Generator().manual_seed(11),
    )
    torch.testing.assert_close(sampled, full, rtol=0, atol=0)
    (grad_sampled,) = torch.autograd.grad(sampled, pred)
    (grad_full,) = torch.autograd.grad(full, pred)
    torch.testing.assert_close(grad_sampled, grad_full)
    assert 0.0 < share.item() <= 1.0


def test_vgg_terms_measure_the_spatial_term_in_output_pixels():
    """CoBi on conv2_2 (stride 2) weighs a one-feature-pixel displacement as two output pixels."""
    module = ZoomLearnModule(w_spatial=0.3, cobi_max_positions=None, **SMALL)
    generator = torch.Generator().manual_seed(0)
    pred, target = torch.rand(1, 8, 6, 6, generator=generator), torch.rand(1, 8, 6, 6, generator=generator)
    strided, _ = module._cobi_term(pred, target, torch.Generator(), stride=2)
    expected = cobi_loss(pred, target, w_spatial=0.6, max_positions=None)
    torch.testing.assert_close(strided, expected)


def test_official_vgg_options_need_matching_weights():
    with pytest.raises(ValueError, match="MatConvNet"):
        ZoomLearnModule(**{**SMALL, "w_vgg": 1.0, "pretrained": True, "vgg_pooling": "avg"})
    ZoomLearnModule(**{**SMALL, "w_vgg": 1.0, "vgg_pooling": "avg", "vgg_normalization": "caffe"})  # random weights
