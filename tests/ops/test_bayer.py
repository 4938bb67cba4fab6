import pytest
import torch

from ops.bayer import (
    BAYER_PATTERNS,
    Demosaic,
    PackBayer,
    apply_white_balance,
    demosaic,
    gamma_compress,
    gamma_expand,
    mosaic_rgb,
    normalize_levels,
    pack_bayer,
    packed_to_rgb_preview,
    unpack_bayer,
)


def _expected_tile_positions(pattern: str) -> list[tuple[int, int]]:
    """(row, col) of R, G1 (the green in R's row), B, G2 (the green in B's row) in the 2×2 tile.

    The pattern string lists the tile in raster order: top-left, top-right, bottom-left, bottom-right.
    """
    tile = {(0, 0): pattern[0], (0, 1): pattern[1], (1, 0): pattern[2], (1, 1): pattern[3]}
    red = next(pos for pos, colour in tile.items() if colour == "R")
    blue = next(pos for pos, colour in tile.items() if colour == "B")
    green_red_row = next(pos for pos, colour in tile.items() if colour == "G" and pos[0] == red[0])
    green_blue_row = next(pos for pos, colour in tile.items() if colour == "G" and pos[0] == blue[0])
    return [red, green_red_row, blue, green_blue_row]


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_pack_channel_order_is_r_g1_b_g2(pattern: str) -> None:
    # every pixel stores 10·(row in tile) + (col in tile) + 100·(tile index): packing must pick by position
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(6), indexing="ij")
    mosaic = (10 * (rows % 2) + (cols % 2) + 100 * ((rows // 2) * 3 + cols // 2)).float()
    packed = pack_bayer(mosaic, pattern)
    assert packed.shape == (4, 2, 3)
    for channel, (r, c) in enumerate(_expected_tile_positions(pattern)):
        torch.testing.assert_close(packed[channel], mosaic[r::2, c::2], rtol=0, atol=0)
        assert packed[channel, 0, 0] == 10 * r + c


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_pack_unpack_round_trip(pattern: str) -> None:
    mosaic = torch.rand(2, 3, 8, 10)
    torch.testing.assert_close(unpack_bayer(pack_bayer(mosaic, pattern), pattern), mosaic, rtol=0, atol=0)
    packed = torch.rand(2, 4, 3, 5)
    torch.testing.assert_close(pack_bayer(unpack_bayer(packed, pattern), pattern), packed, rtol=0, atol=0)
    assert torch.equal(PackBayer(pattern)(mosaic), pack_bayer(mosaic, pattern))


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_mosaic_of_constant_colour_demosaics_back(pattern: str) -> None:
    colour = torch.tensor([0.2, 0.5, 0.8])
    rgb = colour.view(1, 3, 1, 1).expand(2, 3, 8, 10).clone()
    mosaic = mosaic_rgb(rgb, pattern)
    assert mosaic.shape == (2, 8, 10)
    packed = pack_bayer(mosaic, pattern)
    torch.testing.assert_close(packed[:, :, 0, 0], colour[[0, 1, 2, 1]].expand(2, 4))  # R, G1, B, G2
    out = demosaic(mosaic[:, None], pattern)
    torch.testing.assert_close(out, rgb, rtol=0, atol=1e-6)
    assert torch.equal(Demosaic(pattern)(mosaic[:, None]), out)


def test_white_balance_in_gamma_domain_round_trip() -> None:
    image = torch.rand(2, 3, 4, 5) + 0.1
    gains = torch.tensor([[2.0, 1.0, 1.5], [1.2, 1.0, 3.0]])
    balanced = apply_white_balance(image, gains, exponent=1 / 2.2)
    torch.testing.assert_close(balanced[1, 2], image[1, 2] * 3.0 ** (1 / 2.2))
    torch.testing.assert_close(balanced[:, 1], image[:, 1])  # green gain 1
    torch.testing.assert_close(apply_white_balance(balanced, gains, exponent=-1 / 2.2), image)
    # in the gamma domain it equals linear-domain gains: (x^2.2 · g)^(1/2.2) = x · g^(1/2.2)
    linear = apply_white_balance(gamma_expand(image), gains)
    torch.testing.assert_close(gamma_compress(linear), balanced)


def test_white_balance_per_channel_shared_gains_and_guard() -> None:
    packed = torch.ones(1, 4, 2, 2)
    out = apply_white_balance(packed, torch.tensor([2.0, 1.0, 3.0, 1.0]))
    assert out[0, :, 0, 0].tolist() == [2.0, 1.0, 3.0, 1.0]
    with pytest.raises(ValueError, match="expected 4 gains"):
        apply_white_balance(packed, torch.tensor([2.0, 1.0, 3.0]))


def test_gamma_round_trip_and_clamp() -> None:
    x = torch.tensor([0.0, 0.25, 1.0, -0.5])
    torch.testing.assert_close(gamma_expand(gamma_compress(x)), torch.tensor([0.0, 0.25, 1.0, 0.0]))
    assert gamma_compress(torch.tensor([0.5])).item() == pytest.approx(0.5 ** (1 / 2.2))


def test_normalize_levels() -> None:
    raw = torch.tensor([512.0, 1000.0, 16383.0, 20000.0, 0.0])
    out = normalize_levels(raw, black=512, white=16383)
    torch.testing.assert_close(out, (raw - 512) / (16383 - 512))
    assert out[0] == 0 and out[2] == 1 and out[3] > 1 and out[4] < 0  # no clipping by default
    clipped = normalize_levels(raw, black=512, white=16383, clip=True)
    assert clipped.min() == 0 and clipped.max() == 1
    packed = torch.full((4, 1, 1), 600.0)
    black = torch.tensor([500.0, 400.0, 500.0, 400.0]).view(4, 1, 1)
    expected = torch.tensor([100 / 600, 200 / 700, 100 / 600, 200 / 700])
    torch.testing.assert_close(normalize_levels(packed, black, 1100.0).flatten(), expected)
    with pytest.raises(ValueError, match="white level must exceed black level"):
        normalize_levels(raw, black=1000, white=1000)


def test_packed_preview_shape_and_range() -> None:
    packed = torch.rand(2, 4, 5, 6) * 2.0
    preview = packed_to_rgb_preview(packed, gains=torch.tensor([[2.0, 1.0, 1.5]] * 2))
    assert preview.shape == (2, 3, 10, 12)
    assert preview.min() >= 0 and preview.max() <= 1


def test_guards() -> None:
    with pytest.raises(ValueError, match="unsupported Bayer pattern"):
        pack_bayer(torch.rand(4, 4), "RGBG")
    with pytest.raises(ValueError, match="even height and width"):
        pack_bayer(torch.rand(4, 5))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, H, W\)"):
        unpack_bayer(torch.rand(3, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        demosaic(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="RGB image"):
        mosaic_rgb(torch.rand(4, 4, 4))
    assert pack_bayer(torch.rand(4, 4), "rggb").shape == (4, 2, 2)  # case-insensitive
