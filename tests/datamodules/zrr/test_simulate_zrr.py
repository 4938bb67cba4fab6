"""The ZRR-style simulator: determinism, layout and formats, manifest and truth, the true flow's convention
(it warps the DSLR JPG onto the raw's view), distinct colour renditions, atomic writing and the command line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from kornia.filters import gaussian_blur2d
from PIL import Image

import datamodules.simulate.zrr as zrr_module
from datamodules.common.images import read_jpg
from datamodules.simulate.__main__ import main as cli_main
from datamodules.simulate.zrr import (
    draw_image,
    dslr_displacement,
    read_true_flow,
    render_target,
    simulate_zrr,
    true_flow,
)
from datamodules.simulate.zrr_config import ZRRSimulation
from datamodules.zrr.layout import read_raw_png
from ops.flow import ClassicalFlow
from ops.warp import backward_warp
from tests.datamodules.zrr.conftest import SMALL

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ZRRSimulation(train_images=2, test_images=1, size=64, seed=0)


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_layout_manifest_and_truth(tmp_path):
    first = simulate_zrr(tmp_path / "a", TINY, progress=False)
    files = _files(first)
    assert files == _files(simulate_zrr(tmp_path / "b", TINY, progress=False))
    assert files != _files(simulate_zrr(tmp_path / "c", dataclasses.replace(TINY, seed=1), progress=False))
    assert sorted(files) == [
        "simulation.json", "simulation_truth.json",
        "simulation_truth/test/0.npy", "simulation_truth/train/0.npy", "simulation_truth/train/1.npy",
        "test/canon/0.jpg", "test/huawei_raw/0.png",
        "train/canon/0.jpg", "train/canon/1.jpg", "train/huawei_raw/0.png", "train/huawei_raw/1.png",
    ]
    assert json.loads(files["simulation.json"]) == {"format": 1, "dataset": "zrr", "config": TINY.to_dict()}
    truth = json.loads(files["simulation_truth.json"])
    assert truth["format"] == 1 and sorted(truth["images"]) == ["test/0", "train/0", "train/1"]
    assert truth["flow"]["shape"] == [2, 64, 64] and truth["images"]["train/1"]["flow_file"] == "simulation_truth/train/1.npy"
    raw_image = Image.open(first / "train" / "huawei_raw" / "0.png")
    assert raw_image.mode == "I;16" and raw_image.size == (64, 64)
    raw = read_raw_png(first / "train" / "huawei_raw" / "0.png")
    assert 63 <= raw.min() and raw.max() <= 1020 and raw.max() > 300  # ZRR's 10-bit levels
    assert read_jpg(first / "train" / "canon" / "0.jpg").shape == (64, 64, 3)
    flow = np.load(first / "simulation_truth" / "train" / "0.npy")
    assert flow.dtype == np.float16 and flow.shape == (2, 64, 64)


def test_true_flow_follows_the_ops_flow_convention():
    image = draw_image(SMALL, "train", 2)
    flow = true_flow(SMALL, image)
    magnitude = np.hypot(flow[0], flow[1])
    assert 0.3 < magnitude.max() <= SMALL.displacement_px[1] + SMALL.max_translation_px + 1e-9
    assert magnitude.std() > 0.05  # spatially varying, not a translation
    # raw pixel x is shown by target pixel q = x + flow(x): q + d(q) = x
    ys, xs = np.mgrid[0:128:13, 0:128:11].astype(np.float64)
    qx, qy = xs + flow[0, ::13, ::11], ys + flow[1, ::13, ::11]
    dx, dy = dslr_displacement(SMALL, image, qx, qy)
    np.testing.assert_allclose(qx + dx, xs, atol=1e-6)
    np.testing.assert_allclose(qy + dy, ys, atol=1e-6)


def _as_batch(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


def test_stored_flow_warps_the_target_onto_the_raw_view(zrr_root):
    """The warped target matches the DSLR's rendering of the raw's view (pixel q at world point q) much better
    than the target as stored; the error is measured after a σ = 1 px blur, so that what is left is the
    misalignment rather than the warp's bilinear blur and JPEG's 4:2:0 chroma."""
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))

    def error(image, view):
        return float((gaussian_blur2d(image, (7, 7), (1.0, 1.0)) - gaussian_blur2d(view, (7, 7), (1.0, 1.0)))[inner].abs().mean())

    for split, name in (("train", "0"), ("test", "1")):
        image = draw_image(SMALL, split, int(name))
        flow = read_true_flow(zrr_root, split, name)
        np.testing.assert_allclose(flow.numpy(), true_flow(SMALL, image), atol=2e-3)
        view = _as_batch(render_target(SMALL, image, aligned=True))
        # the geometry alone: the target before JPEG compression
        uncompressed = _as_batch(render_target(SMALL, image))
        warped, mask = backward_warp(uncompressed, flow[None])
        assert bool(mask[inner].all())
        assert error(warped, view) < 0.35 * error(uncompressed, view)
        # the stored JPG: the true flow is the best of its scalings, the opposite convention is worse than none
        target = _as_batch(read_jpg(zrr_root / split / "canon" / f"{name}.jpg"))
        errors = {scale: error(backward_warp(target, scale * flow[None])[0], view) for scale in (-1.0, 0.0, 0.7, 1.0, 1.3)}
        assert errors[1.0] < 0.8 * errors[0.0] and errors[1.0] < min(errors[0.7], errors[1.3]), errors
        assert errors[-1.0] > errors[0.0], errors


@pytest.mark.parametrize("preset", ["medium", "fine"])
def test_classical_flow_recovers_the_true_flow_on_textured_regions(tmp_path, preset):
    """OpenCV DIS between the DSLR's rendering of the raw's view and the stored JPG target (the demo's 192² size)
    finds the simulator's true flow: end-point error < 0.5 px and < ¼ of the flow's own magnitude (what a zero
    estimate would score) where the image has texture (gradient above its median), 8 px from the border."""
    config = dataclasses.replace(TINY, size=192, train_images=1, test_images=1)
    root = simulate_zrr(tmp_path / "data", config, progress=False)
    inner = (slice(8, -8), slice(8, -8))
    for split, index in (("train", 0), ("test", 0)):
        image = draw_image(config, split, index)
        truth = read_true_flow(root, split, str(index))
        view = _as_batch(render_target(config, image, aligned=True))
        target = _as_batch(read_jpg(root / split / "canon" / f"{index}.jpg"))
        estimate = ClassicalFlow(preset)(view, target)[0]
        grey = view[0].mean(0)
        gradient = torch.zeros_like(grey)
        gradient[1:-1, 1:-1] = (grey[1:-1, 2:] - grey[1:-1, :-2]).abs() + (grey[2:, 1:-1] - grey[:-2, 1:-1]).abs()
        textured = (gradient > gradient[inner].median())[inner]
        error = float((estimate - truth).norm(dim=0)[inner][textured].mean())
        magnitude = float(truth.norm(dim=0)[inner][textured].mean())
        assert magnitude > 0.5 and error < min(0.5, 0.25 * magnitude), (split, preset, error, magnitude)


def test_dslr_rendition_saturation_vignetting_and_white_balance():
    image = draw_image(TINY, "train", 0)
    plain = dataclasses.replace(TINY, dslr_saturation=1.0, dslr_tint=(1.0, 1.0, 1.0), vignetting=0.0, dslr_contrast=0.0)
    base = render_target(plain, image, aligned=True).astype(np.float64) / 255

    def rendered(**changes):
        return render_target(dataclasses.replace(plain, **changes), image, aligned=True).astype(np.float64) / 255

    chroma = lambda rgb: (rgb - rgb.mean(-1, keepdims=True)).std()  # noqa: E731
    assert chroma(rendered(dslr_saturation=1.25)) > 1.1 * chroma(base)
    vignetted = rendered(vignetting=0.25)
    corner, centre = (slice(0, 6), slice(0, 6)), (slice(29, 35), slice(29, 35))
    assert vignetted[corner].mean() < 0.92 * base[corner].mean()
    assert abs(vignetted[centre].mean() - base[centre].mean()) < 0.01
    # the DSLR balances white (up to its error); the raw keeps the illuminant's cast: R and B dimmed by ~2
    raw = zrr_module.render_raw(TINY, image).astype(np.float64) - 63
    gains = np.array(image.illuminant_gains)
    assert raw[0::2, 0::2].mean() < 0.75 * raw[0::2, 1::2].mean() and gains[0] > 1.5
    assert abs(np.log(image.dslr_wb_error[0])) <= np.log(1 + TINY.max_wb_error) + 1e-9


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing(out, config, image):
        calls.append(image.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        original(out, config, image)

    original = zrr_module._write_pair
    monkeypatch.setattr(zrr_module, "_write_pair", failing)
    with pytest.raises(KeyboardInterrupt):
        simulate_zrr(tmp_path / "out", TINY, progress=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError, match="full"):
        simulate_zrr(tmp_path / "full", TINY, progress=False)
    with pytest.raises(ValueError, match="not smooth on a 32² frame"):
        simulate_zrr(tmp_path / "small", dataclasses.replace(TINY, size=32), progress=False)


def test_command_line(tmp_path, capsys):
    cli_main(["zrr", "--out", str(tmp_path / "cli"), "--images", "1", "1", "--size", "64", "--seed", "2", "--no-progress"])
    assert "wrote 2 ZRR pairs (64x64)" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "cli" / "simulation.json").read_text())
    assert manifest["config"] == ZRRSimulation(train_images=1, test_images=1, size=64, seed=2).to_dict()
