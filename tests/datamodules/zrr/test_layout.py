"""ZRR's layout: listing, 8- and 16-bit raw PNGs, the official packing order, normalisation, and bad input
that names the file."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.common.errors import DatasetError
from datamodules.zrr.layout import (
    ZRRPair,
    find_full_resolution,
    find_pairs,
    normalize_raw,
    pack_raw,
    read_pair,
    read_raw_png,
    unpack_raw,
    write_raw_png,
)
from tests.datamodules.zrr.conftest import random_mosaic, smooth_rgb, write_pair


def _names(path) -> str:
    return re.escape(str(path))


def test_pairs_sorted_numerically_and_hidden_files_ignored(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("10", "2", "0"):
        write_pair(tmp_path, "train", name, random_mosaic(rng, 8), smooth_rgb(8))
    (tmp_path / "train" / "huawei_raw" / ".0.tmp.png").write_bytes(b"partial")
    pairs = find_pairs(tmp_path, "train")
    assert [p.name for p in pairs] == ["0", "2", "10"]
    assert pairs[1].raw_path == tmp_path / "train" / "huawei_raw" / "2.png"
    assert pairs[1].rgb_path == tmp_path / "train" / "canon" / "2.jpg"


@pytest.mark.parametrize("bits", [8, 16])
def test_raw_png_read_as_stored(tmp_path, bits):
    mosaic = random_mosaic(np.random.default_rng(bits), 6, bits)
    path = tmp_path / "raw.png"
    Image.fromarray(mosaic).save(path)
    assert Image.open(path).mode == ("L" if bits == 8 else "I;16")
    read = read_raw_png(path)
    assert read.dtype == np.uint16 and read.shape == (6, 6)
    np.testing.assert_array_equal(read, mosaic.astype(np.uint16))  # 8-bit values are not rescaled


def test_write_raw_png_round_trip_and_eight_bit_when_it_fits(tmp_path):
    bright = np.full((4, 4), 700, np.uint16)
    dark = np.arange(16, dtype=np.uint16).reshape(4, 4) * 10
    write_raw_png(tmp_path / "bright.png", bright)
    write_raw_png(tmp_path / "dark.png", dark)
    assert Image.open(tmp_path / "bright.png").mode == "I;16" and Image.open(tmp_path / "dark.png").mode == "L"
    np.testing.assert_array_equal(read_raw_png(tmp_path / "bright.png"), bright)
    np.testing.assert_array_equal(read_raw_png(tmp_path / "dark.png"), dark)


def test_official_packing_order_on_a_hand_written_mosaic():
    mosaic = torch.arange(16.0).reshape(4, 4)
    # RGGB: R at (0,0), G_R at (0,1), G_B at (1,0), B at (1,1); official order (B, G_R, R, G_B)
    assert pack_raw(mosaic)[:, 0, 0].tolist() == [5.0, 1.0, 0.0, 4.0]
    assert pack_raw(mosaic)[:, 1, 1].tolist() == [15.0, 11.0, 10.0, 14.0]
    assert pack_raw(mosaic, "rggb")[:, 0, 0].tolist() == [0.0, 1.0, 5.0, 4.0]
    expected = torch.stack([mosaic[1::2, 1::2], mosaic[0::2, 1::2], mosaic[0::2, 0::2], mosaic[1::2, 0::2]])
    assert torch.equal(pack_raw(mosaic), expected)
    for order in ("official", "rggb"):
        assert torch.equal(unpack_raw(pack_raw(mosaic, order), order), mosaic)
    with pytest.raises(ValueError, match="packing order"):
        pack_raw(mosaic, "bggr")


def test_normalisation_clamps_at_zero_only():
    raw = np.array([[0, 63], [1020, 1023]], dtype=np.uint16)
    x = normalize_raw(raw)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, torch.tensor([[0.0, 0.0], [1.0, 960 / 957]]))
    assert abs(float(x[1, 1]) - 1.0031) < 1e-4
    torch.testing.assert_close(normalize_raw(np.array([[541]], np.uint16)), torch.tensor([[478 / 957]]))


def test_raw_without_jpg_and_jpg_without_raw_name_the_file(tmp_path):
    rng = np.random.default_rng(1)
    write_pair(tmp_path, "test", "0", random_mosaic(rng, 8), smooth_rgb(8))
    write_pair(tmp_path, "test", "1", random_mosaic(rng, 8), None)
    with pytest.raises(DatasetError, match=_names(tmp_path / "test" / "huawei_raw" / "1.png") + ".*JPG.*missing"):
        find_pairs(tmp_path, "test")
    (tmp_path / "test" / "huawei_raw" / "1.png").unlink()
    Image.fromarray(smooth_rgb(8)).save(tmp_path / "test" / "canon" / "7.jpg")
    with pytest.raises(DatasetError, match=_names(tmp_path / "test" / "canon" / "7.jpg") + ".*raw.*missing"):
        find_pairs(tmp_path, "test")
    with pytest.raises(DatasetError, match=_names(tmp_path / "train" / "huawei_raw") + ".*does not exist"):
        find_pairs(tmp_path, "train")


def _pair(tmp_path, mosaic, rgb) -> ZRRPair:
    write_pair(tmp_path, "train", "0", mosaic, rgb)
    return find_pairs(tmp_path, "train")[0]


def test_standard_size_and_jpg_size_are_checked(tmp_path):
    rng = np.random.default_rng(2)
    pair = _pair(tmp_path, random_mosaic(rng, 446), smooth_rgb(446))
    with pytest.raises(DatasetError, match=_names(pair.raw_path) + ".*446×446.*expected 448×448"):
        read_pair(pair)  # the released set: 448×448
    mosaic, rgb = read_pair(pair, raw_size=None)
    assert mosaic.shape == (446, 446) and rgb.shape == (446, 446, 3)
    Image.fromarray(smooth_rgb(444)).save(pair.rgb_path, quality=95)
    with pytest.raises(DatasetError, match=_names(pair.rgb_path) + ".*444×444.*2× the packed 223×223"):
        read_pair(pair, raw_size=None)


def test_values_above_the_range_name_the_file(tmp_path):
    mosaic = random_mosaic(np.random.default_rng(3), 8)
    mosaic[3, 5] = 1021
    pair = _pair(tmp_path, mosaic, smooth_rgb(8))
    assert read_pair(pair, raw_size=None)[0][3, 5] == 1021  # inside 10 bits: kept, as the official code
    with pytest.raises(DatasetError, match=_names(pair.raw_path) + ".*1021.*0 … 1020"):
        read_pair(pair, raw_size=None, max_value=1020)  # strict: nothing above the white level
    mosaic[3, 5] = 4000  # not a 10-bit raw
    Image.fromarray(mosaic).save(pair.raw_path)
    with pytest.raises(DatasetError, match=_names(pair.raw_path) + ".*4000.*0 … 1023"):
        read_pair(pair, raw_size=None)


def test_unreadable_files_name_the_file(tmp_path):
    rng = np.random.default_rng(4)
    pair = _pair(tmp_path, random_mosaic(rng, 8), smooth_rgb(8))
    good = pair.raw_path.read_bytes()
    pair.raw_path.write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=_names(pair.raw_path) + ": cannot read raw PNG"):
        read_pair(pair, raw_size=None)
    pair.raw_path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DatasetError, match=_names(pair.raw_path)):
        read_pair(pair, raw_size=None)
    Image.fromarray(smooth_rgb(8)).save(pair.raw_path)  # RGB, not a mosaic
    with pytest.raises(DatasetError, match=_names(pair.raw_path) + ".*'RGB' is not a single-channel"):
        read_pair(pair, raw_size=None)
    Image.fromarray(random_mosaic(rng, 8)[:7]).save(pair.raw_path)  # odd height
    with pytest.raises(DatasetError, match=_names(pair.raw_path) + ".*even height and width, got 7×8"):
        read_pair(pair, raw_size=None)
    Image.fromarray(random_mosaic(rng, 8)).save(pair.raw_path)
    pair.rgb_path.write_bytes(b"\xff\xd8 broken jpeg")
    with pytest.raises(DatasetError, match=_names(pair.rgb_path)):
        read_pair(pair, raw_size=None)


def test_full_resolution_raws_have_no_target(tmp_path):
    rng = np.random.default_rng(5)
    with pytest.raises(DatasetError, match=_names(tmp_path / "full_resolution" / "huawei_raw")):
        find_full_resolution(tmp_path)
    write_pair(tmp_path, "full_resolution", "1072", random_mosaic(rng, 12), None)
    (pair,) = find_full_resolution(tmp_path)
    assert pair.name == "1072" and pair.rgb_path is None
    mosaic, rgb = read_pair(pair, raw_size=None)
    assert mosaic.shape == (12, 12) and rgb is None
