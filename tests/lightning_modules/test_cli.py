"""The `lightning` CLI: every config instantiates without I/O; fit/validate/test/predict run end to end."""

from __future__ import annotations

import glob
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from datamodules import SRRAWDataModule, ZRRDataModule
from datamodules.dualzoom import DualZoomDataModule
from lightning_modules import RawToSRGBJointModule, SelfDZSRModule, ZoomLearnModule
from lightning_modules.callbacks import ImagePanelLogger
from lightning_modules.cli import cli_main
from lightning_modules.networks import LiteISPNet, ZoomLearnNet
from tests.conftest import CONFIGS, tiny_run_args

EXPERIMENTS = sorted(CONFIGS.glob("*.yaml"))
OVERLAYS = [
    ("zoomlearn_4x.yaml", "demo/zoomlearn.yaml"),
    ("zoomlearn_4x.yaml", "logger/wandb.yaml"),
    ("zoomlearn_4x.yaml", "trainer/ddp.yaml"),
    ("selfdzsr.yaml", "demo/selfdzsr.yaml"),
    ("selfdzsr.yaml", "logger/wandb.yaml"),
    ("rawtosrgb_zrr.yaml", "demo/rawtosrgb.yaml"),
    ("rawtosrgb_zrr.yaml", "logger/wandb.yaml"),
]


def instantiate(*configs: Path, extra: list[str] | None = None):
    args: list[str] = []  # run=False: no subcommand
    for config in configs:
        args += ["--config", str(config)]
    return cli_main(args + (extra or []), run=False)


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_config_instantiates_without_io(config, tmp_path):
    missing_root = tmp_path / "no-such-dataset"
    cli = instantiate(config, extra=["--data.init_args.root", str(missing_root)])
    data, model = cli.datamodule, cli.model
    if config.name.startswith("zoomlearn"):
        assert isinstance(model, ZoomLearnModule) and isinstance(data, SRRAWDataModule)
        assert model.vgg is None and model.in_channels == model.net.in_channels
    elif config.name.startswith("rawtosrgb"):
        assert isinstance(model, RawToSRGBJointModule) and model.perceptual is None
        if config.name.startswith("rawtosrgb_zrr"):
            assert isinstance(data, ZRRDataModule) and isinstance(model.net, LiteISPNet)
        else:
            assert isinstance(data, SRRAWDataModule) and isinstance(model.net, ZoomLearnNet)
    else:
        assert isinstance(model, SelfDZSRModule) and isinstance(data, DualZoomDataModule)
        assert model.sw_loss is None and model.net.scale == data.zoom
    # linked, never repeated
    assert model.zoom == data.zoom and model.patch_size == data.patch_size
    assert model.in_channels == data.in_channels
    assert model.quality.lpips_net is None  # no weights read
    assert not missing_root.exists()  # no data read or written


def test_paper_configs_state_the_paper_settings():
    settings = {p.name: yaml.safe_load(p.read_text()) for p in EXPERIMENTS}
    for name, expected_zoom, expected_n, expected_input in [
        ("zoomlearn_4x.yaml", 4, 10, "raw"),
        ("zoomlearn_8x.yaml", 8, 15, "raw"),
        ("zoomlearn_4x_png.yaml", 4, 10, "png"),
        ("zoomlearn_4x_synraw.yaml", 4, 10, "synthetic_raw"),
    ]:
        model, data = settings[name]["model"]["init_args"], settings[name]["data"]["init_args"]
        assert data["zoom"] == expected_zoom and data["input"] == expected_input and data["patch_size"] == 64
        assert model["rgb_patch_size"] == expected_n and model["vgg_layers"] == {"conv1_2": 1.0, "conv2_2": 1.0, "conv3_2": 0.5}
        assert model["lr"] == 1e-4 and model["lr_decay"] == 0.05 and model["lr_decay_steps"] == 20000
    for name, zoom, dropout, w_sw in [
        ("selfdzsr.yaml", 4, 0.3, 0.08),
        ("selfdzsr_l1.yaml", 4, 0.3, 0.0),
        ("selfdzsr_camerafusion.yaml", 2, 0.45, 0.08),
    ]:
        config = settings[name]
        model, data = config["model"]["init_args"], config["data"]["init_args"]
        assert data["zoom"] == zoom and data["patch_size"] == 48 and data["batch_size"] == 16
        assert data["epoch_length"] == 16000 and config["trainer"]["max_epochs"] == 400  # 1000 iterations × 400
        assert model["adastn_dropout"] == dropout and model["paste_probability"] == 0.3 and model["w_sw"] == w_sw
        assert model["lr"] == 1e-4 and model["aux_lr_ratio"] == 0.5 and model["lr_step_epochs"] == 200
        assert model["position_weight"] == 100.0
    for name, gan in (("rawtosrgb_zrr.yaml", 0.0), ("rawtosrgb_zrr_gan.yaml", 0.01)):
        config = settings[name]
        model, data = config["model"]["init_args"], config["data"]["init_args"]
        assert model["net"] == {"class_path": "lightning_modules.networks.LiteISPNet", "init_args": {"num_blocks": 4, "coord": True}}
        assert data["patch_size"] == 224 and data["batch_size"] == 16 and config["trainer"]["max_epochs"] == 100
        assert model["lr"] == 1e-4 and model["lr_step_epochs"] == 50 and model["gan_weight"] == gan and model["flow"] == "pwcnet"
        assert (model["w_gcm"], model["w_l1"], model["w_vgg"], model["w_ssim"]) == (1.0, 1.0, 1.0, 0.0)
    for stage, (scale, lr, new) in {
        "x1": (1, 1e-4, None), "x2": (2, 1e-4, ["net.upsample.3.", "net.upsample.4.", "net.upsample.5."]),
        "x4": (4, 5e-5, ["net.upsample.6.", "net.upsample.7.", "net.upsample.8."]),
    }.items():
        config = settings[f"rawtosrgb_srraw_{stage}.yaml"]
        model, data = config["model"]["init_args"], config["data"]["init_args"]
        assert model["net"]["init_args"] == {"zoom": scale, "norm": "instance_affine", "deconv_padding": "torch", "init": "torch"}
        assert data["zoom"] == 4 and data["patch_size"] == 64 and data["target_margin"] == 0 and data["batch_size"] == 16
        assert model["lr"] == lr and model["lr_step_epochs"] == 50 and config["trainer"]["max_epochs"] == 100
        assert model["white_balance"] == "input" and model["init_new_keys"] == new


@pytest.mark.parametrize("paper, overlay", OVERLAYS)
def test_overlays_compose_with_the_paper_config(paper, overlay, tmp_path):
    extra = ["--data.init_args.root", str(tmp_path / "data")]
    if overlay == "trainer/ddp.yaml":  # no GPU here: same overlay, CPU processes
        extra += ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.sync_batchnorm", "false"]
    cli = instantiate(CONFIGS / paper, CONFIGS / overlay, extra=extra)
    if overlay.startswith("demo/"):
        assert cli.model.hparams.pretrained is False and cli.datamodule.simulate is not None
        sizes = {"zoomlearn_4x.yaml": 16, "selfdzsr.yaml": 32, "rawtosrgb_zrr.yaml": 48}
        assert cli.datamodule.patch_size == cli.model.patch_size == sizes[paper]
    if overlay == "trainer/ddp.yaml":
        assert type(cli.trainer.strategy).__name__ == "DDPStrategy" and cli.trainer.num_devices == 2
    if overlay == "logger/wandb.yaml":
        assert type(cli.trainer.logger).__name__ == "WandbLogger"


def test_png_input_links_twelve_channels(tmp_path):
    cli = instantiate(CONFIGS / "zoomlearn_4x_png.yaml", extra=["--data.init_args.root", str(tmp_path)])
    assert cli.model.net.in_channels == 12


@pytest.fixture(scope="module")
def fitted_run(srraw_root, tmp_path_factory):
    """One tiny fit through the real configs (W&B offline); shared by the checks below."""
    run_dir = tmp_path_factory.mktemp("run")
    cli = cli_main(["fit", *tiny_run_args(srraw_root, run_dir)])
    return cli, run_dir


def test_fit_logs_metrics_config_and_panels_to_an_offline_wandb_run(fitted_run, srraw_root):
    cli, run_dir = fitted_run
    metrics = cli.trainer.callback_metrics
    for name in ("val/psnr", "val/psnr_aligned", "val/psnr_bicubic", "val/ssim", "val/lpips_random_backbone", "train/loss"):
        assert name in metrics and math.isfinite(float(metrics[name])), name
    assert "val/lpips" not in metrics  # a random backbone never reports under the real name
    assert set(cli.model.metric_goals()) <= set(metrics)  # the W&B summaries name metrics that exist
    assert 0 < float(metrics["val/cobi_unique_match"]) <= 1
    assert float(metrics["val/psnr_aligned"]) >= float(metrics["val/psnr"]) - 1e-4  # alignment can only help
    runs = glob.glob(str(run_dir / "wandb" / "offline-run-*"))
    assert len(runs) == 1
    files = Path(runs[0]) / "files"
    saved = yaml.safe_load((files / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "lightning_modules.ZoomLearnModule"
    assert saved["data"]["init_args"]["root"] == str(srraw_root)
    # the PNGs W&B stores are the composed panels, pixel for pixel, and they show images (not black)
    panels = sorted(glob.glob(str(files / "media" / "images" / "val" / "panels_*.png")))
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, ImagePanelLogger))
    assert len(panels) == len(callback.last_panels) >= 2  # one per validation sample, up to num_samples
    for path in panels:
        logged = np.asarray(Image.open(path).convert("RGB"))
        assert logged.shape[1] == 4 * logged.shape[0]  # input | output | target | |error|
        assert any(np.array_equal(logged, panel) for panel in callback.last_panels)
        width = logged.shape[1] // 4
        for tile in range(3):  # input, output and target tiles carry the scene
            pixels = logged[:, tile * width : (tile + 1) * width].astype(float)
            assert 20 < pixels.mean() < 235 and pixels.std() > 5, (path, tile)
    assert list(Path(runs[0]).glob("*.wandb"))


def test_second_run_into_the_same_folder_does_not_abort(fitted_run, srraw_root):
    _, run_dir = fitted_run
    cli = cli_main(["fit", *tiny_run_args(srraw_root, run_dir), "--trainer.limit_train_batches", "1"])
    assert cli.trainer.state.finished
    assert len(glob.glob(str(run_dir / "wandb" / "offline-run-*" / "files" / "config.yaml"))) == 2


def test_validate_test_predict_from_the_checkpoint(fitted_run, srraw_root, tmp_path):
    cli, run_dir = fitted_run
    checkpoint = cli.trainer.checkpoint_callback.last_model_path
    assert Path(checkpoint).is_file()
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert not any("vgg" in k or "lpips" in k for k in state)  # frozen helpers are not stored
    args = tiny_run_args(srraw_root, tmp_path, logger="csv")
    validated = cli_main(["validate", *args, "--ckpt_path", checkpoint])
    assert math.isfinite(float(validated.trainer.callback_metrics["val/psnr"]))
    # without W&B the panels are PNG files in the run's folder
    callback = next(c for c in validated.trainer.callbacks if isinstance(c, ImagePanelLogger))
    written = sorted(Path(validated.trainer.logger.log_dir, "panels").glob("val_epoch0_sample*.png"))
    assert len(written) == len(callback.last_panels) >= 2
    for path, panel in zip(written, callback.last_panels):
        assert np.array_equal(np.asarray(Image.open(path)), panel)
    tested = cli_main(["test", *args, "--ckpt_path", checkpoint])
    assert math.isfinite(float(tested.trainer.callback_metrics["test/ssim"]))
    predicted = cli_main(
        ["predict", *args, "--ckpt_path", checkpoint, "--model.init_args.predict_tile", "16", "--model.init_args.predict_overlap", "4"]
    )
    out_dir = tmp_path / "predictions"  # PNGPredictionWriter's default: <default_root_dir>/predictions
    pngs = sorted(out_dir.glob("*.png"))
    assert pngs and not list(out_dir.glob(".*tmp*"))
    dataset = predicted.datamodule.predict_dataloader().dataset
    sample = dataset[0]
    expected = (sample["input"].shape[-2] * 8, sample["input"].shape[-1] * 8)
    image = np.asarray(Image.open(out_dir / f"{sample['scene']}_{sample['input_name']}_x4.png"))
    assert image.shape == (*expected, 3) and image.std() > 1.0
