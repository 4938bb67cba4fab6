"""ZRRDataModule: construction without I/O, the validation hold-out (disjoint from test by default, the
test set as an option), loaders' batch shapes, predict on full-resolution raws, and the simulation guard."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from datamodules.common.errors import DatasetError
from datamodules.simulate.zrr_config import ZRRSimulation
from datamodules.zrr import ZRRDataModule
from datamodules.zrr.datamodule import holdout_indices
from tests.datamodules.zrr.conftest import SMALL, random_mosaic, write_pair

pytestmark = pytest.mark.usefixtures("one_thread")


def _module(root, **kwargs) -> ZRRDataModule:
    options = dict(raw_size=128, patch_size=32, batch_size=2, num_workers=0, val_fraction=0.34)
    options.update(kwargs)
    return ZRRDataModule(str(root), **options)


def test_construction_does_no_io_and_checks_arguments(tmp_path):
    module = ZRRDataModule(str(tmp_path / "missing"), simulate=ZRRSimulation())
    assert module.in_channels == 4 and module.zoom == 1 and module.patch_size == 224 and module.raw_size == 448
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ValueError, match="zoom must be 1"):
        ZRRDataModule("x", zoom=2)
    with pytest.raises(ValueError, match="patch_size 225 exceeds the packed raw of 224"):
        ZRRDataModule("x", patch_size=225)
    with pytest.raises(ValueError, match="val_split"):
        ZRRDataModule("x", val_split="val")
    with pytest.raises(ValueError, match="raw_size=448.*size 128"):
        ZRRDataModule("x", simulate=SMALL)


def test_holdout_indices():
    held = holdout_indices(46839, 0.05, seed=0)
    assert len(held) == 2342 and held == sorted(set(held)) and 0 <= held[0] and held[-1] < 46839
    assert held == holdout_indices(46839, 0.05, seed=0) and held != holdout_indices(46839, 0.05, seed=1)
    assert len(holdout_indices(3, 0.01, 0)) == 1 and len(holdout_indices(3, 0.99, 0)) == 2  # ≥ 1 each way


def test_val_is_held_out_from_train_by_default_and_is_test_as_an_option(zrr_root):
    module = _module(zrr_root)
    module.setup("fit")
    train = [p.raw_path for p in module.datasets["train"].pairs]
    val = [p.raw_path for p in module.datasets["val"].pairs]
    assert len(train) == 4 and len(val) == 2 and not set(train) & set(val)
    assert all(path.parent.parent.name == "train" for path in train + val)  # never the test set
    module.setup("test")
    test = [p.raw_path for p in module.datasets["test"].pairs]
    assert len(test) == 2 and not set(test) & set(val)
    official = _module(zrr_root, val_split="test")
    official.setup("fit")
    assert [p.raw_path for p in official.datasets["val"].pairs] == test
    assert len(official.datasets["train"].pairs) == 6
    other_seed = _module(zrr_root, seed=5)
    other_seed.setup("validate")
    assert "train" not in other_seed.datasets and len(other_seed.datasets["val"]) == 2


def test_loaders_give_the_documented_batches(zrr_root):
    module = _module(zrr_root)
    module.setup("fit")
    batches = list(module.train_dataloader())
    assert len(batches) == 2  # 4 training images, batch 2, last incomplete batch dropped
    batch = batches[0]
    assert batch["raw"].shape == (2, 4, 32, 32) and batch["raw_rgb"].shape == (2, 3, 64, 64)
    assert batch["target"].shape == (2, 3, 64, 64) and batch["coord"].shape == (2, 2, 64, 64)
    assert batch["crop"].shape == (2, 4) and len(batch["name"]) == 2 and isinstance(batch["name"][0], str)
    assert float(batch["raw"].min()) >= 0 and float(batch["coord"].abs().max()) < 1
    assert sorted(batch["name"] + batches[1]["name"]) == sorted(p.name for p in module.datasets["train"].pairs)
    (val,) = [next(iter(module.val_dataloader()))]
    assert val["raw"].shape == (1, 4, 64, 64) and val["target"].shape == (1, 3, 128, 128)
    module.setup("test")
    tests = list(module.test_dataloader())
    assert len(tests) == 2 and tests[0]["raw"].shape == (1, 4, 64, 64) and tests[0]["name"] == ["0"]
    module.setup("predict")
    assert next(iter(module.predict_dataloader()))["coord"].shape == (1, 2, 128, 128)


def test_epochs_reshuffle_and_redraw_augmentation(zrr_root):
    module = _module(zrr_root)
    module.setup("fit")
    loader = module.train_dataloader()
    first = [b["coord"] for b in loader]
    again = [b["coord"] for b in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # same epoch: same batches
    loader.sampler.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(first, [b["coord"] for b in loader]))


def test_predict_on_full_resolution_raws(tmp_path):
    rng = np.random.default_rng(0)
    write_pair(tmp_path, "full_resolution", "1072", random_mosaic(rng, 20)[:, :18].copy(), None)
    module = ZRRDataModule(str(tmp_path), predict_split="full_resolution", num_workers=0)
    module.setup("predict")
    (batch,) = list(module.predict_dataloader())
    assert batch["raw"].shape == (1, 4, 10, 9) and batch["raw_rgb"].shape == (1, 3, 20, 18)
    assert "target" not in batch and batch["name"] == ["1072"]


def test_simulate_writes_once_and_refuses_other_data(zrr_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(zrr_root, root)
    _module(root, simulate=SMALL).prepare_data()  # the same simulation: accepted, nothing rewritten
    with pytest.raises(DatasetError, match="simulation.json.*simulated with"):
        _module(root, simulate=dataclasses.replace(SMALL, seed=4)).prepare_data()
    manifest = root / "simulation.json"
    written = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**written, "format": 999}))
    with pytest.raises(DatasetError, match="simulator format 999"):
        _module(root, simulate=SMALL).prepare_data()
    manifest.write_text(json.dumps({**written, "dataset": "dualzoom"}))
    with pytest.raises(DatasetError, match="'dualzoom' simulator, not 'zrr'"):
        _module(root, simulate=SMALL).prepare_data()
    manifest.unlink()
    with pytest.raises(DatasetError, match="holds files and no simulation.json"):
        _module(root, simulate=SMALL).prepare_data()
    tiny = ZRRSimulation(train_images=2, test_images=1, size=64, seed=1)
    fresh = _module(tmp_path / "fresh", simulate=tiny, raw_size=None, patch_size=16, val_fraction=0.5)
    fresh.prepare_data()
    fresh.setup("fit")
    assert len(fresh.datasets["train"]) == 1 and fresh.datasets["train"][0]["raw"].shape == (4, 16, 16)
