"""The decoded pixels an SR-RAW pair needs, cached as ``.npy`` files that samples read as memory maps.

Decoding a 24-megapixel ARW takes about half a second and a JPG a third, while a training sample is a
64×64 crop: so each file is decoded once, and only the part a pair uses is kept (:class:`Window`, in the
file's own pixel grid):

* ``raw``: the packed raw (4, h, w) uint16 — R, G1, B, G2 (:func:`ops.bayer.pack_bayer`) — of the input
  shot's valid region;
* ``target``: the window (h, w, 3) uint8 of the target JPG that the region's target samples reach (margin
  and the 4×4 bicubic kernel included);
* ``input``: the window of the input shot's own JPG under the region (for the bicubic baseline, image
  panels and the JPG-based inputs), written only where it is used.

File names hold the source file's size and modification time and the window, so a changed file is
decoded anew and never read stale; files are written atomically. They live in ``rawzoom_decoded/`` next to
the scene's alignment cache.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from datamodules.common.atomic import atomic_path
from datamodules.common.errors import DatasetError
from datamodules.common.images import read_jpg
from datamodules.common.raw import read_raw_mosaic
from datamodules.srraw.camera_geometry import check_raw_and_jpg
from datamodules.srraw.pair_geometry import CropRegion, output_grid
from ops.bayer import pack_bayer
from ops.geometry import map_points

__all__ = ["DECODED_FOLDER", "Window", "DecodedArray", "target_window", "input_window", "write_decoded", "open_decoded"]

DECODED_FOLDER = "rawzoom_decoded"
_BICUBIC_REACH = 3  # the 4×4 kernel reads 1 pixel before and 2 after the sample's floor


@dataclass(frozen=True)
class Window:
    """A rectangle (top, left, height, width) of a file's pixel grid."""

    top: int
    left: int
    height: int
    width: int

    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


@dataclass(frozen=True)
class DecodedArray:
    """One cached array: what it holds (``kind``: "raw", "target" or "input"), its source and window.

    A raw array also names the shot's own JPG and the camera's raw → JPG map: when the raw is decoded, the
    JPG is checked to show its picture (:func:`~datamodules.srraw.camera_geometry.check_raw_and_jpg`).
    """

    kind: str
    source: Path
    window: Window
    folder: Path
    raw_jpg: Path | None = None
    raw_to_jpg: tuple[tuple[float, float, float], ...] | None = None

    @property
    def path(self) -> Path:
        stat = self.source.stat()
        w = self.window
        return self.folder / (
            f"{self.source.stem}.{self.kind}.{stat.st_size}-{stat.st_mtime_ns}.{w.top}_{w.left}_{w.height}_{w.width}.npy"
        )


def target_window(bayer_to_target: np.ndarray, region: CropRegion, zoom: int, margin: int, jpg_size: tuple[int, int]) -> Window:
    """The window of the target JPG (size (H, W)) that the samples of ``region``'s output grid (with ``margin``) reach."""
    xs, ys = output_grid(region, zoom, margin)
    corners = [0, 0, -1, -1], [0, -1, 0, -1]
    return _window(bayer_to_target, xs[corners], ys[corners], jpg_size)


def input_window(bayer_to_jpg: np.ndarray, region: CropRegion, jpg_size: tuple[int, int]) -> Window:
    """The window of the input shot's JPG (size (H, W)) that the Bayer pixels of ``region`` reach."""
    right, bottom = 2 * (region.left + region.width) - 1, 2 * (region.top + region.height) - 1
    xs = torch.tensor([2 * region.left, right, 2 * region.left, right], dtype=torch.float64)
    ys = torch.tensor([2 * region.top, 2 * region.top, bottom, bottom], dtype=torch.float64)
    return _window(bayer_to_jpg, xs, ys, jpg_size)


def _window(to_jpg: np.ndarray, xs: torch.Tensor, ys: torch.Tensor, jpg_size: tuple[int, int]) -> Window:
    """The JPG window holding the bicubic samples at the images of the corner points (xs, ys) (4,)."""
    xs, ys = map_points(to_jpg, xs, ys)
    top = max(0, math.floor(float(ys.min())) - _BICUBIC_REACH)
    left = max(0, math.floor(float(xs.min())) - _BICUBIC_REACH)
    bottom = min(jpg_size[0], math.floor(float(ys.max())) + _BICUBIC_REACH + 1)
    right = min(jpg_size[1], math.floor(float(xs.max())) + _BICUBIC_REACH + 1)
    return Window(top, left, max(1, bottom - top), max(1, right - left))


def _decode_source(wanted: list[DecodedArray]) -> None:
    """Decode one source file and write each of its wanted windows (a raw is packed window by window)."""
    source, first = wanted[0].source, wanted[0]
    if first.kind == "raw":
        metadata, mosaic = read_raw_mosaic(source)
        if first.raw_jpg is not None:
            check_raw_and_jpg(metadata, mosaic, first.raw_jpg, np.array(first.raw_to_jpg))
    else:
        pixels = read_jpg(source)
    for array in wanted:
        rows, cols = array.window.slices()
        if first.kind == "raw":  # the window's Bayer pixels (even offsets keep the CFA pattern), packed
            part = mosaic[2 * rows.start : 2 * rows.stop, 2 * cols.start : 2 * cols.stop]
            shape, full = (part.shape[0] // 2, part.shape[1] // 2), (4, mosaic.shape[0] // 2, mosaic.shape[1] // 2)
        else:
            part = pixels[rows, cols]
            shape, full = part.shape[:2], pixels.shape
        if tuple(shape) != (array.window.height, array.window.width):
            raise DatasetError(f"{source}: the window {array.window} lies outside the decoded image of {full}")
        if first.kind == "raw":
            part = pack_bayer(torch.from_numpy(part.astype(np.int32)), metadata.pattern).numpy().astype(np.uint16)
        array.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(array.path) as tmp:
            np.save(tmp, np.ascontiguousarray(part))


def write_decoded(arrays: list[DecodedArray], workers: int = 1, progress: bool = True) -> int:
    """Decode and write every array of ``arrays`` that is not cached yet, each source file decoded once
    (``workers`` processes at a time); returns how many arrays were written."""
    todo = [array for array in arrays if not array.path.is_file()]
    by_source: dict[tuple[Path, str], list[DecodedArray]] = {}
    for array in todo:
        by_source.setdefault((array.source, array.kind == "raw"), []).append(array)
    jobs = list(by_source.values())
    with tqdm(total=len(jobs), desc="decoding SR-RAW files", unit="file", disable=not progress or not jobs) as bar:
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for _ in pool.map(_decode_source, jobs):
                    bar.update()
        else:
            for job in jobs:
                _decode_source(job)
                bar.update()
    return len(todo)


def open_decoded(array: DecodedArray) -> np.ndarray:
    """The cached array as a read-only memory map; a missing file is an error that says how to create it."""
    path = array.path
    if not path.is_file():
        raise DatasetError(
            f"{path}: the decoded {array.kind} window of {array.source.name} is not cached; run the DataModule's "
            "prepare_data() (or python -m datamodules.srraw.prepare) first"
        )
    return np.load(path, mmap_mode="r")
