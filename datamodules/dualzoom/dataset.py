"""Samples of dual-zoom pairs (LR = short-focus crop, HR = aligned telephoto, HR = s × LR).

Modes (reference selfdzsr.md §4.2–4.3; the batch keys are listed in :mod:`datamodules.dualzoom.datamodule`):

* ``"train"``: ``dataset[(index, epoch)]`` (keys from :class:`~datamodules.common.epoch_sampler.EpochSampler`)
  reads pair ``index mod N``; a generator seeded by (seed, epoch, index) draws, in this order, an
  aligned crop (LR p×p at (top, left), HR (s·p)² at (s·top, s·left)), the joint horizontal flip,
  vertical flip and transpose (each p = 0.5, applied in that order to LR and HR), and the Ref box: a
  q×q LR window, q = p // s, at a uniformly random position inside the patch. The degradation residual
  n (:mod:`datamodules.dualzoom.degradation`) has its own generator stream.
* ``"centre"`` (validation): the centred ``eval_crop``² LR crop of the pair (clipped to the image) and
  its HR; the Ref box is the central box B of that crop.
* ``"full"`` (test, predict): the whole LR and HR; the Ref box is the central box B of the whole LR.

Central box B of an h×w LR: rows [t, t + ⌊h/s⌋), t = (h − ⌊h/s⌋)//2, columns likewise: the window whose
HR the official test pastes as Ref and which the official "centre" metrics score (reference §4.3, §5.3).
So at validation and test the Ref is part of the ground truth, as in the official protocol.

PNGs are read when a sample needs them; with ``cached`` each worker keeps the last
:data:`CACHED_FILES` decoded files (never the whole set).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.dualzoom.degradation import degradation_residual
from datamodules.dualzoom.layout import DualZoomPair, read_png
from ops.geometry import central_box

__all__ = ["SampleMode", "CACHED_FILES", "sample_generator", "DualZoomDataset"]

SampleMode = Literal["train", "centre", "full"]
#: Decoded PNGs each worker keeps (least recently used out first): two pairs.
CACHED_FILES = 4


def sample_generator(seed: int, epoch: int, index: int, stream: str) -> torch.Generator:
    """A torch generator seeded by a hash of (seed, epoch, index, stream)."""
    digest = hashlib.blake2b(f"dualzoom/{seed}/{epoch}/{index}/{stream}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def _to_tensor(image: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


class DualZoomDataset(Dataset):
    """Samples of dual-zoom pairs; ``dataset[index]`` or ``dataset[(index, epoch)]``.

    Args:
        pairs: The pairs (every LR at least ``patch_size`` in both dimensions in ``"train"`` mode).
        mode: ``"train"``, ``"centre"`` or ``"full"`` (module docstring).
        scale: s, HR = s × LR.
        patch_size: p, side of a training LR patch, a multiple of s.
        epoch_length: Samples per training epoch (the official 1000 iterations × 16).
        eval_crop: Side of the ``"centre"`` LR crop; ``None`` takes the whole image.
        seed: Seed of every random draw (with epoch and index).
        cached: Keep the last :data:`CACHED_FILES` decoded PNGs per worker.
    """

    def __init__(
        self,
        pairs: list[DualZoomPair],
        mode: SampleMode,
        scale: int,
        patch_size: int = 48,
        epoch_length: int = 16000,
        eval_crop: int | None = 256,
        seed: int = 0,
        cached: bool = True,
    ) -> None:
        if mode not in ("train", "centre", "full"):
            raise ValueError(f"mode must be 'train', 'centre' or 'full', got {mode!r}")
        if patch_size < scale or patch_size % scale:
            raise ValueError(f"patch_size must be a positive multiple of the scale {scale}, got {patch_size}")
        self.pairs = pairs
        self.mode = mode
        self.scale = scale
        self.patch_size = patch_size
        self.epoch_length = epoch_length
        self.eval_crop = eval_crop
        self.seed = seed
        self.cached = cached
        self._decoded: OrderedDict[str, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        if self.mode == "train":
            return self.epoch_length if self.pairs else 0
        return len(self.pairs)

    def _read(self, path) -> np.ndarray:
        if not self.cached:
            return read_png(path)
        key = str(path)
        if key in self._decoded:
            self._decoded.move_to_end(key)
        else:
            self._decoded[key] = read_png(path)
            if len(self._decoded) > CACHED_FILES:
                self._decoded.popitem(last=False)
        return self._decoded[key]

    def _images(self, pair: DualZoomPair) -> tuple[np.ndarray, np.ndarray]:
        return self._read(pair.lr_path), self._read(pair.hr_path)

    def _ref_sample(self, lr: Tensor, hr: Tensor, box: tuple[int, int, int, int], name: str) -> dict:
        """The keys shared by all modes, for a Ref box (top, left, height, width) in LR pixels."""
        top, left, height, width = box
        s = self.scale
        return {
            "lr": lr,
            "hr": hr,
            "ref": hr[:, s * top : s * (top + height), s * left : s * (left + width)],
            "ref_box": torch.tensor(box, dtype=torch.int64),
            "lr_box": lr[:, top : top + height, left : left + width],
            "name": name,
        }

    def _train_sample(self, index: int, epoch: int) -> dict:
        pair = self.pairs[index % len(self.pairs)]
        lr_image, hr_image = self._images(pair)
        p, s = self.patch_size, self.scale
        generator = sample_generator(self.seed, epoch, index, "crop")
        height, width = lr_image.shape[:2]
        top = int(torch.randint(height - p + 1, (), generator=generator))
        left = int(torch.randint(width - p + 1, (), generator=generator))
        lr = _to_tensor(lr_image[top : top + p, left : left + p])
        hr = _to_tensor(hr_image[s * top : s * (top + p), s * left : s * (left + p)])
        hflip, vflip, transpose = (torch.rand(3, generator=generator) < 0.5).tolist()
        if hflip:
            lr, hr = lr.flip(-1), hr.flip(-1)
        if vflip:
            lr, hr = lr.flip(-2), hr.flip(-2)
        if transpose:
            lr, hr = lr.transpose(-1, -2), hr.transpose(-1, -2)
        lr, hr = lr.contiguous(), hr.contiguous()
        q = p // s
        ref_top = int(torch.randint(p - q + 1, (), generator=generator))
        ref_left = int(torch.randint(p - q + 1, (), generator=generator))
        sample = self._ref_sample(lr, hr, (ref_top, ref_left, q, q), pair.name)
        sample["degradation"] = degradation_residual(hr, s, sample_generator(self.seed, epoch, index, "degradation"))
        return sample

    def _eval_sample(self, index: int) -> dict:
        pair = self.pairs[index]
        lr_image, hr_image = self._images(pair)
        height, width = lr_image.shape[:2]
        if self.mode == "centre" and self.eval_crop is not None:
            crop_h, crop_w = min(self.eval_crop, height), min(self.eval_crop, width)
            top, left = (height - crop_h) // 2, (width - crop_w) // 2
        else:
            crop_h, crop_w, top, left = height, width, 0, 0
        s = self.scale
        lr = _to_tensor(lr_image[top : top + crop_h, left : left + crop_w])
        hr = _to_tensor(hr_image[s * top : s * (top + crop_h), s * left : s * (left + crop_w)])
        return self._ref_sample(lr, hr, central_box(crop_h, crop_w, s), pair.name)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        return self._train_sample(index, epoch) if self.mode == "train" else self._eval_sample(index)
