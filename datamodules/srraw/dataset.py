"""SR-RAW pair samples: an input crop of shot s and the target JPG of shot t resampled on the output grid.

Geometry (see :mod:`datamodules.srraw.pair_geometry`): a crop of p_h × p_w packed pixels at (top, left) maps
to S_h × S_w = 2·zoom·p_h × 2·zoom·p_w output pixels; output pixel (u, v) sits at input Bayer
coordinates (2·left + (u + 0.5)/zoom − 0.5, 2·top + (v + 0.5)/zoom − 0.5). The target is the target
JPG resampled (bicubic) there, via the input's camera map and the reference frame, for u, v ∈ [−m, S + m),
m = ``target_margin``.

The sample keys (batch keys after the default collate) are listed in :mod:`datamodules.srraw.datamodule`.

Modes: ``"train"`` draws a crop of ``patch_size`` uniformly inside the pair's valid region from a
generator seeded by (seed, epoch, index), given as the key ``(index, epoch)`` (see
:class:`datamodules.common.epoch_sampler.EpochSampler`); ``"eval"`` takes the centred ``eval_crop`` crop of the
valid region (``None``: all of it); ``"predict"`` the whole valid region. Pixels come from the pair's decoded
windows (:mod:`datamodules.srraw.decoded`), read as memory maps; a training sample with raw input reads
no JPG but the target's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.srraw.alignment import ShotAlignment
from datamodules.srraw.decoded import DecodedArray, open_decoded
from datamodules.srraw.pair_geometry import CropRegion, centre_crop, output_grid
from ops.bayer import mosaic_rgb, normalize_levels, pack_bayer
from ops.geometry import map_points, sample_bicubic

__all__ = ["InputKind", "WhiteBalanceSource", "SRRAWPair", "SRRAWPairDataset"]

InputKind = Literal["raw", "png", "synthetic_raw"]
WhiteBalanceSource = Literal["camera", "wb.txt"]
_GAMMA = 2.2


@dataclass(frozen=True)
class SRRAWPair:
    """A training/evaluation pair: shots, focal ratio, Bayer→target map, valid region, white-balance gains of
    both shots (from one source), and its decoded windows (``input_jpg`` is cached only where it is read)."""

    scene: str
    input: ShotAlignment
    target: ShotAlignment
    focal_ratio: float
    bayer_to_target: np.ndarray
    region: CropRegion
    wb_input: tuple[float, float, float]
    wb_target: tuple[float, float, float]
    raw: DecodedArray
    target_jpg: DecodedArray
    input_jpg: DecodedArray


def _generator(seed: int, epoch: int, index: int, stream: str) -> torch.Generator:
    """A generator seeded by a hash of (seed, epoch, index, stream): streams "crop" and "noise"."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}/{stream}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


class SRRAWPairDataset(Dataset):
    """Samples of SR-RAW pairs; ``dataset[index]`` or ``dataset[(index, epoch)]`` (keys: :mod:`datamodules.srraw.datamodule`).

    ``wb_source`` names where the pairs' gains came from; it is passed on as the sample key ``wb_source``.
    """

    def __init__(
        self,
        pairs: list[SRRAWPair],
        mode: Literal["train", "eval", "predict"],
        input_kind: InputKind,
        zoom: int,
        patch_size: int,
        target_margin: int,
        wb_source: WhiteBalanceSource,
        eval_crop: int | None = None,
        crops_per_pair: int = 1,
        seed: int = 0,
        synthetic_noise_max: float = 0.0784,
    ) -> None:
        self.pairs = pairs
        self.mode = mode
        self.input_kind = input_kind
        self.zoom = zoom
        self.patch_size = patch_size
        self.target_margin = target_margin
        self.wb_source = wb_source
        self.eval_crop = eval_crop
        self.crops_per_pair = crops_per_pair
        self.seed = seed
        self.synthetic_noise_max = synthetic_noise_max
        self._opened: dict[DecodedArray, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.pairs) * (self.crops_per_pair if self.mode == "train" else 1)

    def _pair(self, index: int) -> SRRAWPair:
        return self.pairs[index // self.crops_per_pair if self.mode == "train" else index]

    def _array(self, array: DecodedArray) -> np.ndarray:
        """The decoded window as a memory map (each worker keeps its own handles)."""
        if array not in self._opened:
            self._opened[array] = open_decoded(array)
        return self._opened[array]

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

    def _raw_input(self, pair: SRRAWPair, crop: CropRegion) -> Tensor:
        window = pair.raw.window
        top, left = crop.top - window.top, crop.left - window.left
        packed = torch.from_numpy(
            np.array(self._array(pair.raw)[:, top : top + crop.height, left : left + crop.width], dtype=np.float32)
        )
        shot = pair.input
        black = pack_bayer(torch.tensor(shot.black_levels, dtype=torch.float32).view(2, 2), shot.pattern)
        return normalize_levels(packed, black, shot.white_level)

    def _sample_jpg(self, array: DecodedArray, bayer_to_jpg: np.ndarray, xs: Tensor, ys: Tensor) -> Tensor:
        jx, jy = map_points(bayer_to_jpg, xs, ys)
        return sample_bicubic(self._array(array), jx - array.window.left, jy - array.window.top)

    def _input_rgb(self, pair: SRRAWPair, crop: CropRegion) -> Tensor:
        """The input shot's camera JPG on the crop's Bayer grid (3, 2p_h, 2p_w)."""
        rows = torch.arange(2 * crop.top, 2 * (crop.top + crop.height), dtype=torch.float64)
        cols = torch.arange(2 * crop.left, 2 * (crop.left + crop.width), dtype=torch.float64)
        ys, xs = torch.meshgrid(rows, cols, indexing="ij")
        return self._sample_jpg(pair.input_jpg, pair.input.bayer_to_jpg, xs, ys)

    def _target(self, pair: SRRAWPair, crop: CropRegion) -> Tensor:
        return self._sample_jpg(pair.target_jpg, pair.bayer_to_target, *output_grid(crop, self.zoom, self.target_margin))

    def _network_input(
        self, pair: SRRAWPair, crop: CropRegion, input_rgb: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        if self.input_kind == "raw":
            return self._raw_input(pair, crop)
        assert input_rgb is not None
        gains = torch.tensor(pair.wb_input, dtype=torch.float32).view(3, 1, 1)
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
        reads_input_jpg = self.input_kind != "raw" or self.mode == "eval"
        input_rgb = self._input_rgb(pair, crop) if reads_input_jpg else None
        sample = {
            "input": self._network_input(pair, crop, input_rgb, noise).to(torch.float32),
            "wb_input": torch.tensor(pair.wb_input, dtype=torch.float32),
            "wb_source": self.wb_source,
            "scene": pair.scene,
            "input_name": pair.input.name,
            "target_name": pair.target.name,
            "crop": torch.tensor(crop.as_tuple(), dtype=torch.int64),
        }
        if self.mode != "predict":
            sample.update(
                target=self._target(pair, crop),
                wb_target=torch.tensor(pair.wb_target, dtype=torch.float32),
                focal_ratio=torch.tensor(pair.focal_ratio, dtype=torch.float32),
            )
        if self.mode == "eval":
            sample["input_rgb"] = input_rgb
        return sample
