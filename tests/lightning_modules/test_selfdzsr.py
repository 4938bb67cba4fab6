"""SelfDZSRModule: the training step's gradient paths, test-time inference (whole, tiled, official tiling),
region metrics against an independent computation, checkpoints, and fit/validate/test/predict through the CLI."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import lightning_modules.selfdzsr as selfdzsr_module
from datamodules import NikonDataModule
from lightning_modules import SelfDZSRModule
from lightning_modules.callbacks import PerImageTestMetrics
from lightning_modules.checkpoints import (
    aux_lr_generator_state_to_official,
    feature_extractor_state_to_official,
    selfdzsr_net_state_to_official,
)
from lightning_modules.cli import cli_main
from lightning_modules.convert import main as convert_main
from ops import central_box, position_loss
from tests.conftest import CONFIGS, csv_logger_args, one_epoch_trainer_args
from tests.lightning_modules.test_ddp import run_lightning

pytestmark = pytest.mark.usefixtures("one_thread")


def small_module(**overrides) -> SelfDZSRModule:
    settings = dict(zoom=4, patch_size=16, channels=8, num_blocks=2, pretrained=False, seed=3) | overrides
    torch.manual_seed(0)
    return SelfDZSRModule(**settings)


@pytest.fixture(scope="module")
def nikon_data(nikon_root) -> NikonDataModule:
    data = NikonDataModule(str(nikon_root), patch_size=16, batch_size=2, num_workers=0, epoch_length=4, eval_crop=24)
    data.setup("fit")
    return data


def first_batch(loader):
    return next(iter(loader))


def test_training_step_keeps_the_two_losses_apart(nikon_data):
    """KernelGen learns from its own L1 + λ·position only; the SR losses reach the network and not KernelGen."""
    module = small_module(w_sw=0.08)
    module.setup("fit")
    module.log = module.log_dict = lambda *args, **kwargs: None
    batch = first_batch(nikon_data.train_dataloader())
    module.training_step(batch, 0).backward()
    kernelgen_grads = [p.grad.clone() for p in module.aux_lr_generator.parameters()]
    for part in ("head", "ref_head", "ref_extractor", "ref_ada", "deform_conv", "concat_fea", "predictor", "up", "tail"):
        grads = [p.grad for p in getattr(module.net, part).parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, part
    assert all(p.grad is None for p in module.feature_extractor.parameters())

    module.zero_grad()
    aux = module.aux_lr_generator(batch["hr"], batch["lr"])
    position = sum(position_loss(kernel, "paper") for kernel in module.aux_lr_generator.position_kernels())
    (F.l1_loss(aux, batch["lr"]) + 100.0 * position).backward()
    for expected, parameter in zip(kernelgen_grads, module.aux_lr_generator.parameters()):
        torch.testing.assert_close(parameter.grad, expected, rtol=1e-5, atol=1e-8)


def test_paste_and_dropout_draws_depend_on_seed_and_step(nikon_data):
    batch = first_batch(nikon_data.train_dataloader())
    module = small_module(paste_probability=0.5)
    module.setup("fit")
    module.log = module.log_dict = lambda *args, **kwargs: None
    first = module.training_step(batch, 0)
    again = module.training_step(batch, 0)
    assert torch.equal(first, again)  # same seed, same global step: the same draws


def test_super_resolve_tiled_equals_whole_and_checks_the_ref(nikon_data):
    module = small_module().eval()
    module.setup("test")
    batch = first_batch(nikon_data.test_dataloader())
    lr, ref = batch["lr"], batch["ref"]
    height, width = lr.shape[-2:]
    assert ref.shape[-2:] == tuple(4 * n for n in central_box(height, width, 4)[2:])
    with torch.no_grad():
        whole = module.super_resolve(lr, ref, tile=None)
        tiled = module.super_resolve(lr, ref, tile=16)
        official = module.super_resolve(lr, ref, tile="official")
        unpasted = module.super_resolve(lr, ref, tile=None, paste=False)
    assert whole.shape == (1, 3, 4 * height, 4 * width) == official.shape
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
    assert (official - whole).abs().mean() > 1e-4  # per-tile modulation and Ref windows: a different graph
    assert (unpasted - whole).abs().amax() > 1e-4
    with pytest.raises(ValueError, match="central 10×14 LR box"):
        module.super_resolve(lr, ref[..., :-4], tile=None)
    with pytest.raises(ValueError, match="tile must be"):
        module.super_resolve(lr, ref, tile=4)


def test_auto_tile_runs_whole_images_that_fit_in_free_memory(monkeypatch):
    """``tile: auto`` estimates the untiled peak (768 B per output pixel) against the device's free memory."""
    small, huge = torch.zeros(1).expand(1, 3, 64, 64), torch.zeros(1).expand(1, 3, 10**5, 10**5)  # no storage
    assert selfdzsr_module._fits_in_device_memory(small, 4) and not selfdzsr_module._fits_in_device_memory(huge, 4)
    pages = {"SC_PAGE_SIZE": 4096, "SC_AVPHYS_PAGES": 4 * 2**30 // 4096}  # 4 GiB free → untiled up to 4.2 Mpx out
    monkeypatch.setattr(selfdzsr_module.os, "sysconf", lambda name: pages[name])
    assert selfdzsr_module._fits_in_device_memory(torch.zeros(1).expand(1, 3, 256, 256), 4)
    assert not selfdzsr_module._fits_in_device_memory(torch.zeros(1).expand(1, 3, 1111, 687), 4)


def test_region_metrics_match_an_independent_computation(nikon_data):
    """val/psnr_bicubic_corner etc. equal PSNRs computed here from the images and the central box."""
    module = small_module().eval()
    module.setup("validate")
    logged: dict[str, float] = {}
    module.log_dict = lambda values, **kwargs: logged.update({k: v.compute() for k, v in values.items()})
    module.log = lambda *args, **kwargs: None
    batch = first_batch(nikon_data.test_dataloader())
    with torch.no_grad():
        outputs = module._evaluate(batch, "test", tile=None)
        sr = module.super_resolve(batch["lr"], batch["ref"], tile=None).clamp(0, 1)
    bicubic = F.interpolate(batch["lr"], scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    top, left, h, w = (4 * v for v in batch["ref_box"][0].tolist())
    inside = torch.zeros_like(batch["hr"][:, :1], dtype=torch.bool)
    inside[..., top : top + h, left : left + w] = True
    for method, image in (("", sr), ("_bicubic", bicubic)):
        error = (image - batch["hr"]) ** 2
        for region, mask in (("", torch.ones_like(inside)), ("_centre", inside), ("_corner", ~inside)):
            mse = error.masked_select(mask.expand_as(error)).mean()
            expected = 10 * math.log10(1 / float(mse))
            assert float(logged[f"test/psnr{method}{region}"]) == pytest.approx(expected, abs=1e-3)
            assert float(outputs["metrics"][f"psnr{method}{region}"][0]) == pytest.approx(expected, abs=1e-3)
    assert outputs["names"] == list(batch["name"])
    assert set(outputs["panels"]) == {"lr", "ref", "aux_lr", "output", "target"}


def test_checkpoint_leaves_out_the_rebuilt_helpers(nikon_data, tmp_path):
    module = small_module(w_sw=0.08)
    module.setup("fit")
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    keys = checkpoint["state_dict"]
    assert not any(k.startswith(("sw_loss.", "quality.lpips_net.")) for k in keys)
    assert any(k.startswith("feature_extractor.") for k in keys) and any(k.startswith("aux_lr_generator.") for k in keys)
    restored = small_module(w_sw=0.08, seed=4)
    restored.setup("fit")
    restored.on_load_checkpoint(checkpoint)
    restored.load_state_dict(checkpoint["state_dict"])
    for name, value in module.net.state_dict().items():
        assert torch.equal(restored.net.state_dict()[name], value)


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="multiple of the scale 4"):
        SelfDZSRModule(patch_size=30, pretrained=False)
    with pytest.raises(ValueError, match="paste_probability"):
        SelfDZSRModule(paste_probability=1.5, pretrained=False)
    with pytest.raises(ValueError, match="tile must be"):
        SelfDZSRModule(tile="huge", pretrained=False)


# ---------------------------------------------------------------------------------------------- the CLI


def tiny_args(root: Path, run_dir: Path) -> list[str]:
    """The paper config + demo overlay shrunk to seconds: 4 steps, CSV logger."""
    return [
        "--config", str(CONFIGS / "selfdzsr.yaml"),
        "--config", str(CONFIGS / "demo" / "selfdzsr.yaml"),
        "--data.init_args.root", str(root),
        "--data.init_args.simulate", "null",
        "--data.init_args.patch_size", "16",
        "--data.init_args.batch_size", "2",
        "--data.init_args.epoch_length", "8",
        "--data.init_args.eval_crop", "24",
        "--data.init_args.num_workers", "0",
        "--model.init_args.channels", "8",
        "--model.init_args.num_blocks", "2",
        *one_epoch_trainer_args(run_dir),
        *csv_logger_args(run_dir),
    ]


@pytest.fixture(scope="module")
def fitted(nikon_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("selfdzsr_run")
    cli = cli_main(["fit", *tiny_args(nikon_root, run_dir)])
    return cli, run_dir


def test_fit_logs_region_metrics_and_prints_them(fitted, capsys):
    cli, run_dir = fitted
    metrics = cli.trainer.callback_metrics
    cli._print_summary("val")
    printed = capsys.readouterr().out
    corner = next(line for line in printed.splitlines() if line.strip().startswith("psnr_corner"))
    assert f"{float(metrics['val/psnr_bicubic_corner']):8.4f}" in corner and "outside the centre box" in corner
    for method in ("", "_bicubic"):
        for region in ("", "_centre", "_corner"):
            for name in ("psnr", "ssim", "lpips_random_backbone"):
                assert math.isfinite(float(metrics[f"val/{name}{method}{region}"]))
    # the bicubic numbers do not depend on the model: recompute them from the validation crops
    data = cli.datamodule
    values = []
    for batch in data.val_dataloader():
        bicubic = F.interpolate(batch["lr"], scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
        values.append(10 * math.log10(1 / float(F.mse_loss(bicubic, batch["hr"]))))
    assert float(metrics["val/psnr_bicubic"]) == pytest.approx(np.mean(values), abs=1e-3)
    panels = sorted(run_dir.rglob("panels/val_epoch0_sample*.png"))
    assert len(panels) == 2  # the two test images' centre crops
    panel = np.asarray(Image.open(panels[0]))
    assert panel.shape == (96, 6 * 96, 3) and panel.std() > 10  # lr | ref | aux | sr | gt | error, not blank


def test_test_writes_one_row_per_image_and_predict_writes_whole_images(fitted, nikon_root, tmp_path):
    cli, run_dir = fitted
    checkpoint = next(run_dir.rglob("best-*.ckpt"))
    tested = cli_main(["test", *tiny_args(nikon_root, tmp_path), "--ckpt_path", str(checkpoint)])
    table = next(c for c in tested.trainer.callbacks if isinstance(c, PerImageTestMetrics))
    test_images = sorted(p.name for p in (nikon_root / "test_LR").glob("*.png"))
    assert len(test_images) == 2 and [row["image"] for row in table.rows] == test_images
    written = next(tmp_path.rglob("test_per_image.csv"))
    with open(written) as handle:
        rows = list(csv.DictReader(handle))
    mean_corner = np.mean([float(row["psnr_corner"]) for row in rows])
    assert mean_corner == pytest.approx(float(tested.trainer.callback_metrics["test/psnr_corner"]), abs=1e-3)
    assert {"psnr_bicubic_centre", "ssim_corner", "lpips_random_backbone_bicubic"} <= set(rows[0])

    cli_main(["predict", *tiny_args(nikon_root, tmp_path), "--ckpt_path", str(checkpoint)])
    out_dir = tmp_path / "predictions"  # PNGPredictionWriter's default: <default_root_dir>/predictions
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert pngs == [name.replace(".png", "_x4.png") for name in test_images]
    lr = Image.open(nikon_root / "test_LR" / test_images[0])
    assert Image.open(out_dir / pngs[0]).size == (4 * lr.size[0], 4 * lr.size[1])


def test_official_weight_files_load_in_setup(tmp_path):
    """Files in the official format (written by our converters) land in the network, KernelGen and features."""
    source = small_module(channels=64, num_blocks=16, seed=5)
    files = {
        "network_weights": (selfdzsr_net_state_to_official(source.net.state_dict(), 4), "RefSR_model_400.pth"),
        "aux_lr_generator_weights": (
            aux_lr_generator_state_to_official(source.aux_lr_generator.state_dict(), 4), "KernelGen_model_400.pth"
        ),
        "feature_extractor_weights": (
            feature_extractor_state_to_official(source.feature_extractor.state_dict()), "Student_model_400.pth"
        ),
    }
    paths = {}
    for argument, (state, name) in files.items():
        torch.save({"state_dict": state}, tmp_path / name)
        paths[argument] = str(tmp_path / name)
    torch.manual_seed(1)
    loaded = SelfDZSRModule(zoom=4, patch_size=16, pretrained=False, **paths)
    loaded.setup("test")
    for part in ("net", "aux_lr_generator", "feature_extractor"):
        expected = getattr(source, part).state_dict()
        for key, value in getattr(loaded, part).state_dict().items():
            assert torch.equal(value, expected[key]), (part, key)
    broken = SelfDZSRModule(zoom=2, patch_size=16, pretrained=False, network_weights=paths["network_weights"])
    with pytest.raises(ValueError, match="RefSR_model_400.pth"):
        broken.setup("test")


def test_convert_command_writes_a_checkpoint_that_lightning_test_uses(nikon_root, tmp_path, capsys):
    source = small_module(channels=64, num_blocks=16, seed=6)
    refsr, student = tmp_path / "RefSR_model_400.pth", tmp_path / "Student_model_400.pth"
    torch.save({"state_dict": selfdzsr_net_state_to_official(source.net.state_dict(), 4)}, refsr)
    torch.save({"state_dict": feature_extractor_state_to_official(source.feature_extractor.state_dict())}, student)
    out = tmp_path / "converted" / "selfdzsr_nikon.ckpt"
    convert_main(["selfdzsr", "--refsr", str(refsr), "--student", str(student), "--out", str(out)])
    assert "SelfDZSR ×4" in capsys.readouterr().out and not list(out.parent.glob(".*tmp*"))

    # the demo-sized arguments ask for 8 channels: the checkpoint's architecture (64, 16 blocks) wins
    tested = cli_main(["test", *tiny_args(nikon_root, tmp_path), "--ckpt_path", str(out)])
    for key, value in tested.model.net.state_dict().items():
        assert torch.equal(value, source.net.state_dict()[key]), key
    for key, value in tested.model.feature_extractor.state_dict().items():
        assert torch.equal(value, source.feature_extractor.state_dict()[key]), key
    assert math.isfinite(float(tested.trainer.callback_metrics["test/psnr_corner"]))

    with pytest.raises(ValueError, match="not an official RefSR file"):
        convert_main(["selfdzsr", "--refsr", str(student), "--out", str(tmp_path / "bad.ckpt")])
    assert not (tmp_path / "bad.ckpt").exists()


def test_ddp_test_writes_each_image_once_with_the_single_process_values(fitted, nikon_root, tmp_path):
    """2 gloo processes each test one image; rank 0 writes both rows, equal to a one-process test."""
    _, run_dir = fitted
    checkpoint = str(next(run_dir.rglob("best-*.ckpt")))
    single = cli_main(["test", *tiny_args(nikon_root, tmp_path / "single"), "--ckpt_path", checkpoint])
    expected = next(c for c in single.trainer.callbacks if isinstance(c, PerImageTestMetrics)).rows
    ddp_dir = tmp_path / "ddp"
    args = tiny_args(nikon_root, ddp_dir) + ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--ckpt_path", checkpoint]
    run_lightning(["test", *args], ddp_dir)
    with open(next(ddp_dir.rglob("test_per_image.csv"))) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["image"] for row in rows] == [row["image"] for row in expected]
    for row, reference in zip(rows, expected):
        for name in ("psnr", "psnr_corner", "psnr_bicubic_centre", "ssim_corner"):
            assert float(row[name]) == pytest.approx(reference[name], abs=1e-4)
