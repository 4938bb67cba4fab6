"""Dual-zoom samples on simulated data: keys, shapes, Ref geometry, joint augmentation, determinism, eval boxes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.common.epoch_sampler import EpochSampler
from datamodules.dualzoom.dataset import DualZoomDataset
from datamodules.dualzoom.degradation import area_downscale
from datamodules.dualzoom.layout import find_pairs, read_png
from ops.geometry import central_box

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN_KEYS = {"lr", "hr", "ref", "ref_box", "lr_box", "degradation", "name"}


def _dataset(root, layout: str, scale: int, mode: str, split: str = "train", **kwargs) -> DualZoomDataset:
    return DualZoomDataset(find_pairs(root, split, layout, scale), mode, scale, **kwargs)


def _image(path) -> torch.Tensor:
    return torch.from_numpy(read_png(path)).permute(2, 0, 1).float() / 255


def _transforms(image: torch.Tensor) -> dict[tuple[bool, bool, bool], torch.Tensor]:
    """The 8 results of (h-flip, v-flip, transpose) applied in that order."""
    out = {}
    for hflip, vflip, transpose in itertools.product((False, True), repeat=3):
        result = image.flip(-1) if hflip else image
        result = result.flip(-2) if vflip else result
        out[(hflip, vflip, transpose)] = result.transpose(-1, -2) if transpose else result
    return out


def _undo(image: torch.Tensor, flags: tuple[bool, bool, bool]) -> torch.Tensor:
    hflip, vflip, transpose = flags
    image = image.transpose(-1, -2) if transpose else image
    image = image.flip(-2) if vflip else image
    return image.flip(-1) if hflip else image


def _locate(patch: torch.Tensor, image: torch.Tensor) -> list[tuple[int, int]]:
    """Every (top, left) where ``patch`` (3, p, p) equals a crop of ``image`` exactly."""
    p = patch.shape[-1]
    height, width = image.shape[-2:]
    candidates = torch.nonzero((image[:, : height - p + 1, : width - p + 1] == patch[:, :1, :1]).all(0))
    return [
        (int(top), int(left)) for top, left in candidates if torch.equal(image[:, top : top + p, left : left + p], patch)
    ]


@pytest.mark.parametrize("layout, scale, patch", [("nikon", 4, 16), ("camerafusion", 2, 32)])
def test_train_sample_keys_shapes_and_ref_geometry(nikon_root, camerafusion_root, layout, scale, patch):
    root = nikon_root if layout == "nikon" else camerafusion_root
    dataset = _dataset(root, layout, scale, "train", patch_size=patch, epoch_length=10)
    assert len(dataset) == 10
    q = patch // scale
    boxes = set()
    for index in range(10):
        sample = dataset[(index, 0)]
        assert set(sample) == TRAIN_KEYS
        assert sample["lr"].shape == (3, patch, patch) and sample["hr"].shape == (3, scale * patch, scale * patch)
        assert sample["ref"].shape == (3, scale * q, scale * q) == (3, patch, patch)
        assert sample["lr_box"].shape == (3, q, q) and sample["degradation"].shape == (3, patch, patch)
        assert all(sample[k].dtype == torch.float32 for k in ("lr", "hr", "ref", "lr_box", "degradation"))
        assert 0 <= float(sample["lr"].min()) and float(sample["hr"].max()) <= 1
        top, left, height, width = sample["ref_box"].tolist()
        assert sample["ref_box"].dtype == torch.int64 and (height, width) == (q, q)
        assert 0 <= top <= patch - q and 0 <= left <= patch - q
        assert torch.equal(sample["ref"], sample["hr"][:, scale * top : scale * (top + q), scale * left : scale * (left + q)])
        assert torch.equal(sample["lr_box"], sample["lr"][:, top : top + q, left : left + q])
        assert sample["name"] == dataset.pairs[index % len(dataset.pairs)].name
        boxes.add((top, left))
    assert len(boxes) > 5  # the Ref box moves around the patch


def test_flips_and_transpose_are_applied_jointly(camerafusion_root):
    """Each LR patch is one of the 8 (flip, flip, transpose) views of an LR crop, and the HR patch is the
    same view of the HR crop at s× the position; all 8 views occur."""
    dataset = _dataset(camerafusion_root, "camerafusion", 2, "train", patch_size=16, epoch_length=48)
    images = [(_image(p.lr_path), _image(p.hr_path)) for p in dataset.pairs]
    seen = set()
    for index in range(len(dataset)):
        sample = dataset[(index, 3)]
        lr_image, hr_image = images[index % len(images)]
        matches = []
        for flags in _transforms(sample["lr"]):
            for top, left in _locate(_undo(sample["lr"], flags), lr_image):
                hr_crop = hr_image[:, 2 * top : 2 * top + 32, 2 * left : 2 * left + 32]
                if torch.equal(_undo(sample["hr"], flags), hr_crop):
                    matches.append(flags)
        assert matches, index
        seen.add(matches[0])
    assert len(seen) == 8


def test_lr_is_the_downscaled_hr_on_simulated_pairs(nikon_root):
    """The simulated HR is aligned exactly: area-downscaled, it lines up with the LR (correlation far
    above that of any other flip/transpose of it)."""
    dataset = _dataset(nikon_root, "nikon", 4, "train", patch_size=32, epoch_length=12)
    for index in range(len(dataset)):
        sample = dataset[(index, 0)]
        down = area_downscale(sample["hr"], 4).mean(0)
        lr = sample["lr"].mean(0)
        scores = {flags: float(torch.corrcoef(torch.stack([view.flatten(), lr.flatten()]))[0, 1])
                  for flags, view in _transforms(down).items()}
        assert scores[(False, False, False)] > 0.85, index
        assert scores[(False, False, False)] > max(v for k, v in scores.items() if any(k)) + 0.1, index


def test_samples_depend_on_seed_epoch_and_index_only(nikon_root):
    dataset = _dataset(nikon_root, "nikon", 4, "train", patch_size=16, epoch_length=8, seed=5)
    again = _dataset(nikon_root, "nikon", 4, "train", patch_size=16, epoch_length=8, seed=5, cached=False)
    first = dataset[(3, 2)]
    for key, value in again[(3, 2)].items():
        assert torch.equal(value, first[key]) if isinstance(value, torch.Tensor) else value == first[key]
    assert not torch.equal(dataset[(3, 1)]["lr"], first["lr"])
    assert not torch.equal(dataset[(3, 2)]["degradation"], _dataset(
        nikon_root, "nikon", 4, "train", patch_size=16, epoch_length=8, seed=6)[(3, 2)]["degradation"])
    assert torch.equal(dataset[3]["lr"], dataset[(3, 0)]["lr"])
    with pytest.raises(IndexError):
        dataset[(8, 0)]


def test_batches_do_not_depend_on_the_workers(nikon_root):
    dataset = _dataset(nikon_root, "nikon", 4, "train", patch_size=16, epoch_length=8)

    def batches(workers: int) -> list[dict]:
        sampler = EpochSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
        sampler.set_epoch(1)
        return list(DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=workers))

    single, parallel = batches(0), batches(2)
    for one, two in zip(single, parallel, strict=True):
        assert one["name"] == two["name"]
        for key in ("lr", "hr", "ref", "ref_box", "degradation"):
            assert torch.equal(one[key], two[key])


def test_central_box():
    assert central_box(256, 256, 4) == (96, 96, 64, 64)
    assert central_box(687, 1111, 4) == (258, 417, 171, 277)  # the demo LR (reference §10 item 2)
    assert central_box(45, 30, 2) == (11, 7, 22, 15)


def test_validation_samples_are_centre_crops_with_box_b(camerafusion_root):
    pairs = find_pairs(camerafusion_root, "test", "camerafusion", 2)
    lr_image, hr_image = _image(pairs[0].lr_path), _image(pairs[0].hr_path)
    height, width = lr_image.shape[-2:]
    sample = DualZoomDataset(pairs, "centre", 2, eval_crop=40)[0]
    assert set(sample) == TRAIN_KEYS - {"degradation"}
    top, left = (height - 40) // 2, (width - 40) // 2
    assert torch.equal(sample["lr"], lr_image[:, top : top + 40, left : left + 40])
    assert torch.equal(sample["hr"], hr_image[:, 2 * top : 2 * top + 80, 2 * left : 2 * left + 80])
    assert sample["ref_box"].tolist() == [10, 10, 20, 20]
    assert torch.equal(sample["ref"], sample["hr"][:, 20:60, 20:60])
    assert torch.equal(sample["lr_box"], sample["lr"][:, 10:30, 10:30])

    clipped = DualZoomDataset(pairs, "centre", 2, eval_crop=100)[0]  # 100 > height 88: clipped to the image rows
    assert clipped["lr"].shape == (3, 88, 100)
    assert torch.equal(clipped["lr"], lr_image[:, :, (width - 100) // 2 : (width - 100) // 2 + 100])
    assert clipped["ref_box"].tolist() == [22, 25, 44, 50] and clipped["ref"].shape == (3, 88, 100)


@pytest.mark.parametrize("layout, scale", [("nikon", 4), ("camerafusion", 2)])
def test_test_samples_are_whole_images_with_box_b(nikon_root, camerafusion_root, layout, scale):
    root = nikon_root if layout == "nikon" else camerafusion_root
    pairs = find_pairs(root, "test", layout, scale)
    dataset = DualZoomDataset(pairs, "full", scale, eval_crop=16)  # eval_crop is a validation setting only
    assert len(dataset) == len(pairs)
    for index, pair in enumerate(pairs):
        sample = dataset[index]
        height, width = pair.lr_size
        assert torch.equal(sample["lr"], _image(pair.lr_path)) and torch.equal(sample["hr"], _image(pair.hr_path))
        t, l, h, w = central_box(height, width, scale)
        assert sample["ref_box"].tolist() == [t, l, h, w] and (h, w) == (height // scale, width // scale)
        assert sample["ref"].shape == (3, scale * h, scale * w)
        assert torch.equal(sample["ref"], sample["hr"][:, scale * t : scale * (t + h), scale * l : scale * (l + w)])
        assert torch.equal(sample["lr_box"], sample["lr"][:, t : t + h, l : l + w])


def test_lazy_reading_keeps_few_files(nikon_root, monkeypatch):
    import datamodules.dualzoom.dataset as dataset_module

    reads = []
    real = dataset_module.read_png
    monkeypatch.setattr(dataset_module, "read_png", lambda path: reads.append(path) or real(path))
    dataset = _dataset(nikon_root, "nikon", 4, "train", patch_size=16, epoch_length=9)
    assert reads == []  # nothing is read before a sample needs it
    for index in (0, 0, 0, 1):
        dataset[(index, 0)]
    assert len(reads) == 4  # pairs 0 and 1, LR + HR each, pair 0 from the cache twice
    for index in range(2, 9):
        dataset[(index, 0)]
    assert len(dataset._decoded) == 4
    uncached = _dataset(nikon_root, "nikon", 4, "train", patch_size=16, epoch_length=9, cached=False)
    reads.clear()
    uncached[(0, 0)], uncached[(0, 0)]
    assert len(reads) == 4 and not uncached._decoded
    assert np.array_equal(read_png(dataset.pairs[0].lr_path), real(dataset.pairs[0].lr_path))
