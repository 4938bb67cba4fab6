"""SR-RAW pair samples: an input crop of shot s and the target JPG of shot t resampled on the output grid.

Geometry (see :mod:`datamodules.srraw.pair_geometry`): a crop of p_h × p_w packed pixels at (top, left) maps
to S_h × S_w = 2·zoom·p_h × 2·zoom·p_w output pixels; output pixel (u, v) sits at input Bayer
coordinates (2·left + (u + 0.5)/zoom − 0.5, 2·top + (v + 0.5)/zoom − 0.5). The target is the target
JPG resampled (bicubic) there, via the reference frame, for u, v ∈ [−m, S + m), m = ``target_margin``.

The sample keys (batch keys after the default collate) are listed in :mod:`datamodules.srraw.datamodule`.

Modes: ``"train"`` draws a crop of ``patch_size`` uniformly inside the pair's valid region from a
generator seeded by (seed, epoch, index), given as the key ``(index, epoch)`` (see
:class:`datamodules.common.epoch_sampler.EpochSampler`); ``"eval"`` takes the centred ``eval_crop`` crop of the
valid region (``None``: all of it); ``"predict"`` the whole valid region. Files are decoded lazily, with a
small per-worker cache of the last decoded files.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.common.images import read_jpg
from datamodules.common.raw import read_raw_mosaic
from datamodules.srraw.alignment import ShotAlignment
from datamodules.srraw.pair_geometry import CropRegion, centre_crop, output_grid
from ops.bayer import mosaic_rgb, normalize_levels, pack_bayer
from ops.geometry import map_points, sample_bicubic, scale_map

__all__ = ["InputKind", "SRRAWPair", "SRRAWPairDataset"]

InputKind = Literal["raw", "png", "synthetic_raw"]
_GAMMA = 2.2
T = TypeVar("T")


@dataclass(frozen=True)
class SRRAWPair:
    """A training/evaluation pair: shots, focal ratio, Bayer→target map and valid region."""

    scene: str
    input: ShotAlignment
    target: ShotAlignment
    focal_ratio: float
    bayer_to_target: np.ndarray
    region: CropRegion


def _generator(seed: int, epoch: int, index: int, stream: str) -> torch.Generator:
    """A generator seeded by a hash of (seed, epoch, index, stream): streams "crop" and "noise"."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}/{stream}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


class SRRAWPairDataset(Dataset):
    """Samples of SR-RAW pairs; ``dataset[index]`` or ``dataset[(index, epoch)]`` (keys: :mod:`datamodules.srraw.datamodule`)."""

    def __init__(
        self,
        pairs: list[SRRAWPair],
        mode: Literal["train", "eval", "predict"],
        input_kind: InputKind,
        zoom: int,
        patch_size: int,
        target_margin: int,
        eval_crop: int | None = None,
        crops_per_pair: int = 1,
        seed: int = 0,
        synthetic_noise_max: float = 0.0784,
        decoded_files: int = 4,
    ) -> None:
        self.pairs = pairs
        self.mode = mode
        self.input_kind = input_kind
        self.zoom = zoom
        self.patch_size = patch_size
        self.target_margin = target_margin
        self.eval_crop = eval_crop
        self.crops_per_pair = crops_per_pair
        self.seed = seed
        self.synthetic_noise_max = synthetic_noise_max
        self.decoded_files = decoded_files
        self._decoded: OrderedDict[str, object] = OrderedDict()

    def __len__(self) -> int:
        return len(self.pairs) * (self.crops_per_pair if self.mode == "train" else 1)

    def _pair(self, index: int) -> SRRAWPair:
        return self.pairs[index // self.crops_per_pair if self.mode == "train" else index]

    def _decode(self, path: Path, reader: Callable[[Path], T]) -> T:
        """``reader(path)``, remembered for the last ``decoded_files`` files (each worker has its own copy)."""
        key = str(path)
        if key in self._decoded:
            self._decoded.move_to_end(key)
        else:
            self._decoded[key] = reader(path)
            if len(self._decoded) > self.decoded_files:
                self._decoded.popitem(last=False)
        return self._decoded[key]  # type: ignore[return-value]

    def crop_of(self, index: int, epoch: int = 0) -> CropRegion:
        """The crop of sample ``index`` (at ``epoch`` in training)."""
        pair = self._pair(index)
        if self.mode == "predict":
            return pair.region
        if self.mode == "eval":
            return centre_crop(pair.region, self.eval_crop)
        generator = _generator(self.seed, epoch, index, "crop")
        size, region = self.patch_size, pair.region
        top = region.top + int(torch.randint(region.height - size + 1, (), generator=generator))
        left = region.left + int(torch.randint(region.width - size + 1, (), generator=generator))
        return CropRegion(top, left, size, size)

    def _raw_input(self, shot: ShotAlignment, crop: CropRegion) -> Tensor:
        _, mosaic = self._decode(shot.raw_path, read_raw_mosaic)
        rows = slice(2 * crop.top, 2 * (crop.top + crop.height))
        cols = slice(2 * crop.left, 2 * (crop.left + crop.width))
        packed = pack_bayer(torch.from_numpy(mosaic[rows, cols].astype(np.float32)), shot.pattern)
        black = pack_bayer(torch.tensor(shot.black_levels, dtype=torch.float32).view(2, 2), shot.pattern)
        return normalize_levels(packed, black, shot.white_level)

    def _input_rgb(self, shot: ShotAlignment, crop: CropRegion) -> Tensor:
        rows = torch.arange(2 * crop.top, 2 * (crop.top + crop.height), dtype=torch.float64)
        cols = torch.arange(2 * crop.left, 2 * (crop.left + crop.width), dtype=torch.float64)
        ys, xs = torch.meshgrid(rows, cols, indexing="ij")
        jpg = self._decode(shot.jpg_path, read_jpg)
        return sample_bicubic(jpg, *map_points(scale_map(shot.raw_size, shot.jpg_size), xs, ys))

    def _target(self, pair: SRRAWPair, crop: CropRegion) -> Tensor:
        xs, ys = map_points(pair.bayer_to_target, *output_grid(crop, self.zoom, self.target_margin))
        return sample_bicubic(self._decode(pair.target.jpg_path, read_jpg), xs, ys)

    def _network_input(
        self, pair: SRRAWPair, crop: CropRegion, input_rgb: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        if self.input_kind == "raw":
            return self._raw_input(pair.input, crop)
        assert input_rgb is not None
        gains = torch.tensor(pair.input.white_balance, dtype=torch.float32).view(3, 1, 1)
        without_wb = input_rgb / gains ** (1.0 / _GAMMA)
        if self.input_kind == "png":
            return F.pixel_unshuffle(without_wb[None], 2)[0]
        mosaic = mosaic_rgb(without_wb, "RGGB")
        sigma = float(torch.rand((), generator=generator)) * self.synthetic_noise_max
        noisy = mosaic + sigma * torch.randn(mosaic.shape, generator=generator)
        return pack_bayer(noisy, "RGGB")

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        pair = self._pair(index)
        crop = self.crop_of(index, epoch)
        noise = _generator(self.seed, epoch, index, "noise")
        input_rgb = self._input_rgb(pair.input, crop) if self.input_kind != "raw" or self.mode != "predict" else None
        sample = {
            "input": self._network_input(pair, crop, input_rgb, noise).to(torch.float32),
            "wb_input": torch.tensor(pair.input.white_balance, dtype=torch.float32),
            "scene": pair.scene,
            "input_name": pair.input.name,
            "target_name": pair.target.name,
            "crop": torch.tensor(crop.as_tuple(), dtype=torch.int64),
        }
        if self.mode != "predict":
            sample.update(
                target=self._target(pair, crop),
                input_rgb=input_rgb,
                wb_target=torch.tensor(pair.target.white_balance, dtype=torch.float32),
                focal_ratio=torch.tensor(pair.focal_ratio, dtype=torch.float32),
            )
        return sample
