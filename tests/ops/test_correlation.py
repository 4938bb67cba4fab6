"""ops.correlation: the PWC-Net cost volume against a naive per-pixel loop, values and gradients in float64."""

from __future__ import annotations

import pytest
import torch

from ops.correlation import Correlation, correlation

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive_correlation(first: torch.Tensor, second: torch.Tensor, d: int) -> torch.Tensor:
    """out[b, k, y, x] = mean_c first[b, c, y, x]·second[b, c, y + dy, x + dx], k = (dy + d)(2d + 1) + dx + d."""
    batch, _, height, width = first.shape
    planes = []
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            values = []
            for b in range(batch):
                for y in range(height):
                    for x in range(width):
                        if 0 <= y + dy < height and 0 <= x + dx < width:
                            values.append((first[b, :, y, x] * second[b, :, y + dy, x + dx]).mean())
                        else:
                            values.append(first.new_zeros(()))
            planes.append(torch.stack(values).view(batch, height, width))
    return torch.stack(planes, dim=1)


def _pair(*shape: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    first = torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True)
    second = torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True)
    return first, second


@pytest.mark.parametrize("d", [0, 1, 2])
def test_values_and_gradients_match_the_naive_loop(d: int):
    first, second = _pair(2, 3, 4, 5)
    out = correlation(first, second, d)
    expected = _naive_correlation(first, second, d)
    assert out.shape == (2, (2 * d + 1) ** 2, 4, 5)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)

    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad((out * weights).sum(), (first, second))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (first, second))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


def test_gradcheck():
    first, second = _pair(1, 2, 3, 4, seed=3)
    assert torch.autograd.gradcheck(lambda a, b: correlation(a, b, 2), (first, second))
    assert torch.autograd.gradgradcheck(lambda a, b: correlation(a, b, 1), (first, second))


def test_channel_order_is_dy_outer_dx_inner_as_in_the_cupy_kernel():
    # second(x + (dx, dy)) = first(x): the peak sits at channel (dy + 4)·9 + (dx + 4), for d = 4
    generator = torch.Generator().manual_seed(5)
    first = torch.randn(1, 256, 20, 20, generator=generator, dtype=torch.float64)
    for dy, dx in [(-3, 1), (2, -4), (0, 0), (4, 3)]:
        second = torch.roll(first, shifts=(dy, dx), dims=(2, 3))
        volume = correlation(first, second)
        assert volume.shape == (1, 81, 20, 20)
        channel = (dy + 4) * 9 + (dx + 4)
        torch.testing.assert_close(volume[0, channel, 5:15, 5:15], first[0, :, 5:15, 5:15].square().mean(dim=0))
        assert (volume[0, :, 5:15, 5:15].argmax(dim=0) == channel).all()
    # channel 40 is the zero displacement: the channel mean of the product
    torch.testing.assert_close(correlation(first, second)[:, 40], (first * second).mean(dim=1, keepdim=False))


def test_zero_padding_outside_the_image():
    first, second = torch.ones(1, 2, 3, 3), torch.ones(1, 2, 3, 3)
    volume = correlation(first, second, 1)
    # displacement (dy, dx) = (−1, −1) (channel 0) reads outside in the first row and column
    assert volume[0, 0].tolist() == [[0, 0, 0], [0, 1, 1], [0, 1, 1]]
    assert volume[0, 8].tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_module_equals_function_and_guards():
    first, second = _pair(1, 4, 6, 7)
    module = Correlation(max_displacement=2)
    assert list(module.parameters()) == []
    torch.testing.assert_close(module(first, second), correlation(first, second, 2))
    with pytest.raises(ValueError, match=r"one shape \(B, C, H, W\), got \(1, 4, 6, 7\) and \(1, 4, 6, 6\)"):
        correlation(first, second[..., :6])
    with pytest.raises(ValueError, match="one dtype"):
        correlation(first, second.float())
    with pytest.raises(ValueError, match="max_displacement ≥ 0, got -1"):
        correlation(first, second, -1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    first, second = _pair(2, 32, 28, 28)
    expected = correlation(first, second)
    out = correlation(first.cuda(), second.cuda())
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=1e-12)
