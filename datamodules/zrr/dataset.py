"""Samples of ZRR pairs: packed raw, its bilinear demosaic, the Canon JPG and the GCM coordinate map.

Per pair (reference ``raw_to_srgb.md`` §1.1, §4.1; the batch keys are listed in :mod:`datamodules.zrr.datamodule`):

1. The raw PNG and the JPG are read when the sample is asked for (never preloaded; the official code
   preloads all 46,839 raws, about 19 GB) and checked (:func:`datamodules.zrr.layout.read_pair`).
2. x = max(raw − 63, 0)/957 on the whole H×W mosaic; ``raw_rgb`` = the bilinear RGGB demosaic of x
   (:func:`ops.bayer.demosaic`, which equals ``colour_demosaicing.demosaicing_CFA_Bayer_bilinear`` with its
   mirrored borders), the GCM's input; ``coord`` = the [−1, 1] map τ of the whole image
   (:func:`coordinate_map`, the official ``get_coord(H, W, 1, 1)``: GCM uses coordinates).
3. ``"train"`` mode only: a p×p crop in packed pixels at (top, left), uniformly random (the mosaic,
   demosaic, JPG and τ are cut at (2·top, 2·left), so the CFA phase is kept and τ keeps the crop's
   place in the whole image; p = h gives the whole image, as the official training does), then the
   horizontal flip, vertical flip and H↔W transpose, each with p = 0.5, applied in that order and
   **jointly** to ``raw`` (as a 4-channel image, no channel reordering: the PyNET convention of the
   official code), ``raw_rgb``, ``target`` and ``coord`` (τ is flipped as an image too, so every pixel
   keeps the coordinates of its sensor position). The crop and the three flips are drawn, in this order,
   from a torch generator seeded by (seed, epoch, index) (:func:`sample_generator`).
4. ``"full"`` mode (validation, test, predict): the whole image, not augmented (as the official test).
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.common.errors import DatasetError
from datamodules.zrr.layout import (
    CFA_PATTERN,
    MAX_RAW_VALUE,
    RAW_SIZE,
    PackingOrder,
    ZRRPair,
    normalize_raw,
    pack_raw,
    read_pair,
)
from ops.bayer import demosaic

__all__ = ["SampleMode", "sample_generator", "coordinate_map", "flip_transpose", "ZRRDataset"]

SampleMode = Literal["train", "full"]


def sample_generator(seed: int, epoch: int, index: int, stream: str = "augment") -> torch.Generator:
    """A torch generator seeded by a hash of (seed, epoch, index, stream)."""
    digest = hashlib.blake2b(f"zrr/{seed}/{epoch}/{index}/{stream}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def coordinate_map(height: int, width: int) -> Tensor:
    """τ (2, H, W) float32: channel 0 the horizontal coordinate (varies along W), channel 1 the vertical
    one, each at pixel centres ``linspace(−1 + 1/N, 1 − 1/N, N)`` (±0.997768 at N = 448)."""
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width)
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height)
    return torch.stack([xs.view(1, width).expand(height, width), ys.view(height, 1).expand(height, width)])


def flip_transpose(images: dict[str, Tensor], hflip: bool, vflip: bool, transpose: bool) -> dict[str, Tensor]:
    """Flip along W, then along H, then swap H and W of every image (..., H, W), jointly."""
    out = {}
    for key, image in images.items():
        if hflip:
            image = image.flip(-1)
        if vflip:
            image = image.flip(-2)
        if transpose:
            image = image.transpose(-1, -2)
        out[key] = image.contiguous()
    return out


class ZRRDataset(Dataset):
    """Samples of ZRR pairs; ``dataset[index]`` or ``dataset[(index, epoch)]`` (module docstring).

    Args:
        pairs: The pairs (``rgb_path`` ``None``: a sample without ``target``, e.g. full-resolution raws).
        mode: ``"train"`` (random crop + joint flips/transpose) or ``"full"`` (whole image, as is).
        patch_size: p, side of a training crop in packed pixels (224 = the whole released 448² raw).
        seed: Seed of every random draw (with epoch and index).
        raw_size: Side every raw must have (448 for the released set; ``None``: any even size).
        max_value: Largest raw value accepted (:data:`~datamodules.zrr.layout.MAX_RAW_VALUE`).
        packing: Channel order of ``raw``: ``"official"`` (B, G_R, R, G_B) or ``"rggb"`` (R, G1, B, G2).
    """

    def __init__(
        self,
        pairs: list[ZRRPair],
        mode: SampleMode,
        patch_size: int = RAW_SIZE // 2,
        seed: int = 0,
        raw_size: int | None = RAW_SIZE,
        max_value: int = MAX_RAW_VALUE,
        packing: PackingOrder = "official",
    ) -> None:
        if mode not in ("train", "full"):
            raise ValueError(f"mode must be 'train' or 'full', got {mode!r}")
        if patch_size < 1:
            raise ValueError(f"patch_size must be ≥ 1, got {patch_size}")
        if packing not in ("official", "rggb"):
            raise ValueError(f"packing must be 'official' or 'rggb', got {packing!r}")
        self.pairs = pairs
        self.mode = mode
        self.patch_size = patch_size
        self.seed = seed
        self.raw_size = raw_size
        self.max_value = max_value
        self.packing = packing

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        pair = self.pairs[index]
        mosaic, rgb = read_pair(pair, self.raw_size, self.max_value)
        linear = normalize_raw(mosaic)
        height, width = linear.shape
        images = {
            "mosaic": linear,
            "raw_rgb": demosaic(linear[None, None], CFA_PATTERN)[0],
            "coord": coordinate_map(height, width),
        }
        if rgb is not None:
            images["target"] = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
        crop_h, crop_w, top, left = height // 2, width // 2, 0, 0
        if self.mode == "train":
            generator = sample_generator(self.seed, epoch, index)
            p = self.patch_size
            if p > min(crop_h, crop_w):
                raise DatasetError(
                    f"{pair.raw_path}: packed raw of {crop_h}×{crop_w} is smaller than the training crop of {p}×{p}"
                )
            top = int(torch.randint(crop_h - p + 1, (), generator=generator))
            left = int(torch.randint(crop_w - p + 1, (), generator=generator))
            crop_h = crop_w = p
            images = {k: v[..., 2 * top : 2 * (top + p), 2 * left : 2 * (left + p)] for k, v in images.items()}
        images["raw"] = pack_raw(images.pop("mosaic"), self.packing)
        if self.mode == "train":
            hflip, vflip, transpose = (torch.rand(3, generator=generator) < 0.5).tolist()
            images = flip_transpose(images, hflip, vflip, transpose)
        sample = {key: images[key] for key in ("raw", "raw_rgb", "target", "coord") if key in images}
        sample["name"] = pair.name
        sample["crop"] = torch.tensor((top, left, crop_h, crop_w), dtype=torch.int64)
        return sample
