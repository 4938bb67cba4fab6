import pytest
import torch

from ops.patches import PatchFeatures, extract_patches, extract_patches_at


def _naive_patches(image: torch.Tensor, size: int, dilation: int) -> torch.Tensor:
    """Loop over every pixel and patch offset; TF SAME padding: ((n − 1)·d) // 2 zeros before, the rest after."""
    b, c, h, w = image.shape
    before = (size - 1) * dilation // 2
    out = torch.zeros(b, c, size, size, h, w, dtype=image.dtype)
    for y in range(h):
        for x in range(w):
            for u in range(size):
                for v in range(size):
                    row, col = y + u * dilation - before, x + v * dilation - before
                    if 0 <= row < h and 0 <= col < w:
                        out[:, :, u, v, y, x] = image[:, :, row, col]
    return out.reshape(b, c * size * size, h, w)  # order (channel, patch row, patch column)


@pytest.mark.parametrize(("size", "dilation"), [(1, 1), (2, 1), (3, 1), (4, 2), (5, 1), (10, 1)])
def test_matches_naive_loop(size: int, dilation: int) -> None:
    image = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    out = extract_patches(image, size, dilation)
    assert out.shape == (2, 3 * size * size, 7, 9)
    torch.testing.assert_close(out, _naive_patches(image, size, dilation), rtol=0, atol=0)


@pytest.mark.parametrize(("size", "before"), [(2, 0), (3, 1), (4, 1), (10, 4), (15, 7)])
def test_same_padding_split(size: int, before: int) -> None:
    # a single 1 at (0, 0): the patch centred at (0, 0) sees it at offset (before, before)
    image = torch.zeros(1, 1, 16, 16)
    image[..., 0, 0] = 1.0
    patch = extract_patches(image, size)[0, :, 0, 0].reshape(size, size)
    assert patch[before, before] == 1.0 and patch.sum() == 1.0
    # the last pixel's patch reaches (size − 1 − before) pixels past it: those are zero padding
    image = torch.ones(1, 1, 16, 16)
    patch = extract_patches(image, size)[0, :, -1, -1].reshape(size, size)
    assert patch.sum() == (before + 1) ** 2


def test_gradient_counts_patch_memberships() -> None:
    image = torch.ones(1, 1, 5, 5, requires_grad=True)
    extract_patches(image, 3).sum().backward()
    # an interior pixel is in 9 patches, a corner pixel in 4 (zero padding of 1 on each side)
    assert image.grad[0, 0, 2, 2] == 9 and image.grad[0, 0, 0, 0] == 4


def test_module_equals_function() -> None:
    image = torch.randn(1, 2, 6, 6)
    module = PatchFeatures(size=4, dilation=2)
    assert torch.equal(module(image), extract_patches(image, 4, 2))
    assert "size=4" in repr(module)


@pytest.mark.parametrize(
    ("image", "size", "dilation", "message"),
    [
        (torch.rand(3, 8, 8), 3, 1, r"\(B, C, H, W\)"),
        (torch.ones(1, 3, 8, 8, dtype=torch.uint8), 3, 1, "floating-point"),
        (torch.rand(1, 3, 8, 8), 0, 1, "patch size"),
        (torch.rand(1, 3, 8, 8), 3, 0, "dilation"),
        (torch.rand(1, 3, 8, 8), 2.5, 1, "patch size"),
    ],
)
def test_guards(image: torch.Tensor, size: int, dilation: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        extract_patches(image, size, dilation)
    if image.dim() == 4 and image.is_floating_point():
        with pytest.raises(ValueError, match=message):
            PatchFeatures(size, dilation)


@pytest.mark.parametrize(("size", "dilation"), [(10, 1), (3, 2), (15, 1)])
def test_patches_at_positions_equal_the_full_map_at_those_positions(size, dilation):
    image = torch.rand(2, 3, 11, 13, dtype=torch.float64, requires_grad=True)
    positions = torch.tensor([0, 12, 13 * 10, 13 * 11 - 1, 57, 57, 100])  # corners, a repeat, the middle
    at = extract_patches_at(image, size, positions, dilation)
    full = _naive_patches(image.detach(), size, dilation).flatten(2)[..., positions]
    assert at.shape == (2, 3 * size * size, positions.numel())
    torch.testing.assert_close(at, full, rtol=0, atol=0)
    weights = torch.rand_like(at)
    (grad_at,) = torch.autograd.grad((at * weights).sum(), image)
    (grad_full,) = torch.autograd.grad((extract_patches(image, size, dilation).flatten(2)[..., positions] * weights).sum(), image)
    torch.testing.assert_close(grad_at, grad_full)
