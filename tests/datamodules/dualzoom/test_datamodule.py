"""NikonDataModule and CameraFusionDataModule: construction, simulation on first use, setup checks, loaders."""

from __future__ import annotations

import builtins
import dataclasses
import json
import os

import pytest
import torch

from datamodules.base import ZoomDataModule
from datamodules.common.errors import DatasetError
from datamodules.dualzoom import CameraFusionDataModule, NikonDataModule
from datamodules.simulate.dualzoom_config import DualZoomSimulation
from tests.conftest import CAMERAFUSION, NIKON

pytestmark = pytest.mark.usefixtures("one_thread")


def _module(cls, root, **kwargs):
    arguments = dict(patch_size=16, batch_size=4, num_workers=0, epoch_length=10, eval_crop=32)
    arguments.update(kwargs)
    return cls(str(root), **arguments)


def test_construction_does_no_io(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("I/O while constructing the DataModule")

    for name in ("stat", "scandir", "listdir", "mkdir", "makedirs"):
        monkeypatch.setattr(os, name, forbidden)
    monkeypatch.setattr(builtins, "open", forbidden)
    nikon = NikonDataModule(str(tmp_path / "missing"), simulate=NIKON)
    camerafusion = CameraFusionDataModule(str(tmp_path / "missing"))
    monkeypatch.undo()

    assert isinstance(nikon, ZoomDataModule) and isinstance(camerafusion, ZoomDataModule)
    assert (nikon.zoom, camerafusion.zoom, nikon.in_channels, camerafusion.in_channels) == (4, 2, 3, 3)
    assert (nikon.patch_size, nikon.batch_size, nikon.epoch_length, nikon.eval_crop) == (48, 16, 16000, 256)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(DatasetError) as error:
        camerafusion.setup("fit")
    assert str(error.value).startswith(str(tmp_path / "missing" / "test_LR"))


def test_invalid_arguments_are_rejected(tmp_path):
    from datamodules.dualzoom import DualZoomDataModule

    with pytest.raises(TypeError, match="NikonDataModule or CameraFusionDataModule"):
        DualZoomDataModule(str(tmp_path), zoom=4)
    with pytest.raises(ValueError, match="multiple of zoom"):
        NikonDataModule(str(tmp_path), patch_size=50)
    with pytest.raises(ValueError, match="layout='camerafusion'"):
        CameraFusionDataModule(str(tmp_path), simulate=NIKON)
    with pytest.raises(ValueError, match="output='layout'"):
        NikonDataModule(str(tmp_path), simulate=dataclasses.replace(NIKON, output="captures"))
    with pytest.raises(ValueError, match="scale 4"):
        NikonDataModule(str(tmp_path), zoom=2, simulate=NIKON)


def test_simulates_on_first_use_then_reuses_or_refuses(tmp_path):
    root = tmp_path / "data"
    config = dataclasses.replace(CAMERAFUSION, train_pairs=1, test_pairs=1)
    module = _module(CameraFusionDataModule, root, simulate=config)
    module.prepare_data()
    manifest = root / "simulation.json"
    assert json.loads(manifest.read_text())["config"] == config.to_dict()
    stamp = manifest.stat().st_mtime_ns
    _module(CameraFusionDataModule, root, simulate=config).prepare_data()  # same config: reused as is
    assert manifest.stat().st_mtime_ns == stamp

    with pytest.raises(DatasetError, match="simulated with") as error:
        _module(CameraFusionDataModule, root, simulate=dataclasses.replace(config, seed=9)).prepare_data()
    assert str(error.value).startswith(str(manifest))
    original = manifest.read_text()
    for changes, message in (({"format": 0}, "simulator format 0, this version writes format 1"),
                             ({"dataset": "srraw"}, "written by the 'srraw' simulator")):
        manifest.write_text(json.dumps({**json.loads(original), **changes}))
        with pytest.raises(DatasetError, match=message):
            _module(CameraFusionDataModule, root, simulate=config).prepare_data()
    manifest.write_text(original)

    other = tmp_path / "own"
    other.mkdir()
    (other / "notes.txt").write_text("my data, not simulated")
    _module(CameraFusionDataModule, other, simulate=config).prepare_data()  # a non-empty root is left alone
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("cls, scale", [(NikonDataModule, 4), (CameraFusionDataModule, 2)])
def test_loaders_on_simulated_data(nikon_root, camerafusion_root, cls, scale):
    root = nikon_root if cls is NikonDataModule else camerafusion_root
    module = _module(cls, root)
    module.setup("fit")
    p, q = 16, 16 // scale
    train = module.train_dataloader()
    assert len(train) == 10 // 4  # drop_last: 2 full batches of the 10-sample virtual epoch
    batch = next(iter(train))
    assert set(batch) == {"lr", "hr", "ref", "ref_box", "lr_box", "degradation", "name"}
    assert batch["lr"].shape == (4, 3, p, p) and batch["hr"].shape == (4, 3, scale * p, scale * p)
    assert batch["ref"].shape == (4, 3, scale * q, scale * q) and batch["lr_box"].shape == (4, 3, q, q)
    assert batch["ref_box"].shape == (4, 4) and batch["ref_box"].dtype == torch.int64
    assert batch["degradation"].shape == (4, 3, p, p) and len(batch["name"]) == 4

    val = list(module.val_dataloader())
    assert len(val) == len(module.pairs["test"])
    height, width = module.pairs["test"][0].lr_size
    crop_h, crop_w = min(32, height), min(32, width)
    assert val[0]["lr"].shape == (1, 3, crop_h, crop_w) and val[0]["hr"].shape == (1, 3, scale * crop_h, scale * crop_w)
    assert "degradation" not in val[0]
    assert val[0]["ref_box"][0].tolist() == [(crop_h - crop_h // scale) // 2, (crop_w - crop_w // scale) // 2,
                                             crop_h // scale, crop_w // scale]
    test = next(iter(module.test_dataloader()))
    assert test["lr"].shape == (1, 3, height, width) and test["hr"].shape == (1, 3, scale * height, scale * width)
    predict = next(iter(module.predict_dataloader()))
    assert torch.equal(predict["lr"], test["lr"]) and predict["name"] == test["name"]


def test_setup_for_evaluation_needs_only_the_test_split(tmp_path, camerafusion_root):
    root = tmp_path / "data"
    root.mkdir()
    for folder in ("test_LR", "test_HR"):
        (root / folder).symlink_to(camerafusion_root / folder)
    module = _module(CameraFusionDataModule, root)
    module.setup("test")
    assert len(next(iter(module.test_dataloader()))["name"]) == 1
    with pytest.raises(RuntimeError, match="setup"):
        module.train_dataloader()
    with pytest.raises(DatasetError) as error:
        module.setup("fit")
    assert str(error.value).startswith(str(root / "train_LR"))


def test_lr_smaller_than_the_patch_is_named(nikon_root):
    module = _module(NikonDataModule, nikon_root, patch_size=48)  # the simulated LRs are 56×40
    with pytest.raises(DatasetError, match="smaller than the training patch of 48×48") as error:
        module.setup("fit")
    assert str(error.value).startswith(str(nikon_root / "train_LR" / "DSC_0001_x1.png"))


def test_built_from_a_lightningcli_style_config(tmp_path):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_subclass_arguments(ZoomDataModule, "data")
    config = parser.parse_object({"data": {
        "class_path": "datamodules.dualzoom.datamodule.CameraFusionDataModule",
        "init_args": {"root": str(tmp_path), "patch_size": 24, "simulate": {
            "layout": "camerafusion", "focal_ratio": 2.0, "parallax_px": [1.0, 2.0], "orientations": [1, 3]}},
    }})
    module = parser.instantiate(config).data
    assert isinstance(module, CameraFusionDataModule) and (module.zoom, module.patch_size) == (2, 24)
    assert module.simulate == DualZoomSimulation(
        layout="camerafusion", focal_ratio=2.0, parallax_px=(1.0, 2.0), orientations=(1, 3)
    )
