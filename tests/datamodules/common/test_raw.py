"""Reading one capture: a tifffile-written DNG and a Pillow-written JPG (helpers reused by the SR-RAW tests)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import ExifTags, Image, TiffImagePlugin

from datamodules.common.capture import find_jpg, read_capture
from datamodules.common.errors import DatasetError
from datamodules.common.images import read_jpg
from datamodules.common.raw import read_raw_mosaic

_CFA_CODES = {"R": 0, "G": 1, "B": 2}


def _rationals(values, denominator: int = 100000) -> list[int]:
    return [n for value in values for n in Fraction(value).limit_denominator(denominator).as_integer_ratio()]


def write_dng(
    path: Path,
    mosaic: np.ndarray,
    pattern: str = "RGGB",
    black: tuple[int, int, int, int] = (512, 512, 512, 512),
    white: int = 16383,
    neutral: tuple[float, float, float] = (0.5, 1.0, 0.625),
    focal: float | None = None,
) -> Path:
    """A minimal Bayer DNG (DNG 1.4, CFA photometric) that rawpy reads back exactly."""
    tags = [
        (50706, "B", 4, (1, 4, 0, 0)),  # DNGVersion
        (33421, "H", 2, (2, 2)),  # CFARepeatPatternDim
        (33422, "B", 4, tuple(_CFA_CODES[c] for c in pattern)),  # CFAPattern
        (50713, "H", 2, (2, 2)),  # BlackLevelRepeatDim
        (50714, "H", 4, black),  # BlackLevel, raster order
        (50717, "H", 1, white),  # WhiteLevel
        (50728, "2I", 3, _rationals(neutral)),  # AsShotNeutral
        (50721, "2i", 9, [n for v in (1, 0, 0, 0, 1, 0, 0, 0, 1) for n in (v, 1)]),  # ColorMatrix1
        (50778, "H", 1, 21),  # CalibrationIlluminant1 = D65
        (50708, "s", 0, "rawzoom test camera"),  # UniqueCameraModel
    ]
    if focal is not None:
        tags.append((37386, "2I", 1, _rationals([focal])))
    tifffile.imwrite(path, mosaic.astype(np.uint16), photometric="cfa", extratags=tags)
    return path


def write_linear_dng(path: Path, height: int = 32, width: int = 32) -> Path:
    """A demosaiced (LinearRaw, 3 samples per pixel) DNG: readable, but not a Bayer mosaic."""
    tags = [(50706, "B", 4, (1, 4, 0, 0)), (50714, "H", 1, 512), (50717, "H", 1, 16383),
            (50728, "2I", 3, _rationals((0.5, 1.0, 0.6))), (50708, "s", 0, "rawzoom test camera")]
    tifffile.imwrite(path, np.full((height, width, 3), 1000, np.uint16), photometric=34892, extratags=tags)
    return path


def write_jpg(path: Path, rgb: np.ndarray, focal: float | None = None, quality: int = 95) -> Path:
    """A camera-like JPG: FocalLength in the Exif sub-IFD as a RATIONAL."""
    exif = Image.Exif()
    if focal is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLength] = TiffImagePlugin.IFDRational(Fraction(focal).limit_denominator(1000))
    Image.fromarray(rgb).save(path, exif=exif, quality=quality)
    return path


def _mosaic(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(520, 16000, size=(height, width)).astype(np.uint16)


def _rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3)).astype(np.uint8)


def test_reads_dng_values_pattern_levels_white_balance_and_focal(tmp_path):
    mosaic = _mosaic(40, 49)  # odd width: trimmed to an even mosaic
    raw = write_dng(tmp_path / "00003.dng", mosaic, "GRBG", black=(500, 510, 520, 530), white=15000,
                    neutral=(0.5, 1.0, 0.8), focal=36.0)
    write_jpg(tmp_path / "00003.jpg", _rgb(40, 49), focal=35.0)

    capture = read_capture(raw)
    assert capture.raw.pattern == "GRBG"
    assert capture.raw.black_levels == (500.0, 510.0, 520.0, 530.0)  # raster order, not colour-index order
    assert capture.raw.white_level == 15000.0
    assert capture.raw.white_balance == pytest.approx((2.0, 1.0, 1.25), rel=1e-5)  # 1/AsShotNeutral, G = 1
    assert capture.raw.size == (40, 48)
    assert capture.raw.focal_length == pytest.approx(36.0)
    assert capture.jpg.size == (40, 49) and capture.jpg.path == tmp_path / "00003.jpg"
    assert capture.focal_length == pytest.approx(35.0)  # the JPG's EXIF wins, as in the official code

    metadata, pixels = read_raw_mosaic(raw)
    assert pixels.dtype == np.uint16 and pixels.shape == (40, 48)
    np.testing.assert_array_equal(pixels, mosaic[:, :48])
    assert metadata == capture.raw


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GBRG"])
def test_pattern_string_follows_raster_order(tmp_path, pattern):
    raw = write_dng(tmp_path / "a.DNG", _mosaic(32, 32), pattern, black=(1, 2, 3, 4), focal=50.0)
    metadata, _ = read_raw_mosaic(raw)
    assert metadata.pattern == pattern
    assert metadata.black_levels == (1.0, 2.0, 3.0, 4.0)


def test_focal_length_falls_back_to_the_raw(tmp_path):
    raw = write_dng(tmp_path / "00001.DNG", _mosaic(32, 32), focal=240.0)
    write_jpg(tmp_path / "00001.JPG", _rgb(32, 32))
    assert read_capture(raw).focal_length == pytest.approx(240.0)


def test_missing_focal_length_names_the_file(tmp_path):
    raw = write_dng(tmp_path / "00001.DNG", _mosaic(32, 32))
    write_jpg(tmp_path / "00001.JPG", _rgb(32, 32))
    with pytest.raises(DatasetError, match="focal length") as error:
        read_capture(raw)
    assert str(raw) in str(error.value)


def test_missing_jpg_names_the_expected_path(tmp_path):
    raw = write_dng(tmp_path / "00002.ARW", _mosaic(32, 32), focal=50.0)
    write_jpg(tmp_path / "00003.JPG", _rgb(32, 32), focal=50.0)  # another shot's JPG does not count
    with pytest.raises(DatasetError, match="missing") as error:
        read_capture(raw)
    assert str(tmp_path / "00002.JPG") in str(error.value)


def test_jpg_extension_is_case_insensitive_and_pixels_are_as_stored(tmp_path):
    raw = write_dng(tmp_path / "00002.DNG", _mosaic(32, 32), focal=50.0)
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :24] = (200, 40, 10)
    write_jpg(tmp_path / "00002.Jpeg", rgb, focal=50.0, quality=100)
    assert find_jpg(raw) == tmp_path / "00002.Jpeg"
    pixels = read_jpg(tmp_path / "00002.Jpeg")
    assert pixels.shape == (32, 48, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels[:, :20].astype(int) - (200, 40, 10)).max() <= 3
    assert pixels[:, 28:].max() <= 3


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_raw_names_the_file_and_rawpy_message(tmp_path, damage):
    raw = write_dng(tmp_path / "00001.DNG", _mosaic(64, 64), focal=50.0)
    data = raw.read_bytes()
    raw.write_bytes({"garbage": b"II*\x00 not a raw file" * 20, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.raises(DatasetError, match="cannot read raw file") as error:
        read_raw_mosaic(raw)
    assert str(raw) in str(error.value)


def test_linear_dng_is_not_bayer(tmp_path):
    path = write_linear_dng(tmp_path / "00001.DNG")
    with pytest.raises(DatasetError, match="not a Bayer mosaic") as error:
        read_raw_mosaic(path)
    assert str(path) in str(error.value)


def test_xtrans_like_cfa_is_not_bayer(tmp_path):
    path = write_dng(tmp_path / "00001.DNG", _mosaic(48, 48), focal=50.0)
    xtrans = "GGRGGB" "GGBGGR" "BRGRBG" "GGBGGR" "GGRGGB" "RBGBRG"
    tags = [(33421, "H", 2, (6, 6)), (33422, "B", 36, tuple(_CFA_CODES[c] for c in xtrans)),
            (50706, "B", 4, (1, 4, 0, 0)), (50714, "H", 1, 512), (50717, "H", 1, 16383),
            (50728, "2I", 3, _rationals((0.5, 1.0, 0.6))), (50708, "s", 0, "rawzoom test camera")]
    tifffile.imwrite(path, _mosaic(48, 48), photometric="cfa", extratags=tags)
    with pytest.raises(DatasetError, match="2×2") as error:
        read_raw_mosaic(path)
    assert str(path) in str(error.value)
