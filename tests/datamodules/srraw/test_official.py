"""SR-RAW's official tform.txt / wb.txt: parsing and conversion to our ref_to_shot convention."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from datamodules.common.errors import DatasetError
from datamodules.srraw.official import fov_crop_to_shot, read_tform_file, read_wb_file, tform_to_ref_to_shot


def _official_fov_crop(image: np.ndarray, ratio: float) -> np.ndarray:
    """``main_crop.py``'s FOV matching restated: centre crop with ceil/floor, PIL Lanczos resize by ratio."""
    height, width = image.shape
    top, bottom = math.ceil((height - height / ratio) / 2), math.floor((height + height / ratio) / 2)
    left, right = math.ceil((width - width / ratio) / 2), math.floor((width + width / ratio) / 2)
    crop = Image.fromarray(image[top:bottom, left:right].astype(np.float32), mode="F")
    return np.asarray(crop.resize((int(crop.width * ratio), int(crop.height * ratio)), Image.LANCZOS))


@pytest.mark.parametrize("ratio", [1.6, 2.4, 3.43])
@pytest.mark.parametrize("rotated", [False, True])
def test_conversion_follows_the_official_crop_and_rotation(ratio, rotated):
    """Ramps x and y through main_crop.py's pipeline: each cropped pixel must show the coordinate we map it to."""
    height, width = 120, 160
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    turn = (lambda a: a[::-1, ::-1]) if rotated else (lambda a: a)
    cropped_x, cropped_y = _official_fov_crop(turn(xs), ratio), _official_fov_crop(turn(ys), ratio)
    # tform = identity: cropped/00001 (the reference) and cropped/<k> coincide pixel for pixel.
    ref_to_shot = tform_to_ref_to_shot(np.eye(3), cropped_x.shape, (height, width), ratio, rotated)
    ref_y, ref_x = np.mgrid[8 : cropped_x.shape[0] - 8, 8 : cropped_x.shape[1] - 8]  # away from Lanczos' border
    crop_y = cropped_x.shape[0] - 1 - ref_y if rotated else ref_y
    crop_x = cropped_x.shape[1] - 1 - ref_x if rotated else ref_x
    mapped = ref_to_shot @ np.stack((ref_x.ravel(), ref_y.ravel(), np.ones(ref_x.size)))
    assert np.abs(mapped[0] - cropped_x[crop_y, crop_x].ravel()).max() < 0.02
    assert np.abs(mapped[1] - cropped_y[crop_y, crop_x].ravel()).max() < 0.02


def test_fov_crop_of_ratio_one_is_the_identity():
    np.testing.assert_allclose(fov_crop_to_shot((384, 512), 1.0), np.eye(3))


def _write_tform(path, matrices: dict[int, np.ndarray]) -> None:
    lines = []
    for index, matrix in matrices.items():
        lines.append(f"00001-{index:05d}:")
        lines += [" ".join(f"{value:.4f}" for value in row) for row in matrix[:2]]
    lines += ["corner:", "00012 00370 00015 00500"]
    path.write_text("\n".join(lines) + "\n")


def test_reads_tform_file(tmp_path):
    a = np.array([[1.0123, -0.0051, 3.25], [0.0051, 1.0123, -7.5], [0, 0, 1]])
    _write_tform(tmp_path / "tform.txt", {1: np.eye(3), 3: a})
    matrices = read_tform_file(tmp_path / "tform.txt")
    assert sorted(matrices) == [1, 3]
    np.testing.assert_allclose(matrices[3], a, atol=5e-5)
    np.testing.assert_allclose(matrices[1], np.eye(3))


@pytest.mark.parametrize(
    "text, problem",
    [("00001-00002:\n1 0 0\n", "two lines of three numbers"), ("00001-00002:\n1 0 x\n0 1 0\n", "not a list of numbers"),
     ("hello\n", "header")],
)
def test_malformed_tform_names_the_file(tmp_path, text, problem):
    path = tmp_path / "tform.txt"
    path.write_text(text)
    with pytest.raises(DatasetError, match=problem) as error:
        read_tform_file(path)
    assert str(path) in str(error.value)


def test_reads_wb_file_in_both_layouts(tmp_path):
    path = tmp_path / "wb.txt"
    path.write_text(
        "WB\n"
        "/data/SR-RAW/train/00134/00001:\n2.0 1.0 1.0 1.5\n"  # main_wb.py: key line, then the numbers
        "00002: 2.2 1.1 1.1 1.65\n"  # key and numbers on one line
        ":\n9 9 9 9\n"  # a key lost to main_wb.py's split('.') bug: ignored
    )
    gains = read_wb_file(path)
    assert set(gains) == {"00001", "00002"}
    assert gains["00001"] == pytest.approx((2.0, 1.0, 1.5))
    assert gains["00002"] == pytest.approx((2.0, 1.0, 1.5))  # normalised to G = 1 (indices 0, 1, 3)


def test_malformed_wb_names_the_file(tmp_path):
    path = tmp_path / "wb.txt"
    path.write_text("WB\n00001:\n2.0 1.0 1.5\n")
    with pytest.raises(DatasetError, match="four positive gains") as error:
        read_wb_file(path)
    assert str(path) in str(error.value)
