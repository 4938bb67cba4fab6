"""ops.warp: backward warping and the validity mask against a naive per-pixel bilinear sampler (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from ops.warp import BackwardWarp, backward_warp

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive_warp(image: torch.Tensor, flow: torch.Tensor, eps: float = 1e-3, gain: tuple[float, float] = (1.0, 1.0)):
    """Per pixel: sample at (x + gain_x·u, y + gain_y·v) from the four taps, zero outside; mask from the tap weights.

    Built from differentiable tensor ops, so autograd gives the reference gradients too.
    """
    batch, channels, height, width = image.shape
    warped, masks = [], []
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                px = x + gain[0] * flow[b, 0, y, x]
                py = y + gain[1] * flow[b, 1, y, x]
                x0, y0 = math.floor(float(px.detach())), math.floor(float(py.detach()))
                fx, fy = px - x0, py - y0
                value, inside = image.new_zeros(channels), image.new_zeros(())
                for ty, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                    for tx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                        if 0 <= ty < height and 0 <= tx < width:
                            value = value + wy * wx * image[b, :, ty, tx]
                            inside = inside + wy * wx
                valid = float(inside.detach() > 1 - eps)
                warped.append(value * valid)
                masks.append(torch.full((), valid, dtype=image.dtype))
    warped = torch.stack(warped).view(batch, height, width, channels).permute(0, 3, 1, 2)
    return warped, torch.stack(masks).view(batch, 1, height, width)


def _image(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("normalization", ["pixel", "official"])
def test_zero_flow_is_the_identity_with_an_all_ones_mask(normalization: str):
    image = _image(2, 3, 7, 9)
    warped, mask = backward_warp(image, torch.zeros(2, 2, 7, 9, dtype=torch.float64), normalization=normalization)
    torch.testing.assert_close(warped, image, rtol=0, atol=1e-14)
    assert mask.shape == (2, 1, 7, 9) and mask.dtype == torch.float64 and bool((mask == 1).all())


def test_integer_flow_is_a_shift_with_zeros_outside():
    image = _image(1, 2, 6, 8)
    generator = torch.Generator().manual_seed(1)
    flow = torch.randint(-2, 3, (1, 2, 6, 8), generator=generator).to(torch.float64)
    warped, mask = backward_warp(image, flow)
    for y in range(6):
        for x in range(8):
            sx, sy = x + int(flow[0, 0, y, x]), y + int(flow[0, 1, y, x])
            inside = 0 <= sx < 8 and 0 <= sy < 6
            assert float(mask[0, 0, y, x]) == float(inside)
            expected = image[0, :, sy, sx] if inside else torch.zeros(2, dtype=torch.float64)
            torch.testing.assert_close(warped[0, :, y, x], expected, rtol=0, atol=1e-14)


def test_fractional_flow_matches_naive_bilinear_values_and_gradients():
    image = _image(2, 2, 5, 6).requires_grad_()
    flow = (3 * _image(2, 2, 5, 6, seed=2) - 1.5).requires_grad_()
    warped, mask = backward_warp(image, flow)
    expected, expected_mask = _naive_warp(image, flow)
    torch.testing.assert_close(warped, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(mask, expected_mask, rtol=0, atol=0)
    assert 0 < mask.sum() < mask.numel()  # both kinds of pixels occur

    weights = _image(2, 2, 5, 6, seed=3)
    grads = torch.autograd.grad((warped * weights).sum(), (image, flow))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (image, flow))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


def test_official_normalization_over_shifts_by_w_over_w_minus_1():
    height, width = 16, 64
    ramp_x = torch.arange(width, dtype=torch.float64).expand(1, 1, height, width)
    ramp_y = torch.arange(height, dtype=torch.float64).view(1, 1, height, 1).expand(1, 1, height, width)
    flow = torch.empty(1, 2, height, width, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = 1.0, -0.5
    image = torch.cat((ramp_x, ramp_y), dim=1)
    for normalization, gain in (("pixel", (1.0, 1.0)), ("official", (width / (width - 1), height / (height - 1)))):
        warped, mask = backward_warp(image, flow, normalization=normalization)
        shift_x = (warped[0, 0] - ramp_x[0, 0])[2:-3, 2:-3]
        shift_y = (warped[0, 1] - ramp_y[0, 0])[2:-3, 2:-3]
        torch.testing.assert_close(shift_x, torch.full_like(shift_x, gain[0]), rtol=0, atol=1e-12)
        torch.testing.assert_close(shift_y, torch.full_like(shift_y, -0.5 * gain[1]), rtol=0, atol=1e-12)
        expected, expected_mask = _naive_warp(image, flow, gain=gain)
        torch.testing.assert_close(warped, expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(mask, expected_mask, rtol=0, atol=0)
    # reference §1.5: a +1 px flow zeroes 2 columns at W = 64 with the official normalisation, 1 exactly
    one_px_right = torch.cat((torch.ones_like(ramp_x), torch.zeros_like(ramp_x)), dim=1)
    for normalization, columns in (("pixel", 1), ("official", 2)):
        _, mask = backward_warp(image, one_px_right, normalization=normalization)
        assert (mask[0, 0] == 0).all(dim=0).sum() == columns and (mask[0, 0, :, : width - columns] == 1).all()


def test_gradcheck_wrt_image_and_flow():
    image = _image(1, 2, 4, 5, seed=4).requires_grad_()
    flow = (2 * _image(1, 2, 4, 5, seed=5) - 1).requires_grad_()
    for normalization in ("pixel", "official"):
        assert torch.autograd.gradcheck(
            lambda i, f, normalization=normalization: backward_warp(i, f, normalization=normalization)[0], (image, flow)
        )


def test_module_equals_function_and_guards():
    image, flow = _image(1, 3, 5, 6), 0.3 * _image(1, 2, 5, 6, seed=1)
    module = BackwardWarp(eps=0.01, normalization="official")
    for got, expected in zip(module(image, flow), backward_warp(image, flow, eps=0.01, normalization="official")):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"flow \(B, 2, H, W\), got \(1, 3, 5, 6\) and \(1, 3, 5, 6\)"):
        backward_warp(image, image)
    with pytest.raises(ValueError, match="share batch and size"):
        backward_warp(image, flow[..., :5])
    with pytest.raises(ValueError, match="one dtype"):
        backward_warp(image, flow.float())
    with pytest.raises(ValueError, match="normalization 'pixel' or 'official', got 'exact'"):
        backward_warp(image, flow, normalization="exact")
    with pytest.raises(ValueError, match="0 < eps < 1, got 0"):
        backward_warp(image, flow, eps=0)
