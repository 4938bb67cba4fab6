"""A small simulated ZRR-style set shared by the tests of this folder (made once per session), and a writer
of hand-made pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.simulate.zrr import simulate_zrr
from datamodules.simulate.zrr_config import ZRRSimulation
from tests.conftest import single_torch_thread

#: 6 train + 2 test pairs of 128² (64² packed), displacement of 1–3 px.
SMALL = ZRRSimulation(train_images=6, test_images=2, size=128, seed=3)


@pytest.fixture(scope="session")
def zrr_root(tmp_path_factory) -> Path:
    with single_torch_thread():
        return simulate_zrr(tmp_path_factory.mktemp("zrr") / "data", SMALL, progress=False)


def write_pair(root: Path, split: str, name: str, mosaic: np.ndarray, rgb: np.ndarray | None = None) -> None:
    """Write ``<root>/<split>/huawei_raw/<name>.png`` (uint8 → 8-bit PNG, uint16 → 16-bit) and, unless
    ``rgb`` is None, a random-ish or the given JPG of the raw's size (quality 100)."""
    raw_folder, rgb_folder = root / split / "huawei_raw", root / split / "canon"
    raw_folder.mkdir(parents=True, exist_ok=True)
    rgb_folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mosaic).save(raw_folder / f"{name}.png")
    if rgb is not None:
        Image.fromarray(rgb).save(rgb_folder / f"{name}.jpg", quality=100)


def random_mosaic(rng: np.random.Generator, size: int, bits: int = 16) -> np.ndarray:
    """A 10-bit mosaic (63 … 1020) as uint16, or (bits = 8) an 8-bit one (0 … 255) as uint8."""
    if bits == 8:
        return rng.integers(0, 256, size=(size, size), dtype=np.uint8)
    return rng.integers(63, 1021, size=(size, size)).astype(np.uint16)


def smooth_rgb(size: int) -> np.ndarray:
    """A smooth JPG-friendly RGB image (size, size, 3) uint8."""
    y, x = np.mgrid[0:size, 0:size] / size
    return (255 * np.stack([x, y, 0.5 * (x + y)], -1)).round().astype(np.uint8)
