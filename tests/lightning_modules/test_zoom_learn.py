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
    """Patches are extracted only at the sampled positions; the loss and its gradient do not change."""
    max_positions = 64 if variant == "paper" else None  # official: 63² of the 70×70 positions
    module = ZoomLearnModule(cobi_variant=variant, cobi_max_positions=max_positions, w_spatial=0.2, **SMALL)
    generator = torch.Generator().manual_seed(3)
    pred = torch.rand(2, 3, 70, 70, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 70, 70, generator=generator, dtype=torch.float64)
    sampled = module._cobi_rgb(pred, target, torch.Generator().manual_seed(11))
    scale = 255.0 if variant == "official" else 1.0
    full = cobi_loss(
        extract_patches(pred * scale, 10),
        extract_patches(target * scale, 10),
        w_spatial=0.2,
        distance="l2",
        variant=variant,
        max_positions="auto" if max_positions is None else max_positions,
        generator=torch.Generator().manual_seed(11),
    )
    torch.testing.assert_close(sampled, full, rtol=0, atol=0)
    (grad_sampled,) = torch.autograd.grad(sampled, pred)
    (grad_full,) = torch.autograd.grad(full, pred)
    torch.testing.assert_close(grad_sampled, grad_full)
