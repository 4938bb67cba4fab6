"""Zurich RAW-to-RGB (ZRR) for RAW-to-sRGB (Zhang et al., ICCV 2021) as a LightningDataModule.

Pipeline: ``prepare_data`` (optionally simulates the data, :mod:`datamodules.simulate.zrr`) → ``setup``
(lists the pairs, :mod:`datamodules.zrr.layout`; holds out the validation images) → datasets of
:class:`datamodules.zrr.dataset.ZRRDataset` (reading, crop and flip rules in its docstring). Constructing
the module does no I/O, and the data is read lazily: one raw PNG and one JPG per sample (the official
code preloads every raw, about 19 GB).

Batch keys, per sample (the default collate stacks them; h × w is the packed size: p × p in training,
the whole H/2 × W/2 = 224 × 224 of a released pair otherwise):

* ``raw`` float32 (4, h, w): the packed raw, channels in the official order (B, G_R, R, G_B) =
  mosaic (1::2, 1::2), (0::2, 1::2), (0::2, 0::2), (1::2, 0::2) (``packing="rggb"``: R, G1, B, G2), values
  max(x − 63, 0)/957, **not** clipped at 1;
* ``raw_rgb`` float32 (3, 2h, 2w): the bilinear RGGB demosaic of the normalised mosaic (linear, the GCM's
  input; demosaicked on the whole image, then cut like the rest);
* ``target`` float32 (3, 2h, 2w): the Canon JPG in [0, 1] (absent for ``predict_split="full_resolution"``);
* ``coord`` float32 (2, 2h, 2w): the GCM coordinate map τ in [−1, 1] of the crop's place in the whole
  image (channel 0 horizontal, channel 1 vertical; the official code uses it, ``--gcm_coord True``), flipped
  and transposed together with the images, so each pixel keeps its sensor coordinates;
* ``name`` str: the file stem (``"1072"``);
* ``crop`` int64 (4,) = (top, left, height, width) of the sample in packed pixels of the stored image
  (before flips).

``zoom``: the scale of the output over the raw *mosaic*: the target is 2·zoom × the packed raw, so the
raw-to-RGB task of ZRR is ``zoom = 1`` (a 224² packed raw → a 448² sRGB image, the raw's full size), the
same convention as :class:`~datamodules.srraw.datamodule.SRRAWDataModule`. ``patch_size`` is the packed
crop side p (224: the whole released raw, as the official training).

Splits: ``train`` = ZRR's train minus the held-out images; ``val`` (``val_split="train_holdout"``, the
default) = a ``val_fraction`` of the train images chosen by ``seed`` (so model selection never sees the
test set; reference §6.6), or ZRR's test set (``val_split="test"``: the official protocol, where val =
test); ``test`` = ZRR's test; ``predict`` = test, or ``full_resolution/huawei_raw`` (raw only).
Validation, test and predict samples are whole images, not augmented, and by default batched one at a
time (official).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch

from datamodules.base import ZoomDataModule
from datamodules.common.errors import DatasetError
from datamodules.common.simulation_manifest import check_simulation_manifest
from datamodules.simulate.zrr import DATASET, FORMAT_VERSION, simulate_zrr
from datamodules.simulate.zrr_config import ZRRSimulation
from datamodules.zrr.dataset import ZRRDataset
from datamodules.zrr.layout import (
    MAX_RAW_VALUE,
    RAW_SIZE,
    PackingOrder,
    ZRRPair,
    find_full_resolution,
    find_pairs,
)

__all__ = ["ZRRDataModule", "holdout_indices"]

log = logging.getLogger(__name__)

ValSplit = Literal["train_holdout", "test"]
PredictSplit = Literal["test", "full_resolution"]


def holdout_indices(count: int, fraction: float, seed: int) -> list[int]:
    """The sorted indices of the max(1, round(fraction·count)) train images held out for validation,
    a random subset drawn by a torch generator seeded by ``seed`` (independent of the epoch)."""
    if count < 2:
        raise ValueError(f"holding out validation images needs ≥ 2 train images, got {count}")
    held = min(count - 1, max(1, round(fraction * count)))
    generator = torch.Generator().manual_seed(int(seed) + 0x5A4D)
    return sorted(torch.randperm(count, generator=generator)[:held].tolist())


class ZRRDataModule(ZoomDataModule):
    """ZRR phone-raw / DSLR-sRGB pairs (module docstring: batch keys, ``zoom``, splits).

    Args:
        root: Dataset folder holding ``train/`` and ``test/`` (each ``huawei_raw/`` + ``canon/``).
        zoom: Output scale over the raw mosaic; 1 for ZRR (module docstring).
        patch_size: Side p of a training crop in packed pixels (official: 224, the whole 448² raw).
        batch_size: Training batch size (official: 16; incomplete last batch dropped, as official).
        eval_batch_size: Validation/test batch size (official: 1; predict always uses 1).
        num_workers: DataLoader workers.
        seed: Seed of every crop and flip (with epoch and index) and of the validation hold-out.
        val_split: ``"train_holdout"`` (default) or ``"test"`` (official: val = test).
        val_fraction: Share of the train images held out with ``"train_holdout"`` (at least one).
        raw_size: Side every raw and JPG must have: 448 for the released set; ``None`` accepts any even
            size (the JPG must still be 2× the packed raw). A simulation sets it to its own ``size``.
        max_raw_value: Largest raw value accepted; larger ones are an error naming the file (default the
            10-bit 1023; 1020, the white level, makes any value above the white level an error).
        packing: Channel order of ``raw``: ``"official"`` (B, G_R, R, G_B) or ``"rggb"`` (R, G1, B, G2).
        predict_split: ``"test"`` or ``"full_resolution"`` (``full_resolution/huawei_raw``, no target).
        simulate: Generate a simulated set in ``root`` first if ``root`` is missing or empty; data simulated
            with another configuration or simulator format, or a non-empty ``root`` without a simulation
            manifest, is refused.
    """

    def __init__(
        self,
        root: str,
        zoom: int = 1,
        patch_size: int = RAW_SIZE // 2,
        batch_size: int = 16,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        seed: int = 0,
        val_split: ValSplit = "train_holdout",
        val_fraction: float = 0.05,
        raw_size: int | None = RAW_SIZE,
        max_raw_value: int = MAX_RAW_VALUE,
        packing: PackingOrder = "official",
        predict_split: PredictSplit = "test",
        simulate: ZRRSimulation | None = None,
    ) -> None:
        super().__init__()
        if zoom != 1:
            raise ValueError(f"ZRR pairs a raw with a JPG of the raw's own size: zoom must be 1, got {zoom}")
        if patch_size < 1 or min(batch_size, eval_batch_size) < 1 or num_workers < 0:
            raise ValueError(
                f"need patch_size and batch sizes ≥ 1 and num_workers ≥ 0; got {patch_size}, {batch_size}, "
                f"{eval_batch_size}, {num_workers}"
            )
        if val_split not in ("train_holdout", "test"):
            raise ValueError(f"val_split must be 'train_holdout' or 'test', got {val_split!r}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if predict_split not in ("test", "full_resolution"):
            raise ValueError(f"predict_split must be 'test' or 'full_resolution', got {predict_split!r}")
        if packing not in ("official", "rggb"):
            raise ValueError(f"packing must be 'official' or 'rggb', got {packing!r}")
        if raw_size is not None and (raw_size < 2 or raw_size % 2):
            raise ValueError(f"raw_size must be even and ≥ 2, or None; got {raw_size}")
        if raw_size is not None and patch_size > raw_size // 2:
            raise ValueError(f"patch_size {patch_size} exceeds the packed raw of {raw_size // 2}² (raw_size {raw_size})")
        if simulate is not None:
            if not isinstance(simulate, ZRRSimulation):
                raise ValueError(f"simulate must be a ZRRSimulation, got {type(simulate).__name__}")
            if raw_size is not None and simulate.size != raw_size:
                raise ValueError(
                    f"ZRRDataModule(raw_size={raw_size}) cannot read a simulation of size {simulate.size}: set "
                    f"raw_size to {simulate.size} (or None)"
                )
            if predict_split == "full_resolution":
                raise ValueError("the ZRR simulator writes no full_resolution/ folder: use predict_split='test'")
        self.root = root
        self.zoom = zoom
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.val_split = val_split
        self.val_fraction = val_fraction
        self.raw_size = raw_size
        self.max_raw_value = max_raw_value
        self.packing = packing
        self.predict_split = predict_split
        self.simulate = simulate
        self.pairs: dict[str, list[ZRRPair]] = {}
        self.datasets: dict[str, ZRRDataset] = {}

    @property
    def in_channels(self) -> int:
        """4: the packed Bayer raw."""
        return 4

    # ------------------------------------------------------------------ preparation

    def prepare_data(self) -> None:
        """Simulate the data if asked and ``root`` is missing or empty; refuse a different or unknown set."""
        if self.simulate is None:
            return
        root = Path(self.root)
        manifest = root / "simulation.json"
        if manifest.is_file():
            check_simulation_manifest(manifest, DATASET, FORMAT_VERSION, self.simulate.to_dict())
        elif root.is_dir() and any(root.iterdir()):
            raise DatasetError(
                f"{root}: asked to simulate ZRR data here, but the folder holds files and no simulation.json; "
                f"use another root, or simulate=None to read the data that is there"
            )
        else:
            log.info("simulating ZRR-style data in %s", root)
            simulate_zrr(root, self.simulate, progress=True)

    # ------------------------------------------------------------------ setup

    def _listed(self, split: str) -> list[ZRRPair]:
        """The pairs of ``train``, ``test`` or ``full_resolution``, listed once."""
        if split not in self.pairs:
            self.pairs[split] = find_full_resolution(self.root) if split == "full_resolution" else find_pairs(self.root, split)
        return self.pairs[split]

    def _train_and_holdout(self) -> tuple[list[ZRRPair], list[ZRRPair]]:
        """(training pairs, held-out validation pairs) of ZRR's train split."""
        pairs = self._listed("train")
        if self.val_split == "test":
            return pairs, []
        if len(pairs) < 2:
            raise DatasetError(
                f"{Path(self.root) / 'train'}: {len(pairs)} train pair(s) cannot give both training and held-out "
                f"validation images; use val_split='test'"
            )
        held = set(holdout_indices(len(pairs), self.val_fraction, self.seed))
        return ([pair for i, pair in enumerate(pairs) if i not in held], [pair for i, pair in enumerate(pairs) if i in held])

    def _make(self, name: str) -> ZRRDataset:
        raw_size = self.raw_size
        if name == "train":
            pairs, mode = self._train_and_holdout()[0], "train"
        elif name == "val":
            pairs, mode = (self._listed("test") if self.val_split == "test" else self._train_and_holdout()[1]), "full"
        elif name == "test" or self.predict_split == "test":
            pairs, mode = self._listed("test"), "full"
        else:  # whole phone frames of any size
            pairs, mode, raw_size = self._listed("full_resolution"), "full", None
        return ZRRDataset(
            pairs, mode, patch_size=self.patch_size, seed=self.seed, raw_size=raw_size,
            max_value=self.max_raw_value, packing=self.packing,
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (fit: train + val; validate: val; test: test; predict: predict;
        ``None``: all, predict only when it reads the test split). Only folders are listed here."""
        everything = ("train", "val", "test") + (("predict",) if self.predict_split == "test" else ())
        needs = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
        for name in needs.get(stage, everything) if stage is not None else everything:
            if name not in self.datasets:
                self.datasets[name] = self._make(name)
