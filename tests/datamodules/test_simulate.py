"""Tests of the SR-RAW capture simulator: layout, formats, determinism, truth and atomic writing."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from PIL import Image, JpegImagePlugin

import datamodules.simulate.srraw as srraw_module
from datamodules.simulate import SRRAWSimulation, shot_mapping, simulate_srraw, warp_displacement
from datamodules.simulate.__main__ import main as cli_main
from datamodules.common.raw import read_raw_metadata, read_raw_mosaic
from datamodules.simulate.camera import BLACK_LEVEL, CAMERA_TO_SRGB, WHITE_LEVEL, camera_isp, lens_blur
from datamodules.simulate.jpeg import write_camera_jpeg
from datamodules.simulate.scene import ProceduralScene, cell_uniforms
from ops.bayer import demosaic

REPO_ROOT = Path(__file__).resolve().parents[2]

# Small frames, 10× zoom range; a warp larger than the default so that its sign is measurable. The sensor's
# whole image in the JPG, landscape, no perspective: the camera-realism options are tested further below.
CONFIG = SRRAWSimulation(
    scenes=2, width=256, height=192, seed=3, focal_lengths=(240.0, 120.0, 60.0, 24.0), max_warp_px=1.5,
    jpeg_border=0, portrait_fraction=0.0, max_perspective_px=0.0,
)
SHOTS = ["00001", "00002", "00003", "00004"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return simulate_srraw(tmp_path_factory.mktemp("sim") / "srraw", CONFIG, progress=False)


@pytest.fixture(scope="module")
def truths(dataset) -> dict[str, dict]:
    return {scene: json.loads((dataset / scene / "simulation_truth.json").read_text()) for scene in ("00001", "00002")}


def _jpg(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float64) / 255.0


# ---------------------------------------------------------------------------------------------- layout


def test_layout_matches_srraw(dataset):
    assert sorted(p.name for p in dataset.iterdir()) == ["00001", "00002", "simulation.json"]
    for scene in ("00001", "00002"):
        expected = sorted([f"{s}.DNG" for s in SHOTS] + [f"{s}.JPG" for s in SHOTS] + ["simulation_truth.json"])
        assert sorted(p.name for p in (dataset / scene).iterdir()) == expected
    manifest = json.loads((dataset / "simulation.json").read_text())
    assert manifest == {"format": 3, "dataset": "srraw", "config": CONFIG.to_dict()}
    stored = manifest["config"]
    assert SRRAWSimulation(**{**stored, "focal_lengths": tuple(stored["focal_lengths"])}) == CONFIG
    assert not list(dataset.parent.glob(".*")), "a temporary folder was left next to the dataset"


def test_same_config_writes_identical_bytes(dataset, tmp_path):
    again = simulate_srraw(tmp_path / "again", CONFIG, progress=False)
    first, second = _files(dataset), _files(again)
    assert list(first) == list(second)
    assert all(first[name] == second[name] for name in first)


def test_different_seed_or_scene_gives_different_data(dataset, tmp_path):
    other = simulate_srraw(tmp_path / "other", dataclasses.replace(CONFIG, scenes=1, seed=4), progress=False)
    for name in ("00001/00001.DNG", "00001/00003.JPG", "00001/simulation_truth.json"):
        assert (other / name).read_bytes() != (dataset / name).read_bytes()
    a, b = (tifffile.imread(dataset / scene / "00001.DNG").astype(np.float64) for scene in ("00001", "00002"))
    assert np.abs(a - b).mean() > 500  # different scenes, not just different noise


# ------------------------------------------------------------------------------------------------- DNG


@pytest.mark.parametrize("scene", ["00001", "00002"])
def test_rawpy_reads_the_dng_exactly(dataset, truths, scene):
    for shot in SHOTS:
        record = truths[scene]["shots"][shot]
        path = dataset / scene / f"{shot}.DNG"
        stored = tifffile.imread(path)
        with rawpy.imread(str(path)) as raw:
            assert raw.raw_image.dtype == np.uint16 and raw.raw_image.shape == (CONFIG.height, CONFIG.width)
            np.testing.assert_array_equal(raw.raw_image, stored)
            np.testing.assert_array_equal(raw.raw_image_visible, stored)
            np.testing.assert_array_equal(raw.raw_pattern, [[0, 1], [3, 2]])
            assert raw.color_desc == b"RGBG"
            assert list(raw.black_level_per_channel) == [512] * 4
            assert raw.white_level == 16383
            assert raw.other.focal_length == pytest.approx(record["focal_exif"])
            gains = np.asarray(raw.camera_whitebalance[:3])
            np.testing.assert_allclose(gains / gains[1], record["wb_gains"], rtol=1e-6)
            np.testing.assert_allclose(raw.color_matrix[:, :3], CAMERA_TO_SRGB, atol=1e-3)
        assert stored.min() >= 512 and stored.max() <= 16383
        level = (stored.astype(np.float64) - 512).mean() / (16383 - 512)
        assert 0.05 < level < 0.8
    with tifffile.TiffFile(dataset / scene / "00001.DNG") as tif:
        tags = tif.pages[0].tags
        assert tuple(tags[50706].value) == (1, 4, 0, 0)
        assert tuple(tags[33422].value) == (0, 1, 1, 2)
        assert tags[37386].value == (240, 1)


# ------------------------------------------------------------------------------------------------- JPG


def test_jpg_exif_focal_length(dataset, truths):
    for shot in SHOTS:
        path = dataset / "00001" / f"{shot}.JPG"
        focal = truths["00001"]["shots"][shot]["focal_exif"]
        with Image.open(path) as image:
            assert image.size == (CONFIG.width, CONFIG.height)
            exif = image.getexif()
            assert float(exif.get_ifd(0x8769)[37386]) == focal
            assert exif[271] == "rawzoom"


def _render(colour_matrix: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """8-bit sRGB (H, W, 3) of normalised camera RGB (3, H, W): matrix, clip, gamma 1/2.2."""
    return np.rint(255 * np.clip(np.einsum("ij,jhw->hwi", colour_matrix, camera), 0, 1) ** (1 / 2.2))


def test_jpg_is_the_camera_isp_of_the_raw(dataset):
    """demosaic → levels → WB (from rawpy) → colour matrix (LibRaw's, from ColorMatrix1) → gamma."""
    for shot in SHOTS:
        with rawpy.imread(str(dataset / "00001" / f"{shot}.DNG")) as raw:
            mosaic = raw.raw_image.astype(np.float32)
            gains = np.asarray(raw.camera_whitebalance[:3]) / raw.camera_whitebalance[1]
            matrix = raw.color_matrix[:, :3] * gains[None, :]
        camera = (demosaic(torch.from_numpy(mosaic)[None, None])[0].double().numpy() - 512) / (16383 - 512)

        jpg = 255 * _jpg(dataset / "00001" / f"{shot}.JPG")
        error = jpg - _render(matrix, camera)
        assert np.abs(error).mean() < 3.5  # JPEG q95 on a noisy, detailed image
        assert np.abs(error.mean(axis=(0, 1))).max() < 0.5  # no colour or tone bias
        assert np.abs(jpg - _render(matrix / gains[None, :], camera)).mean() > 10 * np.abs(error).mean()


def _noisy_step_mosaic(seed: int = 0) -> np.ndarray:
    """A 64×64 RGGB mosaic of a grey step (0.1 | 0.4 of full scale at column 32) with σ = 0.01 noise."""
    signal = np.where(np.arange(64)[None, :] < 32, 0.1, 0.4) * np.ones((64, 1))
    noisy = signal + 0.01 * np.random.default_rng(seed).standard_normal((64, 64))
    return np.rint(BLACK_LEVEL + noisy * (WHITE_LEVEL - BLACK_LEVEL)).astype(np.uint16)


def test_in_camera_noise_reduction_removes_noise_and_keeps_edges():
    mosaic, gains = _noisy_step_mosaic(), (1.0, 1.0, 1.0)
    plain = camera_isp(mosaic, gains).astype(np.float64)
    reduced = camera_isp(mosaic, gains, luma_denoise=1.5, chroma_denoise=2.0).astype(np.float64)
    flat = (slice(8, 56), slice(6, 26))  # left half, away from the step and the borders
    luma_noise = [image[flat].mean(axis=2).std() for image in (plain, reduced)]
    chroma_noise = [(image[flat] - image[flat].mean(axis=2, keepdims=True)).std() for image in (plain, reduced)]
    assert luma_noise[1] < 0.6 * luma_noise[0]
    assert chroma_noise[1] < 0.5 * chroma_noise[0]
    # The step (≈ 66 → 128 in 8-bit) keeps ≥ 95 % of its height two pixels from the edge.
    step = [image[8:56, 34].mean() - image[8:56, 29].mean() for image in (plain, reduced)]
    assert step[0] > 55 and step[1] > 0.95 * step[0]
    assert np.abs(reduced[flat].mean() - plain[flat].mean()) < 1.0  # no tone shift
    with pytest.raises(ValueError, match="≥ 0"):
        camera_isp(mosaic, gains, luma_denoise=-1.0)


@pytest.mark.parametrize(("subsampling", "pillow_code"), [("4:4:4", 0), ("4:2:2", 1), ("4:2:0", 2)])
def test_jpeg_chroma_subsampling_is_written(tmp_path, subsampling, pillow_code):
    rgb = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    path = tmp_path / "shot.JPG"
    write_camera_jpeg(path, rgb, focal_length=24.0, quality=90, subsampling=subsampling)
    with Image.open(path) as image:
        assert JpegImagePlugin.get_sampling(image) == pillow_code
    with pytest.raises(ValueError, match="subsampling"):
        write_camera_jpeg(path, rgb, focal_length=24.0, quality=90, subsampling="4:1:1")


# ----------------------------------------------------------------------------------------------- truth


def _similarity(record: dict, reference_focal: float) -> np.ndarray:
    """Naive ref_to_shot: translate(t) · translate(c) · scale · rotate · translate(−c)."""
    c = np.array([(CONFIG.width - 1) / 2, (CONFIG.height - 1) / 2])
    theta = math.radians(record["rotation_deg"])
    s = record["focal_true"] / reference_focal
    linear = s * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = c - linear @ c + np.asarray(record["translation_px"])
    return matrix


def _documented_warp(record: dict, p: np.ndarray) -> np.ndarray:
    """w(p) = Σ_j a_j · d_j · sin(2π(f_jx·p_x/W + f_jy·p_y/H) + φ_j), written out from the docstring."""
    total = np.zeros_like(p)
    for c in record["warp"]["components"]:
        argument = 2 * np.pi * (c["frequency"][0] * p[..., 0] / 256 + c["frequency"][1] * p[..., 1] / 192) + c["phase"]
        total += c["amplitude_px"] * np.asarray(c["direction"]) * np.sin(argument)[..., None]
    return total


def test_truth_file_is_consistent_and_bounded(truths):
    grid = np.stack(np.meshgrid(np.arange(0, 256, 4.0), np.arange(0, 192, 4.0)), -1)
    for scene, truth in truths.items():
        assert (truth["format"], truth["scene"], truth["reference"]) == (3, scene, "00001")
        assert (truth["width"], truth["height"]) == (CONFIG.width, CONFIG.height)
        assert list(truth["shots"]) == SHOTS
        reference = truth["shots"]["00001"]
        np.testing.assert_array_equal(reference["ref_to_shot"], np.eye(3))
        assert reference["warp"]["components"] == [] and reference["scale_deviation"] == 0.0
        np.testing.assert_array_equal(shot_mapping(truth, "00001", grid), grid)
        scales = []
        for shot, focal in zip(SHOTS, CONFIG.focal_lengths):
            record = truth["shots"][shot]
            assert record["focal_exif"] == focal
            assert record["focal_true"] == pytest.approx(focal * (1 + record["scale_deviation"]))
            assert abs(record["scale_deviation"]) <= CONFIG.max_scale_deviation
            assert abs(record["rotation_deg"]) <= CONFIG.max_rotation_deg
            assert np.hypot(*record["translation_px"]) <= CONFIG.max_translation_px
            assert abs(record["exposure"] - 1) <= CONFIG.max_exposure_drift
            assert np.abs(np.asarray(record["tint"]) - 1).max() <= CONFIG.max_tint_drift
            assert record["wb_gains"][1] == 1.0 and 1.0 < min(record["wb_gains"][0], record["wb_gains"][2])
            matrix = np.asarray(record["ref_to_shot"])
            np.testing.assert_allclose(matrix, _similarity(record, reference["focal_true"]), atol=1e-9)
            scales.append(math.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
            wx, wy = warp_displacement(record["warp"]["components"], grid[..., 0], grid[..., 1], 256, 192)
            assert np.hypot(wx, wy).max() <= CONFIG.max_warp_px + 1e-9
            full = shot_mapping(truth, shot, grid)
            linear = grid @ matrix[:2, :2].T + matrix[:2, 2]
            np.testing.assert_allclose(full - linear, _documented_warp(record, linear), atol=1e-9)
            if shot != "00001":
                assert np.abs(full - grid).max() > 10  # real misalignment
        np.testing.assert_allclose(scales, np.asarray(CONFIG.focal_lengths) / 240.0, rtol=CONFIG.max_scale_deviation)
        assert scales == sorted(scales, reverse=True)


def _sample(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples of image (H, W, 3) at pixel positions points (h, w, 2) and their validity."""
    h, w = image.shape[:2]
    grid = np.stack([points[..., 0] / (w - 1) * 2 - 1, points[..., 1] / (h - 1) * 2 - 1], -1)
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
    out = F.grid_sample(tensor, torch.from_numpy(grid)[None], mode="bilinear", align_corners=True)
    inside = (points[..., 0] >= 0) & (points[..., 0] <= w - 1) & (points[..., 1] >= 0) & (points[..., 1] <= h - 1)
    return out[0].permute(1, 2, 0).numpy(), inside


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    a, b = a[mask] - a[mask].mean(), b[mask] - b[mask].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_true_mapping_registers_every_shot_onto_the_reference(dataset, truths):
    """Warping shot k back with the true mapping matches the (blurred to k's resolution) reference far
    better than the nominal FOV crop, and better than the same mapping shifted by half a shot pixel or
    stripped of its warp."""
    points = np.stack(np.meshgrid(np.arange(CONFIG.width, dtype=float), np.arange(CONFIG.height, dtype=float)), -1)
    centre = np.array([(CONFIG.width - 1) / 2, (CONFIG.height - 1) / 2])
    warp_gains = []
    for scene, truth in truths.items():
        reference = torch.from_numpy(_jpg(dataset / scene / "00001.JPG")).permute(2, 0, 1)[None]
        for shot in SHOTS[1:]:
            record = truth["shots"][shot]
            image = _jpg(dataset / scene / f"{shot}.JPG")
            sigma = 0.5 * truth["shots"]["00001"]["focal_true"] / record["focal_true"]
            size = 2 * math.ceil(3 * sigma) + 1
            target = gaussian_blur2d(reference, (size, size), (sigma, sigma))[0].permute(1, 2, 0).numpy()
            true_points = shot_mapping(truth, shot, points)
            warped, inside = _sample(image, true_points)
            score = _ncc(warped, target, inside)
            nominal, nominal_inside = _sample(image, centre + record["focal_exif"] / 240.0 * (points - centre))
            assert score > 0.88, (scene, shot)
            assert score > _ncc(nominal, target, nominal_inside) + 0.15, (scene, shot)
            for shift in ([0.5, 0.0], [-0.5, 0.0], [0.0, 0.5], [0.0, -0.5]):
                shifted, _ = _sample(image, true_points + np.array(shift))
                assert score > _ncc(shifted, target, inside) + 0.003, (scene, shot, shift)
            matrix = np.asarray(record["ref_to_shot"])
            unwarped, _ = _sample(image, points @ matrix[:2, :2].T + matrix[:2, 2])
            warp_gains.append(score - _ncc(unwarped, target, inside))
    assert min(warp_gains) > -0.002 and np.mean(warp_gains) > 0.005


# ------------------------------------------------------------------------------ what real cameras do
@pytest.mark.parametrize(("pattern", "bits"), [("RGGB", 14), ("BGGR", 12), ("GRBG", 14), ("GBRG", 12)])
def test_cfa_order_bit_depth_and_jpg_crop_are_what_a_reader_finds(tmp_path, pattern, bits):
    config = SRRAWSimulation(
        scenes=1, width=96, height=64, focal_lengths=(50.0, 24.0), cfa_pattern=pattern, bit_depth=bits, jpeg_border=6,
        portrait_fraction=0.0,
    )
    root = simulate_srraw(tmp_path / "sim", config, progress=False)
    truth = json.loads((root / "00001" / "simulation_truth.json").read_text())
    black, white = {12: (128, 4095), 14: (512, 16383)}[bits]
    assert (truth["cfa_pattern"], truth["black_level"], truth["white_level"]) == (pattern, black, white)
    assert truth["jpeg_box"] == [6, 6, 52, 84]
    metadata, mosaic = read_raw_mosaic(root / "00001" / "00002.DNG")
    assert metadata.pattern == pattern and metadata.black_levels == (black,) * 4 and metadata.white_level == white
    assert mosaic.max() <= white and mosaic.min() >= black
    # the JPG is the ISP's rendering of the sensor image cut by 6 px on every side, not a rescaled copy
    gains = tuple(truth["shots"]["00002"]["wb_gains"])
    rendered = camera_isp(mosaic, gains, pattern=pattern, black_level=black, white_level=white).astype(np.float64)
    jpg = 255 * _jpg(root / "00001" / "00002.JPG")
    assert jpg.shape == (52, 84, 3)
    assert np.abs(jpg - rendered[6:-6, 6:-6]).mean() < 4.0
    assert np.abs(jpg - rendered[5:-7, 5:-7]).mean() > 1.5 * np.abs(jpg - rendered[6:-6, 6:-6]).mean()


def test_portrait_scenes_record_their_orientation_and_keep_the_sensor_order(tmp_path):
    config = SRRAWSimulation(scenes=6, width=64, height=48, focal_lengths=(50.0, 24.0), portrait_fraction=0.5, jpeg_border=0)
    root = simulate_srraw(tmp_path / "sim", config, progress=False)
    orientations = []
    for scene in sorted(path.name for path in root.iterdir() if path.is_dir()):
        orientation = json.loads((root / scene / "simulation_truth.json").read_text())["orientation"]
        orientations.append(orientation)
        with Image.open(root / scene / "00001.JPG") as image:
            assert image.getexif()[274] == orientation and image.size == (64, 48)  # pixels not rotated
        with rawpy.imread(str(root / scene / "00001.DNG")) as raw:
            assert raw.raw_image.shape == (48, 64)
            assert raw.sizes.flip == {1: 0, 6: 6, 8: 5}[orientation]  # LibRaw's codes for 90° CW / CCW
    assert 1 in orientations and set(orientations) - {1}, orientations


def test_perspective_moves_the_corners_as_configured(tmp_path):
    config = SRRAWSimulation(
        scenes=1, width=128, height=96, focal_lengths=(50.0, 35.0, 24.0), max_perspective_px=3.0, max_warp_px=0.0,
        max_rotation_deg=0.0, max_translation_px=0.0, max_scale_deviation=0.0, jpeg_border=0,
    )
    root = simulate_srraw(tmp_path / "sim", config, progress=False)
    truth = json.loads((root / "00001" / "simulation_truth.json").read_text())
    corners = np.array([[0.0, 0.0], [127.0, 0.0], [0.0, 95.0], [127.0, 95.0]])
    for shot, focal in (("00002", 35.0), ("00003", 24.0)):
        record = truth["shots"][shot]
        matrix = np.asarray(record["ref_to_shot"])
        assert np.abs(matrix[2, :2]).max() > 0  # a homography, not a similarity
        scale = focal / 50.0
        # where the reference's corners land, against the pure zoom about the centre: at most 3 px · s²
        # (the perspective moves the shot's own corners by up to 3 px; the reference sits inside)
        zoomed = (corners - [63.5, 47.5]) * scale + [63.5, 47.5]
        moved = np.abs(shot_mapping(truth, shot, corners) - zoomed).max()
        assert 0 < moved <= 3.0 * scale**2 + 1e-6
        # naive homography of the documented formula
        kappa = np.asarray(record["perspective"])
        v = corners - [63.5, 47.5]
        expected = [63.5, 47.5] + scale * v / (1 + v @ kappa)[:, None]
        np.testing.assert_allclose(shot_mapping(truth, shot, corners), expected, atol=1e-9)


# ----------------------------------------------------------------------------------------------- scene


@pytest.mark.parametrize("factor", [4, 10])
def test_scene_is_anti_aliased_consistently_across_footprints(one_thread, factor):
    """A k× coarser render is the k×k box average of a fine one, also where shape cells are smaller than
    a few coarse pixels (the 24 mm shot sees 16-unit patches and 9×14-unit text cells at footprint 10)."""
    scene = ProceduralScene(np.random.default_rng(0), extent=10240.0)
    size = 48 * factor
    ys, xs = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    fine = scene.render(xs + 300, ys + 200, 1.0)
    pooled = F.avg_pool2d(fine[None], factor)[0]
    cy, cx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    offset = (factor - 1) / 2
    coarse = scene.render(factor * cx + offset + 300, factor * cy + offset + 200, float(factor))
    point_sampled = fine[:, factor // 2 :: factor, factor // 2 :: factor]
    assert fine.min() >= 0 and fine.max() <= 1 and fine.std() > 0.1
    coarse_error = (coarse - pooled).abs().mean().item()
    assert coarse_error < 0.005
    assert coarse_error < 0.15 * (point_sampled - pooled).abs().mean().item()


def test_lens_blur_is_a_normalised_gaussian_psf_of_the_given_sigma():
    impulse = torch.zeros(3, 33, 33, dtype=torch.float64)
    impulse[:, 16, 16] = 1.0
    psf = lens_blur(impulse, 0.6)
    offsets = torch.arange(-16.0, 17.0, dtype=torch.float64)
    assert psf.sum(dim=(1, 2)).tolist() == pytest.approx([1.0] * 3)
    assert (psf[0].sum(dim=0) * offsets**2).sum().item() == pytest.approx(0.36, rel=0.05)  # variance σ²
    # Centre tap of the separable sampled kernel: 1 / (1 + 2·e^(−1/2σ²) + 2·e^(−4/2σ²))² = 0.441.
    assert torch.equal(psf[0], psf[0].T) and psf[0, 16, 16].item() == pytest.approx(0.441, abs=0.002)
    assert lens_blur(impulse, 0.0) is impulse
    with pytest.raises(ValueError, match="lens blur"):
        lens_blur(impulse, -1.0)


def test_cell_uniforms_are_stateless_and_uniform():
    ix, iy = (g.ravel() for g in np.meshgrid(np.arange(-50, 50), np.arange(-30, 30)))
    values = cell_uniforms(123, ix, iy, 4)
    np.testing.assert_array_equal(cell_uniforms(123, ix[7:9], iy[7:9], 4), values[7:9])
    assert values.min() >= 0 and values.max() < 1
    assert abs(values.mean() - 0.5) < 0.01 and abs(values.std() - math.sqrt(1 / 12)) < 0.01
    assert np.abs(np.corrcoef(values.T) - np.eye(4)).max() < 0.05
    assert not np.array_equal(cell_uniforms(124, ix, iy, 4), values)


# ---------------------------------------------------------------------------------------- writing, CLI

TINY = SRRAWSimulation(scenes=2, width=32, height=24, focal_lengths=(100.0, 50.0), jpeg_border=0)


def test_refuses_to_overwrite_a_non_empty_folder(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="taken"):
        simulate_srraw(out, TINY, progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    simulate_srraw(empty, TINY, progress=False)
    assert (empty / "00002" / "00002.JPG").is_file()


def test_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []
    real_write = srraw_module.write_camera_jpeg

    def failing_write(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        real_write(*args, **kwargs)

    monkeypatch.setattr(srraw_module, "write_camera_jpeg", failing_write)
    with pytest.raises(KeyboardInterrupt):
        simulate_srraw(tmp_path / "out", TINY, progress=False)
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []


def test_invalid_configs_are_rejected(tmp_path):
    bad_configs = (
        {"width": 33},
        {"focal_lengths": (50.0, 100.0)},
        {"scenes": 0},
        {"luma_denoise": -0.5},
        {"lens_blur": -0.1},
        {"jpeg_subsampling": "4:1:1"},
    )
    for bad in bad_configs:
        with pytest.raises(ValueError, match="invalid SRRAWSimulation"):
            simulate_srraw(tmp_path / "x", dataclasses.replace(TINY, **bad), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_command_line(tmp_path):
    out = tmp_path / "cli"
    command = ["-m", "datamodules.simulate", "srraw", "--out", str(out), "--scenes", "1", "--size", "256x192",
               "--lens-blur", "0.8", "--luma-denoise", "1", "--jpeg-subsampling", "4:2:0", "--cfa-pattern", "GRBG",
               "--bit-depth", "12", "--jpeg-border", "4", "--portrait-fraction", "0"]
    result = subprocess.run(
        [sys.executable, *command],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout and " s" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["00001", "simulation.json"]
    assert len(list((out / "00001").glob("*.DNG"))) == len(SRRAWSimulation().focal_lengths)
    config = json.loads((out / "simulation.json").read_text())["config"]
    assert (config["width"], config["height"], config["scenes"], config["seed"]) == (256, 192, 1, 0)
    assert (config["luma_denoise"], config["chroma_denoise"], config["jpeg_subsampling"]) == (1.0, 0.0, "4:2:0")
    assert config["lens_blur"] == 0.8
    assert (config["cfa_pattern"], config["bit_depth"], config["jpeg_border"], config["portrait_fraction"]) == ("GRBG", 12, 4, 0.0)
    metadata = read_raw_metadata(out / "00001" / "00007.DNG")
    assert metadata.pattern == "GRBG" and metadata.white_level == 4095
    with Image.open(out / "00001" / "00007.JPG") as jpg:
        assert JpegImagePlugin.get_sampling(jpg) == 2
    with rawpy.imread(str(out / "00001" / "00007.DNG")) as raw:
        assert raw.raw_image.shape == (192, 256)
        assert raw.other.focal_length == 24.0


def test_command_line_rejects_a_bad_size(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["srraw", "--out", str(tmp_path / "x"), "--size", "256by192"])
    assert exit_info.value.code == 2
    assert "1024x768" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
