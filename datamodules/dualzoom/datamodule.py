"""DRealSR-Nikon (×4) and CameraFusion (×2) for SelfDZSR (Zhang et al., ECCV 2022) as LightningDataModules.

Pipeline: ``prepare_data`` (optionally simulates the data, :mod:`datamodules.simulate.dualzoom`) →
``setup`` (lists the pairs and checks their sizes, :mod:`datamodules.dualzoom.layout`) → datasets of
:class:`datamodules.dualzoom.dataset.DualZoomDataset` (sampling rules in its docstring). Constructing a
module does no I/O.

Batch keys, per sample (the default collate stacks them; p = ``patch_size``, s = ``zoom``, q = p // s):

* ``lr`` float32 (3, p, p) in [0, 1]: the LR (short-focus crop) patch;
* ``hr`` float32 (3, s·p, s·p): the aligned telephoto (GT) at the same place;
* ``ref`` float32 (3, s·q, s·q): the GT under the Ref box (s·q = p HR pixels: the Ref has the LR's
  pixel count and the GT's resolution);
* ``ref_box`` int64 (4,) = (top, left, height, width) of the Ref box in LR pixels of the patch;
* ``lr_box`` float32 (3, q, q): the LR under the Ref box;
* ``degradation`` float32 (3, p, p): n = D(hr) − down(hr), training only
  (:mod:`datamodules.dualzoom.degradation`);
* ``name`` str: the LR file name.

Validation samples are the centred ``eval_crop``² LR crop of each **test** image and test/predict
samples the whole test image (the official code also validates on ``test_*``; there is no separate
validation set). Their Ref box is the central box B (⌊h/s⌋ × ⌊w/s⌋,
:func:`ops.geometry.central_box`), so ``ref`` is part of the GT, as in the official protocol; they have no ``degradation``. Validation
here feeds the model's *test-time* graph (the LightningModule's choice), not the official training
graph. Images of different sizes cannot be batched: keep ``eval_batch_size`` at 1 unless every crop
has the same size.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

from datamodules.base import ZoomDataModule
from datamodules.common.errors import DatasetError
from datamodules.common.simulation_manifest import check_simulation_manifest
from datamodules.dualzoom.dataset import DualZoomDataset
from datamodules.dualzoom.layout import LAYOUT_SCALES, DualZoomPair, find_pairs
from datamodules.simulate.dualzoom import FORMAT_VERSION, simulate_dualzoom
from datamodules.simulate.dualzoom_config import DualZoomSimulation

__all__ = ["DualZoomDataModule", "NikonDataModule", "CameraFusionDataModule"]

log = logging.getLogger(__name__)


class DualZoomDataModule(ZoomDataModule):
    """LR/HR dual-zoom pairs for reference-based SR (module docstring: batch keys and protocol).

    Args:
        root: Dataset folder holding ``train_LR``, ``train_HR``, ``test_LR``, ``test_HR``.
        zoom: Scale s (HR = s × LR).
        patch_size: LR side p of a training patch, a multiple of ``zoom`` (official: 48).
        batch_size: Training batch size (official: 16).
        eval_batch_size: Validation/test batch size (predict uses 1).
        num_workers: DataLoader workers (official: 4).
        epoch_length: Training samples per (virtual) epoch; pair = index mod N (official: 1000 × 16).
        eval_crop: Side of the centred validation LR crop, clipped to the image (official: 256);
            ``None`` validates on whole images.
        seed: Seed of every random crop, flip, Ref box and degradation (with epoch and index).
        simulate: Generate a simulated set in ``root`` first if ``root`` is missing or empty; data
            simulated with another configuration or simulator format is refused.
        cached: Keep the last few decoded PNGs per worker (PNGs are always read on demand).
    """

    layout: ClassVar[str]

    def __init__(
        self,
        root: str,
        zoom: int,
        patch_size: int = 48,
        batch_size: int = 16,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        epoch_length: int = 16000,
        eval_crop: int | None = 256,
        seed: int = 0,
        simulate: DualZoomSimulation | None = None,
        cached: bool = True,
    ) -> None:
        super().__init__()
        if not hasattr(type(self), "layout"):
            raise TypeError("DualZoomDataModule is a base class: use NikonDataModule or CameraFusionDataModule")
        if zoom < 1 or patch_size < zoom or patch_size % zoom:
            raise ValueError(f"need zoom ≥ 1 and patch_size a positive multiple of zoom; got {zoom}, {patch_size}")
        if min(batch_size, eval_batch_size, epoch_length) < 1 or num_workers < 0:
            raise ValueError(
                f"need batch sizes and epoch_length ≥ 1 and num_workers ≥ 0; got {batch_size}, {eval_batch_size}, "
                f"{epoch_length}, {num_workers}"
            )
        if eval_crop is not None and eval_crop < 1:
            raise ValueError(f"eval_crop must be ≥ 1 or None, got {eval_crop}")
        if simulate is not None:
            scale = LAYOUT_SCALES.get(simulate.layout)
            if simulate.layout != self.layout or simulate.output != "layout" or scale != zoom:
                raise ValueError(
                    f"{type(self).__name__} (zoom {zoom}) needs a simulation with layout={self.layout!r} and "
                    f"output='layout' (scale {zoom}); got layout={simulate.layout!r} (scale {scale}), "
                    f"output={simulate.output!r}"
                )
        self.root = root
        self.zoom = zoom
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.epoch_length = epoch_length
        self.eval_crop = eval_crop
        self.seed = seed
        self.simulate = simulate
        self.cached = cached
        self.pairs: dict[str, list[DualZoomPair]] = {}
        self.datasets: dict[str, DualZoomDataset] = {}

    @property
    def in_channels(self) -> int:
        """3: the LR is an sRGB image."""
        return 3

    # ------------------------------------------------------------------ preparation

    def prepare_data(self) -> None:
        """Simulate the data if asked and ``root`` is missing or empty; refuse a different simulation."""
        if self.simulate is None:
            return
        root = Path(self.root)
        manifest = root / "simulation.json"
        if manifest.is_file():
            check_simulation_manifest(manifest, "dualzoom", FORMAT_VERSION, self.simulate.to_dict())
        elif not (root.is_dir() and any(root.iterdir())):
            log.info("simulating %s dual-zoom data in %s", self.layout, root)
            simulate_dualzoom(root, self.simulate, progress=True)

    # ------------------------------------------------------------------ setup

    def _train_pairs(self) -> list[DualZoomPair]:
        pairs = find_pairs(self.root, "train", self.layout, self.zoom)
        for pair in pairs:
            if min(pair.lr_size) < self.patch_size:
                raise DatasetError(
                    f"{pair.lr_path}: LR of {pair.lr_size[0]}×{pair.lr_size[1]} is smaller than the training patch "
                    f"of {self.patch_size}×{self.patch_size}"
                )
        return pairs

    def setup(self, stage: str | None = None) -> None:
        """List and check the pairs the stage needs (fit: train + test; validate/test/predict: test)."""
        common = dict(scale=self.zoom, patch_size=self.patch_size, seed=self.seed, cached=self.cached)
        if "test" not in self.pairs:
            self.pairs["test"] = find_pairs(self.root, "test", self.layout, self.zoom)
            evaluation = self.pairs["test"]
            self.datasets["val"] = DualZoomDataset(evaluation, "centre", eval_crop=self.eval_crop, **common)
            self.datasets["test"] = DualZoomDataset(evaluation, "full", **common)
            self.datasets["predict"] = DualZoomDataset(evaluation, "full", **common)
        if stage in (None, "fit") and "train" not in self.pairs:
            self.pairs["train"] = self._train_pairs()
            self.datasets["train"] = DualZoomDataset(self.pairs["train"], "train", epoch_length=self.epoch_length, **common)



class NikonDataModule(DualZoomDataModule):
    """DRealSR-Nikon (×4, 163 train / 20 test pairs): LR ``DSC…_x1.png``, HR ``DSC…_x4.png``.

    Arguments as :class:`DualZoomDataModule`.
    """

    layout = "nikon"

    def __init__(
        self,
        root: str,
        zoom: int = 4,
        patch_size: int = 48,
        batch_size: int = 16,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        epoch_length: int = 16000,
        eval_crop: int | None = 256,
        seed: int = 0,
        simulate: DualZoomSimulation | None = None,
        cached: bool = True,
    ) -> None:
        super().__init__(root, zoom, patch_size, batch_size, eval_batch_size, num_workers, epoch_length, eval_crop,
                         seed, simulate, cached)


class CameraFusionDataModule(DualZoomDataModule):
    """CameraFusion (×2, 112 train / 12 test pairs): the same PNG name in ``*_LR`` and ``*_HR``.

    Arguments as :class:`DualZoomDataModule`.
    """

    layout = "camerafusion"

    def __init__(
        self,
        root: str,
        zoom: int = 2,
        patch_size: int = 48,
        batch_size: int = 16,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        epoch_length: int = 16000,
        eval_crop: int | None = 256,
        seed: int = 0,
        simulate: DualZoomSimulation | None = None,
        cached: bool = True,
    ) -> None:
        super().__init__(root, zoom, patch_size, batch_size, eval_batch_size, num_workers, epoch_length, eval_crop,
                         seed, simulate, cached)
