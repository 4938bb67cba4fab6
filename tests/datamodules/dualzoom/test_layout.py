"""The dual-zoom on-disk layout: both name conventions, and every kind of bad input named by file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.common.errors import DatasetError
from datamodules.dualzoom.layout import find_pairs, pair_file_names, png_size, read_png, write_png


def _png(path: Path, height: int, width: int, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    write_png(path, rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
    return path


def _nikon(root: Path, split: str = "train") -> None:
    for index, (h, w) in enumerate([(6, 8), (5, 7)]):
        _png(root / f"{split}_LR" / f"DSC_{index:04d}_x1.png", h, w, index)
        _png(root / f"{split}_HR" / f"DSC_{index:04d}_x4.png", 4 * h, 4 * w, 10 + index)


def test_nikon_names_and_filter(tmp_path):
    _nikon(tmp_path)
    _png(tmp_path / "train_LR" / "IMG_0009_x1.png", 6, 8)  # not DSC: ignored, as by the official reader
    _png(tmp_path / "train_LR" / ".DSC_0007_x1.abc.tmp.png", 6, 8)  # an interrupted atomic write: ignored
    (tmp_path / "train_LR" / "DSC_notes.txt").write_text("not an image")
    pairs = find_pairs(tmp_path, "train", "nikon", 4)
    assert [(p.name, p.hr_path.name, p.lr_size) for p in pairs] == [
        ("DSC_0000_x1.png", "DSC_0000_x4.png", (6, 8)),
        ("DSC_0001_x1.png", "DSC_0001_x4.png", (5, 7)),
    ]
    assert pairs[0].lr_path == tmp_path / "train_LR" / "DSC_0000_x1.png"
    assert read_png(pairs[1].hr_path).shape == (20, 28, 3) and png_size(pairs[1].hr_path) == (20, 28)
    assert pair_file_names("nikon", "DSC_0988", 4) == ("DSC_0988_x1.png", "DSC_0988_x4.png")
    assert pair_file_names("nikon", "IMG_5", 4) == ("DSC_IMG_5_x1.png", "DSC_IMG_5_x4.png")  # the reader needs DSC


def test_camerafusion_names(tmp_path):
    _png(tmp_path / "test_LR" / "IMG_17.png", 6, 5)
    _png(tmp_path / "test_HR" / "IMG_17.png", 12, 10)
    _png(tmp_path / "test_LR" / "x1_IMG_2.png", 4, 4)  # any name; the last 'x1' is not replaced
    _png(tmp_path / "test_HR" / "x1_IMG_2.png", 8, 8)
    pairs = find_pairs(tmp_path, "test", "camerafusion", 2)
    assert [(p.name, p.hr_path.name) for p in pairs] == [("IMG_17.png", "IMG_17.png"), ("x1_IMG_2.png", "x1_IMG_2.png")]
    assert pair_file_names("camerafusion", "IMG_17", 2) == ("IMG_17.png", "IMG_17.png")


def _break(root: Path, problem: str) -> Path:
    """Damage a valid Nikon train split as ``problem`` says; return the file or folder the error must name."""
    lr, hr = root / "train_LR" / "DSC_0001_x1.png", root / "train_HR" / "DSC_0001_x4.png"
    if problem == "LR without HR":
        hr.unlink()
        return lr
    if problem == "HR one row short":
        _png(hr, 4 * 5 - 1, 4 * 7)
        return hr
    if problem == "HR one column short":
        _png(hr, 4 * 5, 4 * 7 - 1)
        return hr
    if problem == "unreadable LR":
        lr.write_bytes(b"not a png at all")
        return lr
    if problem == "JPEG named .png":
        from PIL import Image

        Image.new("RGB", (28, 20)).save(hr, format="JPEG")
        return hr
    if problem == "16-bit HR":
        from PIL import Image

        Image.fromarray(np.zeros((20, 28), dtype=np.uint16)).save(hr)
        return hr
    if problem == "empty LR folder":
        for path in (root / "train_LR").iterdir():
            path.unlink()
        return root / "train_LR"
    if problem == "missing LR folder":
        for path in (root / "train_LR").iterdir():
            path.unlink()
        (root / "train_LR").rmdir()
        return root / "train_LR"
    if problem == "missing HR folder":
        for path in (root / "train_HR").iterdir():
            path.unlink()
        (root / "train_HR").rmdir()
        return root / "train_HR"
    assert problem == "Nikon LR without x1"
    lr.rename(root / "train_LR" / "DSC_0001.png")
    return root / "train_LR" / "DSC_0001.png"


@pytest.mark.parametrize(
    "problem",
    ["LR without HR", "HR one row short", "HR one column short", "unreadable LR", "JPEG named .png", "16-bit HR",
     "empty LR folder", "missing LR folder", "missing HR folder", "Nikon LR without x1"],
)
def test_bad_input_names_the_file(tmp_path, problem):
    _nikon(tmp_path)
    named = _break(tmp_path, problem)
    with pytest.raises(DatasetError) as error:
        find_pairs(tmp_path, "train", "nikon", 4)
    assert str(error.value).startswith(f"{named}:")


def test_truncated_png_fails_when_read(tmp_path):
    path = _png(tmp_path / "DSC_0000_x1.png", 64, 64)
    path.write_bytes(path.read_bytes()[:-2000])
    assert png_size(path) == (64, 64)  # the header is intact
    with pytest.raises(DatasetError) as error:
        read_png(path)
    assert str(error.value).startswith(f"{path}: cannot decode PNG")
