"""RawToSRGBJointModule: the losses against direct computations, the training graph (GCM → flow → warped target
→ masked losses) with a known flow, the three evaluation protocols against an independent computation, the GAN
variant's two optimizers, the SR-RAW curriculum's stage loading, the convert command, and fit / validate / test /
predict through the real configs on simulated ZRR and SR-RAW data."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from datamodules import SRRAWDataModule, ZRRDataModule
from datamodules.simulate.zrr import simulate_zrr
from datamodules.simulate.zrr_config import ZRRSimulation
from lightning_modules import RawToSRGBJointModule
from lightning_modules.callbacks import ImagePanelLogger, PerImageTestMetrics
from lightning_modules.checkpoints import gcm_state_to_official, liteispnet_state_to_official
from lightning_modules.cli import cli_main
from lightning_modules.convert import main as convert_main
from lightning_modules.evaluation import psnr_per_image
from lightning_modules.networks import RAW_TO_SRGB_BACKBONE, GlobalColorMapping, LiteISPNet, ZoomLearnNet
from lightning_modules.raw_to_srgb import CurriculumError, gradient_energy_ratio
from lightning_modules.raw_to_srgb_losses import (
    PerceptualLoss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    masked_l1,
    ssim_loss,
)
from ops import VGG19Features, backward_warp
from ops.flow import FlowEstimator
from tests.conftest import CONFIGS, csv_logger_args, one_epoch_trainer_args, single_torch_thread

pytestmark = pytest.mark.usefixtures("one_thread")

#: 4 train (1 held out for validation) + 2 test pairs of 64² (32² packed), a 1–3 px misalignment.
TINY = ZRRSimulation(train_images=4, test_images=2, size=64, seed=5)


@pytest.fixture(scope="module")
def zrr_root(tmp_path_factory) -> Path:
    with single_torch_thread():
        return simulate_zrr(tmp_path_factory.mktemp("zrr") / "data", TINY, progress=False)


@pytest.fixture(scope="module")
def zrr_data(zrr_root) -> ZRRDataModule:
    data = ZRRDataModule(str(zrr_root), raw_size=64, patch_size=16, batch_size=2, num_workers=0)
    data.setup("fit")
    data.setup("test")
    return data


class ScriptedFlow(FlowEstimator):
    """A flow 'estimator' returning constant flows (u, v), one per call in turn, and recording its inputs."""

    channels = (3,)
    differentiable = False

    def __init__(self, *flows: tuple[float, float]) -> None:
        super().__init__(frozen=True)
        self.flows = flows
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def estimate(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        u, v = self.flows[len(self.calls) % len(self.flows)]
        self.calls.append((first.clone(), second.clone()))
        flow = first.new_zeros(first.shape[0], 2, *first.shape[-2:])
        flow[:, 0], flow[:, 1] = u, v
        return flow


def small_module(**overrides) -> RawToSRGBJointModule:
    torch.manual_seed(0)
    settings = dict(net=LiteISPNet(num_blocks=1), flow="classical", pretrained=False, w_vgg=0.0, patch_size=16) | overrides
    module = RawToSRGBJointModule(**settings)
    module.log = module.log_dict = lambda *args, **kwargs: None
    return module


def shifted(image: torch.Tensor, u: float, v: float) -> tuple[torch.Tensor, torch.Tensor]:
    flow = torch.zeros(image.shape[0], 2, *image.shape[-2:])
    flow[:, 0], flow[:, 1] = u, v
    return backward_warp(image, flow)


# ---------------------------------------------------------------------------------------------- losses


def test_masked_l1_normalises_by_the_mask_area_or_by_all_pixels():
    image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]).expand(1, 3, 2, 2)
    target = torch.zeros(1, 3, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    assert float(masked_l1(image, target, mask)) == pytest.approx((1 + 3) / 2)
    assert float(masked_l1(image, target, mask, "official")) == pytest.approx((1 + 3) / 4)
    assert float(masked_l1(image, target, torch.zeros_like(mask))) == 0.0  # nothing valid: no loss, no NaN
    with pytest.raises(ValueError, match="mask"):
        masked_l1(image, target, mask[..., :1])
    with pytest.raises(ValueError, match="reduction"):
        masked_l1(image, target, mask, "sum")


def test_ssim_loss_matches_a_naive_windowed_computation():
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(1, 2, 9, 9, generator=generator, dtype=torch.float64)
    y = (x + 0.2 * torch.rand(1, 2, 9, 9, generator=generator, dtype=torch.float64)).clamp(0, 1)
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    window = torch.outer(g, g) / g.sum() ** 2
    xp, yp = F.pad(x, (5, 5, 5, 5)), F.pad(y, (5, 5, 5, 5))
    values = []
    for c in range(2):
        for i in range(9):
            for j in range(9):
                a, b = xp[0, c, i : i + 11, j : j + 11], yp[0, c, i : i + 11, j : j + 11]
                mx, my = (window * a).sum(), (window * b).sum()
                vx, vy = (window * a * a).sum() - mx**2, (window * b * b).sum() - my**2
                cov = (window * a * b).sum() - mx * my
                values.append(((2 * mx * my + 1e-4) * (2 * cov + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4)))
    assert float(ssim_loss(x, y)) == pytest.approx(1 - float(torch.stack(values).mean()), abs=1e-12)
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-12)


def test_perceptual_loss_variants_match_direct_vgg_features():
    torch.manual_seed(2)
    layers = {"conv1_2": 1.0, "conv2_2": 0.5}
    loss = PerceptualLoss(layers, "paper")
    vgg = VGG19Features(layers=tuple(layers))
    vgg.load_state_dict(loss.vgg.state_dict())
    image, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    mask = torch.ones(2, 1, 16, 16)
    mask[0, :, :5, :] = 0  # rows 0–4 invalid: at stride 2, feature rows 0–2 touch them
    target = target * mask
    features, target_features = vgg(image * mask), vgg(target)
    d1 = (features["conv1_2"] - target_features["conv1_2"]).abs()
    d2 = (features["conv2_2"] - target_features["conv2_2"]).abs()
    m2 = torch.ones(2, 1, 8, 8)
    m2[0, :, :3, :] = 0
    expected = (d1 * mask).sum() / (64 * mask.sum()) + 0.5 * (d2 * m2).sum() / (128 * m2.sum())
    assert float(loss(image, target, mask)) == pytest.approx(float(expected), rel=1e-5)
    official = PerceptualLoss(layers, "official")
    official.vgg.load_state_dict(loss.vgg.state_dict())
    half = lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)  # noqa: E731
    features, target_features = vgg(half(image * mask)), vgg(half(target))
    expected = sum(w * (features[n] - target_features[n]).abs().mean() for n, w in layers.items())
    assert float(official(image, target, mask)) == pytest.approx(float(expected), rel=1e-5)
    # gradients reach the image only; the loss network stays frozen and in eval mode
    image.requires_grad_(True)
    loss.train()(image, target, mask).backward()
    assert image.grad.abs().sum() > 0 and not loss.vgg.training
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())


def test_lsgan_losses_paper_and_official_forms():
    fake, real = torch.full((1, 1, 2, 2), 0.5), torch.full((1, 1, 2, 2), 0.75)
    assert float(lsgan_generator_loss(fake)) == pytest.approx(0.5 * 0.25)
    assert float(lsgan_generator_loss(fake, "official")) == pytest.approx(0.25)
    assert float(lsgan_discriminator_loss(real, fake)) == pytest.approx(0.5 * (0.0625 + 0.25))


def test_gradient_energy_ratio():
    image = torch.zeros(1, 1, 3, 4)
    image[..., 2:] = 1.0  # one vertical edge of height 1 per row
    assert float(gradient_energy_ratio(image, image)) == pytest.approx(1.0)
    blurred = image.clone()
    blurred[..., 1], blurred[..., 2] = 1 / 3, 2 / 3  # the same step over three pixels
    assert float(gradient_energy_ratio(blurred, image)) == pytest.approx(3 * (1 / 9) / 1)
    mask = torch.ones(1, 1, 3, 4)
    mask[..., 2] = 0  # every difference touching column 2 leaves out: no edge left in the reference
    assert float(gradient_energy_ratio(image, image.flip(-1), mask)) == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------- module


def test_configured_modules_hold_the_official_networks_and_a_frozen_flow(tmp_path):
    missing = ["--data.init_args.root", str(tmp_path / "none")]
    model = cli_main(["--config", str(CONFIGS / "rawtosrgb_zrr_gan.yaml"), *missing], run=False).model
    count = lambda net: sum(p.numel() for p in net.parameters() if p.requires_grad)  # noqa: E731
    assert isinstance(model.net, LiteISPNet) and count(model.net) == 9_039_623
    assert count(model.gcm) == 46_243 and count(model.discriminator) == 2_765_633
    assert sum(p.numel() for p in model.flow.parameters()) == 9_374_274 and count(model.flow) == 0
    assert not model.automatic_optimization
    generator, discriminator = model.configure_optimizers()[0]
    optimized = {id(p) for group in generator.param_groups + discriminator.param_groups for p in group["params"]}
    assert optimized == {id(p) for part in (model.net, model.gcm, model.discriminator) for p in part.parameters()}
    model.train()
    assert not model.flow.training and model.net.training
    plain = cli_main(["--config", str(CONFIGS / "rawtosrgb_zrr.yaml"), *missing], run=False).model
    assert plain.discriminator is None and plain.automatic_optimization


def test_training_terms_are_the_masked_losses_against_the_warped_target(zrr_data):
    module = small_module(w_ssim=0.15)
    module.flow = ScriptedFlow((1.5, -1.0))
    module.setup("fit")
    batch = next(iter(zrr_data.train_dataloader()))
    terms, out, warped, mask = module.training_terms(batch)
    with torch.no_grad():
        gcm_out = module.gcm(batch["raw_rgb"], batch["target"], batch["coord"])
    (first, second), = module.flow.calls  # one flow per step: GCM output (clamped) → target
    torch.testing.assert_close(first, gcm_out.clamp(0, 1))
    torch.testing.assert_close(second, batch["target"])
    expected_warped, expected_mask = shifted(batch["target"], 1.5, -1.0)
    assert torch.equal(warped, expected_warped) and torch.equal(mask, expected_mask)
    assert 0.8 < float(mask.mean()) < 1.0  # a 1.5 px flow loses the border columns and rows
    m = expected_mask
    torch.testing.assert_close(terms["l1"], ((out - warped).abs() * m).sum() / (3 * m.sum()))
    torch.testing.assert_close(terms["gcm"], ((gcm_out - warped).abs() * m).sum() / (3 * m.sum()), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["ssim"], ssim_loss(out * m, warped))
    torch.testing.assert_close(terms["loss"], terms["gcm"] + terms["l1"] + 0.15 * terms["ssim"])

    official = small_module(loss_reduction="official")
    official.flow = ScriptedFlow((1.5, -1.0))
    terms, out, warped, _ = official.training_terms(batch)
    torch.testing.assert_close(terms["l1"], (out * m - warped).abs().mean())

    unaligned = small_module(align_target=False)
    unaligned.flow = ScriptedFlow((1.5, -1.0))
    terms, out, warped, mask = unaligned.training_terms(batch)
    assert not unaligned.flow.calls and torch.equal(warped, batch["target"]) and bool((mask == 1).all())
    torch.testing.assert_close(terms["l1"], (out - batch["target"]).abs().mean())


def test_gradients_reach_the_isp_network_and_gcm_only(zrr_data):
    module = small_module(w_vgg=1.0, vgg_layers={"conv1_2": 1.0})
    module.setup("fit")
    batch = next(iter(zrr_data.train_dataloader()))
    module.training_step(batch, 0).backward()
    for part in (module.net, module.gcm):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in module.perceptual.parameters())
    # the GCM term alone reaches GCM only, the ISP terms the network only (no shared gradient path)
    module.zero_grad()
    terms, *_ = module.training_terms(batch)
    terms["gcm"].backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in module.net.parameters())


def test_evaluation_protocols_match_an_independent_computation(zrr_data):
    batch = next(iter(zrr_data.test_dataloader()))
    target = batch["target"]
    for metric_mask, uint8 in (("region", False), ("official", True)):
        module = small_module(metric_mask=metric_mask, metric_uint8=uint8).eval()
        module.flow = ScriptedFlow((1.0, 0.0), (0.0, 2.0))  # GCM output → target, then output → target
        module.setup("test")
        with torch.no_grad():
            outputs = module.evaluate(batch, "test")
            out = module.net(batch["raw"]).clamp(0, 1)
            gcm_out = module.gcm(batch["raw_rgb"], target, batch["coord"])
        q = (lambda x: (x * 255).round() / 255) if uint8 else (lambda x: x)  # noqa: E731
        by_raw, mask_raw = shifted(target, 1.0, 0.0)
        by_result, mask_result = shifted(target, 0.0, 2.0)
        if metric_mask == "region":
            expected = {
                "": psnr_per_image(out, target),
                "_align_raw": psnr_per_image(out, by_raw, mask_raw),
                "_align_result": psnr_per_image(out, by_result, mask_result),
                "_gcm_align_raw": psnr_per_image(gcm_out.clamp(0, 1), by_raw, mask_raw),
            }
            mse = ((out - by_raw) ** 2 * mask_raw).sum() / (3 * mask_raw.sum())
            assert float(expected["_align_raw"]) == pytest.approx(-10 * math.log10(float(mse)), abs=1e-4)
        else:  # m·ŷ against y^w over the whole image, both rounded to 8 bits
            expected = {
                "": psnr_per_image(q(out), q(target)),
                "_align_raw": psnr_per_image(q(out) * mask_raw, q(by_raw)),
                "_align_result": psnr_per_image(q(out) * mask_result, q(by_result)),
            }
        for suffix, value in expected.items():
            assert float(outputs["metrics"][f"psnr{suffix}"][0]) == pytest.approx(float(value[0]), abs=1e-4), (metric_mask, suffix)
        assert outputs["metrics"]["isp_time_ms"][0] > 0 and outputs["names"] == list(batch["name"])
        ratio = gradient_energy_ratio(q(out), q(by_result), mask_result)
        assert float(outputs["metrics"]["gradient_energy_align_result"][0]) == pytest.approx(float(ratio[0]), rel=1e-5)
    panels = outputs["panels"]
    assert list(panels) == ["raw", "gcm", "output", "target", "mask"]
    assert all(p.shape == target.shape for p in panels.values())
    assert torch.equal(panels["target"], by_raw) and torch.equal(panels["mask"][:, :1], mask_raw)


def test_gan_variant_steps_both_optimizers(zrr_data, tmp_path):
    import lightning

    module = small_module(gan_weight=0.01)
    del module.log, module.log_dict  # the Trainer logs
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    trainer = lightning.Trainer(
        accelerator="cpu", max_steps=4, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=zrr_data)
    assert trainer.global_step == 4  # two training steps of two optimizer steps each (D, then I + GCM)
    for part in ("net.", "gcm.", "discriminator."):
        changed = [not torch.equal(p, before[n]) for n, p in module.named_parameters() if n.startswith(part)]
        assert any(changed), part
    metrics = trainer.callback_metrics
    for name in ("train/gan", "train/discriminator", "train/l1", "train/gcm"):
        assert math.isfinite(float(metrics[name])), name
    schedule_g, schedule_d = module.lr_schedulers()
    assert schedule_g.last_epoch == schedule_d.last_epoch >= 1  # stepped once per finished epoch (one batch each)


def srresnet(zoom: int) -> ZoomLearnNet:
    return ZoomLearnNet(zoom=zoom, width=8, num_blocks=1, up_width=8, **RAW_TO_SRGB_BACKBONE)


def test_curriculum_stage_loading_asserts_exactly_the_new_keys(tmp_path):
    torch.manual_seed(3)
    x1 = RawToSRGBJointModule(zoom=4, net=srresnet(1), flow="classical", pretrained=False, w_vgg=0.0)
    path = tmp_path / "x1.ckpt"
    checkpoint = {"state_dict": x1.state_dict()}
    x1.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    new = ["net.upsample.3.", "net.upsample.4.", "net.upsample.5."]
    x2 = RawToSRGBJointModule(
        zoom=4, net=srresnet(2), flow="classical", pretrained=False, w_vgg=0.0, init_checkpoint=str(path), init_new_keys=new
    )
    fresh = {k: v.clone() for k, v in x2.state_dict().items()}
    x2.setup("fit")
    for key, value in x2.state_dict().items():
        if key.startswith(tuple(new)):
            assert torch.equal(value, fresh[key]), key  # the new stage keeps its random start
        elif key.startswith(("net.", "gcm.")):
            assert torch.equal(value, x1.state_dict()[key]), key
    with pytest.raises(CurriculumError, match=r"missing from the checkpoint: \['net.upsample.5.weight'\]"):
        x2.load_previous_stage(path, new[:2])
    with pytest.raises(CurriculumError, match="stated as new but present"):
        x1.load_previous_stage(path, ["net.upsample.0."])
    x4 = RawToSRGBJointModule(zoom=4, net=srresnet(4), flow="classical", pretrained=False, w_vgg=0.0)
    with pytest.raises(CurriculumError, match="net.upsample.6.weight"):
        x4.load_previous_stage(path, ["net.upsample.3.", "net.upsample.4.", "net.upsample.5."])
    with pytest.raises(FileNotFoundError, match="train that stage first"):
        x2.load_previous_stage(tmp_path / "missing.ckpt", new)


def test_srraw_batches_with_a_smaller_network_output_and_white_balance():
    """SR-RAW keys, a ×1 stage network (output 2× the packed raw) and a 4× target: the targets are resized for the
    losses, the output upsampled for the metrics, and the white balance multiplies ŷ and ỹ by wb^(1/2.2)."""
    torch.manual_seed(4)
    module = small_module(zoom=4, net=srresnet(1), white_balance="input", result_flow_scale=0.5)
    module.flow = ScriptedFlow((0.0, 0.0))
    module.setup("test")
    packed = torch.rand(1, 4, 24, 24)  # demosaic 48² (LPIPS-alex needs ≥ 48²), target 192²
    batch = {"input": packed, "target": torch.rand(1, 3, 192, 192), "wb_input": torch.tensor([[2.0, 1.0, 1.5]]),
             "scene": ["00001"], "input_name": ["00006"]}
    terms, out, warped, mask = module.training_terms(batch)
    with torch.no_grad():
        expected = module.net(packed) * torch.tensor([2.0, 1.0, 1.5]).pow(1 / 2.2).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)
    assert out.shape[-1] == warped.shape[-1] == 48 and bool((mask == 1).all())
    torch.testing.assert_close(warped, F.interpolate(batch["target"], size=(48, 48), mode="bilinear", align_corners=True))
    first, second = module.flow.calls[0]
    assert first.shape[-1] == 48 and second.shape[-1] == 48  # flow at the demosaic's size, then upsampled
    with torch.no_grad():
        outputs = module.evaluate(batch, "val")
    assert outputs["panels"]["output"].shape[-1] == 192 and outputs["names"] == ["00001_00006"]
    assert module.flow.calls[-1][0].shape[-1] == 96  # "Align GT with result" at half the output size
    with pytest.raises(ValueError, match="target_margin"):
        module.training_terms({**batch, "target": torch.rand(1, 3, 200, 200)})


def test_invalid_settings_and_batches_are_refused(zrr_data):
    with pytest.raises(ValueError, match="in_channels 4"):
        RawToSRGBJointModule(in_channels=3, flow="classical", pretrained=False)
    with pytest.raises(ValueError, match="takes no weights"):
        RawToSRGBJointModule(flow="classical", flow_weights="pwc.pth", pretrained=False)
    with pytest.raises(ValueError, match="loss_reduction"):
        RawToSRGBJointModule(flow="classical", loss_reduction="sum", pretrained=False)
    with pytest.raises(ValueError, match="give init_checkpoint"):
        RawToSRGBJointModule(flow="classical", init_new_keys=["net.upsample.3."], pretrained=False)
    module = small_module()
    with pytest.raises(ValueError, match="expected a ZRR batch"):
        module.training_terms({"lr": torch.zeros(1, 3, 8, 8)})
    with pytest.raises(ValueError, match="wb_input"):
        small_module(white_balance="input").training_terms(next(iter(zrr_data.train_dataloader())))
    broken = small_module(flow="pwcnet", flow_weights="no/such/pwc-net.pth")
    with pytest.raises(FileNotFoundError, match="pwc-net.pth"):
        broken.setup("test")


# ---------------------------------------------------------------------------------------------- the CLI


def tiny_args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    """The ZRR paper config + demo overlay shrunk to seconds: one step, CSV logger."""
    return [
        "--config", str(CONFIGS / "rawtosrgb_zrr.yaml"),
        "--config", str(CONFIGS / "demo" / "rawtosrgb.yaml"),
        "--data.init_args.root", str(root),
        "--data.init_args.simulate", "null",
        "--data.init_args.raw_size", "64",
        "--data.init_args.patch_size", "16",
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--trainer.check_val_every_n_epoch", "1",
        *one_epoch_trainer_args(run_dir),
        *csv_logger_args(run_dir),
        *extra,
    ]


@pytest.fixture(scope="module")
def fitted(zrr_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rawtosrgb_run")
    return cli_main(["fit", *tiny_args(zrr_root, run_dir)]), run_dir


def test_fit_logs_the_three_protocols_panels_and_prints_them(fitted, capsys):
    cli, run_dir = fitted
    metrics = cli.trainer.callback_metrics
    for suffix in ("", "_align_raw", "_align_result", "_gcm_align_raw"):
        for name in ("psnr", "ssim", "lpips_random_backbone"):
            assert math.isfinite(float(metrics[f"val/{name}{suffix}"])), (name, suffix)
    assert math.isfinite(float(metrics["train/l1"])) and 0 < float(metrics["train/mask_fraction"]) <= 1
    cli._print_summary("val")
    printed = capsys.readouterr().out
    for key, words in (
        ("psnr", "Original GT"),
        ("psnr_align_raw", "Align GT with raw"),
        ("psnr_align_result", "Align GT with result"),
        ("gradient_energy_align_result", "Align GT with result"),
    ):
        line = next(line for line in printed.splitlines() if line.strip().startswith(f"{key} "))
        assert f"{float(metrics[f'val/{key}']):8.4f}" in line and words in line and "bicubic" not in line
    (panel_path,) = sorted(run_dir.rglob("panels/val_epoch0_sample*.png"))  # the one held-out image
    panel = np.asarray(Image.open(panel_path))
    assert panel.shape == (64, 6 * 64, 3)  # raw | GCM | output | warped GT | mask | error
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, ImagePanelLogger))
    assert np.array_equal(panel, callback.last_panels[0])
    tiles = [panel[:, 64 * i : 64 * (i + 1)].astype(float) for i in range(6)]
    assert tiles[0].std() > 5 and tiles[1].std() > 5 and tiles[3].std() > 5  # the scene, not a blank
    mask_tile = tiles[4]
    assert set(np.unique(mask_tile)) <= {0.0, 255.0} and mask_tile.mean() > 0.5 * 255  # a binary, mostly valid mask
    checkpoint = torch.load(cli.trainer.checkpoint_callback.last_model_path, map_location="cpu", weights_only=False)
    keys = checkpoint["state_dict"]
    assert any(k.startswith("net.") for k in keys) and any(k.startswith("gcm.") for k in keys)
    assert not any(k.startswith(("flow.", "perceptual.", "quality.lpips_net.")) for k in keys)


def test_validate_test_and_predict_from_the_checkpoint(fitted, zrr_root, tmp_path):
    cli, _ = fitted
    checkpoint = cli.trainer.checkpoint_callback.last_model_path
    validated = cli_main(["validate", *tiny_args(zrr_root, tmp_path), "--ckpt_path", checkpoint])
    for suffix in ("", "_align_raw", "_align_result"):  # the same weights and images as the fit's last validation
        assert float(validated.trainer.callback_metrics[f"val/psnr{suffix}"]) == pytest.approx(
            float(cli.trainer.callback_metrics[f"val/psnr{suffix}"]), abs=1e-4
        )
    tested = cli_main(["test", *tiny_args(zrr_root, tmp_path), "--ckpt_path", checkpoint])
    table = next(c for c in tested.trainer.callbacks if isinstance(c, PerImageTestMetrics))
    assert [row["image"] for row in table.rows] == ["0", "1"]  # the two test images
    with open(next(tmp_path.rglob("test_per_image.csv"))) as handle:
        rows = list(csv.DictReader(handle))
    metrics = tested.trainer.callback_metrics
    for column in ("psnr", "psnr_align_raw", "psnr_align_result", "ssim_align_result"):
        assert np.mean([float(row[column]) for row in rows]) == pytest.approx(float(metrics[f"test/{column}"]), abs=1e-3)
    assert all(float(row["isp_time_ms"]) > 0 for row in rows) and float(metrics["test/isp_time_ms"]) > 0

    cli_main(["predict", *tiny_args(zrr_root, tmp_path), "--ckpt_path", checkpoint])
    pngs = sorted(p.name for p in (tmp_path / "predictions").glob("*.png"))
    assert pngs == ["0.png", "1.png"]
    assert np.asarray(Image.open(tmp_path / "predictions" / "0.png")).shape == (64, 64, 3)


def test_convert_command_writes_a_checkpoint_that_lightning_test_uses(zrr_root, tmp_path, capsys):
    torch.manual_seed(5)
    net, gcm = LiteISPNet(num_blocks=1), GlobalColorMapping()
    net_file, gcm_file = tmp_path / "LiteISPNet_model_1.pth", tmp_path / "GCMModel_model_1.pth"
    torch.save({"state_dict": liteispnet_state_to_official(net.state_dict(), num_blocks=1)}, net_file)
    torch.save({"state_dict": gcm_state_to_official(gcm.state_dict())}, gcm_file)
    out = tmp_path / "converted" / "zrr.ckpt"
    convert_main(["rawtosrgb", "--net", str(net_file), "--gcm", str(gcm_file), "--out", str(out)])
    assert "RAW-to-sRGB LiteISPNet" in capsys.readouterr().out and not list(out.parent.glob(".*tmp*"))
    # the overrides ask for 2 residual blocks: the checkpoint's architecture (1 block) wins
    tested = cli_main(
        ["test", *tiny_args(zrr_root, tmp_path, "--model.init_args.net.init_args.num_blocks", "2"), "--ckpt_path", str(out)]
    )
    for part, source in (("net", net), ("gcm", gcm)):
        for key, value in getattr(tested.model, part).state_dict().items():
            assert torch.equal(value, source.state_dict()[key]), (part, key)
    assert math.isfinite(float(tested.trainer.callback_metrics["test/psnr_align_result"]))
    with pytest.raises(ValueError, match="neither an official LiteISPNet nor an SRResNet"):
        convert_main(["rawtosrgb", "--net", str(gcm_file), "--out", str(tmp_path / "bad.ckpt")])
    assert not (tmp_path / "bad.ckpt").exists()


def test_fit_and_test_on_simulated_srraw(srraw_root, srraw_split, tmp_path):
    """The SR-RAW DataModule in this paper's form (no target margin, white balance on the output) with a ×1 stage
    network: fit, test (output upsampled to the 4× target) and predict."""
    torch.manual_seed(6)
    data = SRRAWDataModule(
        str(srraw_root), zoom=4, patch_size=8, target_margin=0, eval_crop=24, batch_size=2, num_workers=0, seed=1,
        split_file=str(srraw_split),
    )
    module = RawToSRGBJointModule(
        zoom=4, patch_size=8, net=srresnet(1), flow="classical", pretrained=False, w_vgg=0.0, white_balance="input",
        result_flow_scale=0.5,
    )
    trainer = lightning.Trainer(
        accelerator="cpu", max_steps=1, limit_val_batches=1, limit_test_batches=2, limit_predict_batches=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    trainer.test(module, datamodule=data)
    for suffix in ("", "_align_raw", "_align_result"):
        assert math.isfinite(float(trainer.callback_metrics[f"test/psnr{suffix}"]))
    (prediction,) = trainer.predict(module, datamodule=data)
    assert prediction["image"].shape[1] == 3 and 0 <= float(prediction["image"].min()) <= float(prediction["image"].max()) <= 1
