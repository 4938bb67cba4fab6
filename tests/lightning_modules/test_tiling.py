"""Tiled inference: exact for local functions, close to a full pass for the zoom network."""

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.networks import ZoomLearnNet
from lightning_modules.tiling import tile_starts, tiled_forward, tiled_with_halo


def test_tile_starts_cover_the_axis_with_overlap():
    assert tile_starts(10, 16, 4) == [0]
    starts = tile_starts(100, 32, 8)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert all(b - a <= 32 - 8 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize(("height", "width"), [(37, 53), (16, 70), (64, 64)])
def test_local_function_gives_identical_result(height, width):
    def upsample(x):  # exactly local: each output pixel depends on one input pixel
        return F.interpolate(x * 2.0 + 1.0, scale_factor=3, mode="nearest")

    x = torch.rand(2, 4, height, width)
    torch.testing.assert_close(tiled_forward(upsample, x, scale=3, tile=16, overlap=4), upsample(x))


def test_network_tiles_approach_a_full_pass_as_the_overlap_grows():
    """The zoom net is not local (wide receptive field): more overlap, smaller seams."""
    torch.manual_seed(0)
    net = ZoomLearnNet(zoom=2, num_blocks=1, width=8, up_width=8).eval()
    x = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        full = net(x)
        errors = [
            ((tiled_forward(net, x, scale=4, tile=tile, overlap=overlap) - full).abs().mean() / full.abs().mean()).item()
            for tile, overlap in [(24, 4), (32, 16), (48, 24)]
        ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.04


def test_rejects_bad_tiles():
    with pytest.raises(ValueError, match="overlap"):
        tiled_forward(lambda t: t, torch.rand(1, 1, 8, 8), scale=1, tile=4, overlap=4)


@pytest.mark.parametrize(("height", "width", "tile"), [(37, 53, 16), (20, 20, 32), (64, 40, 8)])
def test_tiles_with_a_halo_equal_a_full_pass_for_a_bounded_receptive_field(height, width, tile):
    torch.manual_seed(0)
    convs = torch.nn.Sequential(  # receptive field radius 3 (three 3×3 convolutions), then ×2 upsampling
        *(torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(3)), torch.nn.Upsample(scale_factor=2, mode="nearest")
    )
    x = torch.rand(1, 3, height, width, dtype=torch.float64)
    convs = convs.double()
    with torch.no_grad():
        full = convs(x)
        torch.testing.assert_close(tiled_with_halo(convs, x, scale=2, tile=tile, halo=3), full, rtol=0, atol=1e-12)
        if max(height, width) > tile:  # too small a halo: the seams show
            assert (tiled_with_halo(convs, x, scale=2, tile=tile, halo=1) - full).abs().max() > 1e-6
    with pytest.raises(ValueError, match="halo"):
        tiled_with_halo(convs, x, scale=2, tile=8, halo=-1)
