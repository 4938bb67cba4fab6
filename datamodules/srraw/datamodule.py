"""SR-RAW (Zhang et al., "Zoom to Learn, Learn to Zoom", CVPR 2019) as a LightningDataModule.

Pipeline: ``prepare_data`` (optionally simulates the data; aligns every scene once and caches the result,
:mod:`datamodules.srraw.alignment`; decodes the parts of the files its pairs use once,
:mod:`datamodules.srraw.decoded`) → ``setup`` (reads the caches, picks pairs by EXIF focal ratio,
:mod:`datamodules.srraw.focal_pairs`, splits by scene, :mod:`datamodules.srraw.scene_split`, computes each
pair's valid crop region, :mod:`datamodules.srraw.pair_geometry`) → datasets of
:class:`datamodules.srraw.dataset.SRRAWPairDataset` (crop geometry and sampling modes in its docstring).
Constructing the module does no I/O. For a large dataset, prepare it first with
``python -m datamodules.srraw.prepare ROOT --workers N`` (several processes, resumable).

Batch keys, per sample (the default collate stacks them; p_h × p_w is the crop in packed pixels,
S_h = 2·zoom·p_h, S_w = 2·zoom·p_w, m = ``target_margin``):

* ``input`` float32 (C_in, p_h, p_w), by the ``input`` argument (``eval_input`` for validation, test and
  prediction):
  ``"raw"`` packed R, G1, B, G2 of (x − black)/(white − black), black per CFA position, not clipped;
  ``"png"`` (paper's "Ours-png") the input shot's JPG on the crop's Bayer grid with its white balance
  divided out in the gamma domain (÷ wb^(1/2.2)), space-to-depth packed (``pixel_unshuffle(2)``, 12 channels);
  ``"synthetic_raw"`` ("Ours-syn-raw") that white-balance-free JPG crop sampled on an RGGB mosaic, plus
  Gaussian noise of std σ ~ U(0, ``synthetic_noise_max``), packed (4 channels).
  The raw has no white balance either, so all three ask the network for the same white-balance-free
  target: target ÷ wb_target^(1/2.2) (reference §3.8), which the model computes from the keys below.
* ``target`` float32 (3, S_h + 2m, S_w + 2m): the target JPG in [0, 1] on the output grid with the
  margin, white balance as in the JPG (absent in predict samples).
* ``input_rgb`` float32 (3, 2p_h, 2p_w): the input shot's camera JPG on the crop's Bayer grid (for the
  bicubic baseline and image panels; validation and test samples only).
* ``wb_input``, ``wb_target`` float32 (3,): white-balance gains (R, G, B), G = 1, of the input and target
  shots, all from one source, ``wb_source`` str: ``"camera"`` (the raws' as-shot multipliers) or
  ``"wb.txt"`` (SR-RAW's official ratios) (``wb_target`` absent in predict samples).
* ``scene`` str, ``input_name`` str (e.g. ``"00006"``), ``target_name`` str,
  ``focal_ratio`` float32 scalar (EXIF f_target/f_input; absent in predict samples),
  ``crop`` int64 (4,) = (top, left, height, width) in packed input pixels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch.distributed as dist

from datamodules.base import ZoomDataModule
from datamodules.common.errors import DatasetError
from datamodules.common.simulation_manifest import check_simulation_manifest
from datamodules.simulate import FORMAT_VERSION, SRRAWSimulation, simulate_srraw
from datamodules.srraw.alignment import (
    SceneAlignment,
    ShotAlignment,
    alignment_cache_path,
    load_alignment,
    prepare_alignments,
)
from datamodules.srraw.dataset import (
    InputKind,
    SRRAWPair,
    SRRAWPairDataset,
    WhiteBalanceSource,
)
from datamodules.srraw.decoded import (
    DECODED_FOLDER,
    DecodedArray,
    Window,
    input_window,
    target_window,
    write_decoded,
)
from datamodules.srraw.focal_pairs import select_focal_pairs
from datamodules.srraw.layout import SceneLocation, find_scenes
from datamodules.srraw.pair_geometry import bayer_to_target, valid_region
from datamodules.srraw.scene_split import SPLITS, read_split_file, split_scenes

__all__ = ["SRRAWDataModule", "MAX_SCENES_PREPARED_UNDER_DDP"]

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]
#: Under DDP, ``prepare_data`` aligns at most this many scenes itself (the other ranks wait at a barrier);
#: more is an error naming the preparation command.
MAX_SCENES_PREPARED_UNDER_DDP = 20


class SRRAWDataModule(ZoomDataModule):
    """SR-RAW zoom pairs: packed raw (or JPG-based) input crops and aligned camera-JPG targets.

    Args:
        root: Dataset folder: ``<root>/<scene>/<shot>.<raw>`` + ``.JPG``, or SR-RAW's ``train/`` and
            ``test/`` folders.
        zoom: Magnification (4 or 8 in the paper); pairs have focal ratio ≈ zoom.
        patch_size: Side of a training input crop, packed pixels (output: 2·zoom·patch_size).
        target_margin: Extra target pixels m on every side of the output grid (a tolerance for the
            residual misalignment).
        input: ``"raw"`` (packed raw), ``"png"`` (input JPG, 12 channels) or ``"synthetic_raw"``
            (mosaicked JPG with noise), the paper's §5.2 variants, for training.
        eval_input: The input of validation, test and prediction (default: ``input``). "Ours-syn-raw"
            trains on ``synthetic_raw`` and is evaluated on ``raw`` (paper §5.2). Both must have the
            same channel count.
        wb_source: Where every sample's white-balance gains come from: ``"camera"`` (the raws' as-shot
            multipliers, always available) or ``"wb.txt"`` (SR-RAW's official per-shot ratios of two
            rawpy renders, a different quantity; every used shot must be listed). One source per run.
        eval_crop: Side of the centred val/test crop in packed pixels (clipped to the valid region);
            ``None`` takes the whole valid region. Crops of different sizes cannot be batched, so
            ``eval_batch_size`` > 1 needs every valid region ≥ ``eval_crop`` (and a value, not ``None``).
        split_file: JSON ``{"train": [...], "val": [...], "test": [...]}``; else ``split_fractions``.
        split_fractions: Train/val/test fractions of the scenes (seeded shuffle).
        seed: Seed of the split and of every random crop (with epoch and sample index).
        batch_size, eval_batch_size, num_workers: DataLoader settings (predict uses batch size 1).
        crops_per_pair: Training samples per pair and epoch.
        focal_ratio_range: Accepted focal ratios, as multiples of ``zoom``.
        synthetic_noise_max: Largest noise std of the ``synthetic_raw`` input.
        simulate: Generate a simulated dataset in ``root`` first if ``root`` holds no data yet.
        cache_dir: Where the per-scene caches go (default: next to the data).
        predict_split: Split whose pairs ``predict_dataloader`` returns (whole valid regions).
        strict: A scene that is no zoom sequence (one shot, no focal length) is an error instead of
            being skipped and reported.
        prepare_workers: Processes that align scenes in ``prepare_data``.
    """

    drop_last_train_batch = False  # every crop of every pair is used

    def __init__(
        self,
        root: str,
        zoom: int = 4,
        patch_size: int = 64,
        target_margin: int = 16,
        input: InputKind = "raw",
        eval_input: InputKind | None = None,
        wb_source: WhiteBalanceSource = "camera",
        eval_crop: int | None = 128,
        split_file: str | None = None,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        batch_size: int = 1,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        crops_per_pair: int = 1,
        focal_ratio_range: tuple[float, float] = (0.95, 1.3),
        synthetic_noise_max: float = 0.0784,
        simulate: SRRAWSimulation | None = None,
        cache_dir: str | None = None,
        predict_split: Split = "test",
        strict: bool = False,
        prepare_workers: int = 1,
    ) -> None:
        super().__init__()
        if zoom < 1 or patch_size < 1 or target_margin < 0 or crops_per_pair < 1 or prepare_workers < 1:
            raise ValueError(
                f"need zoom ≥ 1, patch_size ≥ 1, target_margin ≥ 0, crops_per_pair ≥ 1, prepare_workers ≥ 1; got {zoom}, "
                f"{patch_size}, {target_margin}, {crops_per_pair}, {prepare_workers}"
            )
        kinds = ("raw", "png", "synthetic_raw")
        eval_input = input if eval_input is None else eval_input
        if input not in kinds or eval_input not in kinds:
            raise ValueError(f"input and eval_input must be one of {kinds}, got {input!r} and {eval_input!r}")
        if _channels(input) != _channels(eval_input):
            raise ValueError(f"input {input!r} has {_channels(input)} channels, eval_input {eval_input!r} {_channels(eval_input)}")
        if wb_source not in ("camera", "wb.txt"):
            raise ValueError(f"wb_source must be 'camera' or 'wb.txt', got {wb_source!r}")
        if eval_crop is not None and eval_crop < 1:
            raise ValueError(f"eval_crop must be ≥ 1 or None, got {eval_crop}")
        if not 0 < focal_ratio_range[0] <= focal_ratio_range[1]:
            raise ValueError(f"focal_ratio_range must be (low, high) with 0 < low ≤ high, got {focal_ratio_range}")
        if sum(split_fractions) <= 0 or min(split_fractions) < 0:
            raise ValueError(f"split_fractions must be non-negative with a positive sum, got {split_fractions}")
        if predict_split not in SPLITS:
            raise ValueError(f"predict_split must be one of {SPLITS}, got {predict_split!r}")
        self.root = root
        self.zoom = zoom
        self.patch_size = patch_size
        self.target_margin = target_margin
        self.input = input
        self.eval_input = eval_input
        self.wb_source = wb_source
        self.eval_crop = eval_crop
        self.split_file = split_file
        self.split_fractions = tuple(split_fractions)
        self.seed = seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.crops_per_pair = crops_per_pair
        self.focal_ratio_range = tuple(focal_ratio_range)
        self.synthetic_noise_max = synthetic_noise_max
        self.simulate = simulate
        self.cache_dir = cache_dir
        self.predict_split = predict_split
        self.strict = strict
        self.prepare_workers = prepare_workers
        self.pairs: dict[str, list[SRRAWPair]] = {}
        self.datasets: dict[str, SRRAWPairDataset] = {}

    @property
    def in_channels(self) -> int:
        """12 for the ``png`` input (space-to-depth RGB), 4 for packed raw and synthetic raw."""
        return _channels(self.input)

    # ------------------------------------------------------------------ preparation

    def _simulate_if_needed(self) -> None:
        root = Path(self.root)
        manifest = root / "simulation.json"
        if manifest.is_file():
            check_simulation_manifest(manifest, None, FORMAT_VERSION, self.simulate.to_dict())
        elif not (root.is_dir() and find_scenes(root)):
            log.info("simulating SR-RAW data in %s", root)
            simulate_srraw(root, self.simulate, progress=True)

    def _check_ddp_preparation(self, scenes: list[SceneLocation]) -> None:
        """Under DDP the other ranks wait while rank 0 prepares: refuse to align a large set there."""
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return
        missing = [scene for scene in scenes if not alignment_cache_path(scene, self.cache_dir).is_file()]
        if len(missing) > MAX_SCENES_PREPARED_UNDER_DDP:
            raise DatasetError(
                f"{self.root}: {len(missing)} of {len(scenes)} scenes are not prepared, and under DDP the other ranks "
                f"would wait for all of them; prepare them first: uv run python -m datamodules.srraw.prepare "
                f"{self.root} --workers N" + (f" --cache-dir {self.cache_dir}" if self.cache_dir else "")
            )

    def prepare_data(self) -> None:
        """Simulate the data if asked and absent, align the scenes whose cache is missing or stale, and
        decode the parts of the files the pairs use."""
        if self.simulate is not None:
            self._simulate_if_needed()
        scenes = find_scenes(self.root)
        self._check_ddp_preparation(scenes)
        report = prepare_alignments(scenes, self.cache_dir, workers=self.prepare_workers, strict=self.strict)
        for name, reason in report.skipped.items():
            log.warning("SR-RAW scene %s skipped: %s", name, reason)
        split = self._split(scenes)
        evaluated = set(split["val"]) | set(split["test"]) | set(split[self.predict_split])
        arrays = []
        for scene in scenes:
            for pair in self._pairs_of(scene):
                arrays += [pair.raw, pair.target_jpg]
                if self.input != "raw" or scene.name in evaluated:  # a raw training sample reads no input JPG
                    arrays.append(pair.input_jpg)
        written = write_decoded(arrays, workers=self.prepare_workers)
        if written:
            log.info("SR-RAW: decoded %d file windows into the cache", written)

    # ------------------------------------------------------------------ setup

    def _gains(self, shot: ShotAlignment, scene: SceneAlignment) -> tuple[float, float, float]:
        if self.wb_source == "camera":
            return shot.camera_white_balance
        if shot.official_white_balance is None:
            raise DatasetError(
                f"{scene.directory / 'wb.txt'}: no official white balance for shot {shot.name} of scene {scene.name!r} "
                "(wb_source: wb.txt needs every used shot listed; wb_source: camera uses the raws' as-shot gains)"
            )
        return shot.official_white_balance

    def _pairs_of(self, location: SceneLocation) -> list[SRRAWPair]:
        """The pairs of one scene (none for a skipped scene), with their decoded windows."""
        alignment = load_alignment(location, self.cache_dir)
        if alignment is None:
            return []
        folder = alignment_cache_path(location, self.cache_dir).parent / DECODED_FOLDER
        focals = {name: shot.focal_length for name, shot in alignment.shots.items()}
        pairs = []
        for choice in select_focal_pairs(focals, self.zoom, self.focal_ratio_range):
            source, target = alignment.shots[choice.input], alignment.shots[choice.target]
            matrix = bayer_to_target(source.matrix, target.matrix, source.bayer_to_jpg)
            try:
                region = valid_region(matrix, source.raw_size, target.jpg_size, self.zoom, self.target_margin)
            except ValueError as error:
                raise DatasetError(f"{source.raw_path}: pair with {target.jpg_path.name}: {error}") from error
            if region.empty:
                log.warning("SR-RAW %s: pair %s → %s has no valid region", alignment.name, choice.input, choice.target)
                continue
            log.info(
                "SR-RAW %s: %s → %s, focal ratio %.3f, valid region %s",
                alignment.name, choice.input, choice.target, choice.ratio, region.as_tuple(),
            )
            pairs.append(
                SRRAWPair(
                    scene=alignment.name,
                    input=source,
                    target=target,
                    focal_ratio=choice.ratio,
                    bayer_to_target=matrix,
                    region=region,
                    wb_input=self._gains(source, alignment),
                    wb_target=self._gains(target, alignment),
                    raw=DecodedArray(
                        "raw", source.raw_path, Window(*region.as_tuple()), folder, source.jpg_path, source.raw_to_jpg
                    ),
                    target_jpg=DecodedArray(
                        "target", target.jpg_path,
                        target_window(matrix, region, self.zoom, self.target_margin, target.jpg_size), folder,
                    ),
                    input_jpg=DecodedArray(
                        "input", source.jpg_path, input_window(source.bayer_to_jpg, region, source.jpg_size), folder
                    ),
                )
            )
        return pairs

    def _usable(self, pairs: list[SRRAWPair], split: str) -> list[SRRAWPair]:
        need = self.patch_size if split == "train" else 1
        usable = []
        for pair in pairs:
            if min(pair.region.height, pair.region.width) >= need:
                usable.append(pair)
            else:
                log.warning(
                    "SR-RAW %s: pair %s → %s skipped, valid region %s is smaller than %d packed pixels",
                    pair.scene, pair.input.name, pair.target.name, pair.region.as_tuple(), need,
                )
        return usable

    def _split(self, scenes: list[SceneLocation]) -> dict[str, list[str]]:
        """Scene names per split, from the split file or by fractions of the scenes that were not skipped."""
        if self.split_file is not None:
            return read_split_file(self.split_file, scenes)
        usable = [scene for scene in scenes if load_alignment(scene, self.cache_dir) is not None]
        return split_scenes(usable, self.split_fractions, self.seed)

    def setup(self, stage: str | None = None) -> None:
        """Read the caches, select and split the pairs, and build the datasets."""
        if self.datasets:
            return
        scenes: list[SceneLocation] = find_scenes(self.root)
        pairs = {scene.name: self._pairs_of(scene) for scene in scenes}
        split = self._split(scenes)
        for name in SPLITS:
            self.pairs[name] = self._usable([pair for scene in split[name] for pair in pairs[scene]], name)
        common = dict(
            zoom=self.zoom, patch_size=self.patch_size, target_margin=self.target_margin, seed=self.seed,
            synthetic_noise_max=self.synthetic_noise_max, wb_source=self.wb_source,
        )
        self.datasets = {
            "train": SRRAWPairDataset(
                self.pairs["train"], "train", input_kind=self.input, crops_per_pair=self.crops_per_pair, **common
            ),
            "val": SRRAWPairDataset(self.pairs["val"], "eval", input_kind=self.eval_input, eval_crop=self.eval_crop, **common),
            "test": SRRAWPairDataset(self.pairs["test"], "eval", input_kind=self.eval_input, eval_crop=self.eval_crop, **common),
            "predict": SRRAWPairDataset(self.pairs[self.predict_split], "predict", input_kind=self.eval_input, **common),
        }


def _channels(kind: str) -> int:
    return 12 if kind == "png" else 4
