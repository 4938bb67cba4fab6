"""The dual-camera simulator: determinism, manifest and truth, exact LR/HR alignment, captures' EXIF and
geometry, distinct colour renditions, atomic writing and the command line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import rawpy
import tifffile
import torch
import torch.nn.functional as F
from PIL import ExifTags, Image, ImageOps

import datamodules.simulate.dualzoom as dualzoom_module
from datamodules.dualzoom.degradation import area_downscale
from datamodules.dualzoom.layout import find_pairs, read_png
from datamodules.simulate.__main__ import main as cli_main
from datamodules.simulate.dualzoom import (
    lr_box,
    orient_points,
    short_to_tele,
    simulate_dualzoom,
    tele_to_short,
)
from datamodules.simulate.dualzoom_config import DualZoomSimulation
from ops.registration import register_similarity
from tests.conftest import NIKON
from tests.datamodules.dualzoom.conftest import CAPTURES

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = DualZoomSimulation(layout="camerafusion", train_pairs=1, test_pairs=1, width=96, height=64, focal_ratio=2.0)


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255


def test_deterministic_with_manifest_and_truth(tmp_path):
    first = simulate_dualzoom(tmp_path / "a", TINY, progress=False)
    second = simulate_dualzoom(tmp_path / "b", TINY, progress=False)
    assert _files(first) == _files(second)
    assert _files(first) != _files(simulate_dualzoom(tmp_path / "c", dataclasses.replace(TINY, seed=1), progress=False))
    manifest = json.loads((first / "simulation.json").read_text())
    assert manifest == {"format": 1, "dataset": "dualzoom", "config": TINY.to_dict()}
    truth = json.loads((first / "simulation_truth.json").read_text())
    assert truth["format"] == 1 and sorted(truth["pairs"]) == ["IMG_0001", "IMG_0002"]
    pair = truth["pairs"]["IMG_0002"]
    assert (pair["split"], pair["lr_file"], pair["hr_file"], pair["scale"]) == ("test", "test_LR/IMG_0002.png",
                                                                             "test_HR/IMG_0002.png", 2)
    assert pair["lr_box"] == [*lr_box(TINY)[:2], 32 - 8, 48 - 8]
    assert abs(pair["zoom_true"] / 2.0 - 1) <= TINY.max_zoom_deviation and pair["zoom_nominal"] == 2.0
    assert abs(pair["rotation_deg"]) <= TINY.max_rotation_deg and np.hypot(*pair["translation_px"]) <= TINY.max_translation_px
    assert pair["short"]["illuminant_gains"] == pair["tele"]["illuminant_gains"]  # one scene, one illuminant
    assert pair["short"]["wb_gains"] != pair["tele"]["wb_gains"]  # each camera's white balance errs differently
    assert sorted(p.name for p in first.iterdir()) == ["simulation.json", "simulation_truth.json", "test_HR",
                                                       "test_LR", "train_HR", "train_LR"]


def test_truth_mappings_are_inverse_and_bounded():
    truth = json.loads(json.dumps(dualzoom_module.draw_pair(CAPTURES, 2).truth(CAPTURES)))
    points = np.stack(np.meshgrid(np.linspace(0, 511, 9), np.linspace(0, 383, 7)), -1)
    short = tele_to_short(truth, points)
    np.testing.assert_allclose(short_to_tele(truth, short), points, atol=1e-6)
    matrix = np.asarray(truth["tele_to_short"])
    parallax = short - (points @ matrix[:2, :2].T + matrix[:2, 2])  # A·d(q), in short-focus pixels
    amplitude = np.hypot(*parallax.reshape(-1, 2).T).max() * truth["zoom_true"]
    assert 0.3 < amplitude <= CAPTURES.parallax_px[1] + 1e-9
    centre = np.array([255.5, 191.5])
    np.testing.assert_allclose(tele_to_short(truth, centre[None])[0] - centre, truth["translation_px"],
                               atol=amplitude / truth["zoom_true"] + 1e-9)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_orient_points_matches_exif_transpose(orientation):
    stored = np.zeros((4, 6, 3), dtype=np.uint8)
    stored[1, 4] = 255
    exif = Image.Exif()
    exif[274] = orientation
    image = Image.fromarray(stored)
    image.info["exif"] = exif.tobytes()
    shown = np.asarray(ImageOps.exif_transpose(image))
    y, x = np.argwhere(shown[..., 0] == 255)[0]
    assert orient_points(np.array([4.0, 1.0]), (4, 6), orientation).tolist() == [x, y]
    assert orient_points(np.array([x, y], dtype=float), (4, 6), orientation, inverse=True).tolist() == [4, 1]


def test_layout_hr_is_exactly_aligned_with_the_lr(nikon_root):
    """Down(HR) registers onto the LR with a shift of at most 0.15 LR px (the same scene points by construction)."""
    pairs = find_pairs(nikon_root, "train", "nikon", 4) + find_pairs(nikon_root, "test", "nikon", 4)
    assert len(pairs) == NIKON.train_pairs + NIKON.test_pairs
    for pair in pairs:
        lr = _grey(read_png(pair.lr_path))
        down = area_downscale(torch.from_numpy(_grey(read_png(pair.hr_path))), 4).numpy()
        result = register_similarity(torch.from_numpy(lr).float(), torch.from_numpy(down).float())
        centre = torch.tensor([(lr.shape[1] - 1) / 2, (lr.shape[0] - 1) / 2, 1.0], dtype=torch.float64)
        shift = (result.matrix @ centre)[:2] - centre[:2]
        assert float(shift.norm()) < 0.15, pair.name
        assert result.correlation > 0.9


def test_captures_carry_exif_and_differ_in_colour(captures_root):
    truth = json.loads((captures_root / "simulation_truth.json").read_text())["pairs"]
    assert sorted(p.name for p in (captures_root / "tele").iterdir()) == [
        f"IMG_000{i}.{ext}" for i in (1, 2, 3) for ext in ("DNG", "JPG")
    ]
    for name, pair in truth.items():
        assert pair["orientation"] == {"IMG_0001": 1, "IMG_0002": 6, "IMG_0003": 3}[name]
        for camera, focal_35mm in (("short", 26), ("tele", 104)):
            with Image.open(captures_root / camera / f"{name}.JPG") as jpg:
                exif = jpg.getexif()
                exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
                assert jpg.size == (512, 384) and exif[274] == pair["orientation"]
                assert exif_ifd[41989] == focal_35mm and float(exif_ifd[37386]) == pair[camera]["focal_mm"]
            with tifffile.TiffFile(captures_root / camera / f"{name}.DNG") as dng:
                tags = dng.pages[0].tags
                assert tags[274].value == pair["orientation"] and tags[41989].value == focal_35mm
            with rawpy.imread(str(captures_root / camera / f"{name}.DNG")) as raw:
                assert raw.raw_image.shape == (384, 512) and raw.other.focal_length == pytest.approx(pair[camera]["focal_mm"])
                assert list(raw.camera_whitebalance[:3]) == pytest.approx(pair[camera]["wb_gains"], abs=1e-3)
        assert pair["tele"]["focal_mm"] / pair["short"]["focal_mm"] != pytest.approx(4.0, abs=0.5)  # phone sensors differ

    # The telephoto seen through the truth matches the short-focus image (geometry), with other colours.
    pair = truth["IMG_0001"]
    short = np.asarray(Image.open(captures_root / "short" / "IMG_0001.JPG")).astype(np.float32) / 255
    tele = np.asarray(Image.open(captures_root / "tele" / "IMG_0001.JPG")).astype(np.float32) / 255
    points = np.stack(np.meshgrid(4 * np.arange(128) + 1.5, 4 * np.arange(96) + 1.5), -1)  # 4×4 block centres…
    blocks = F.avg_pool2d(torch.from_numpy(tele).permute(2, 0, 1)[None], 4)[0]  # …and the tele averaged over them
    on_short = tele_to_short(pair, points)
    grid = torch.from_numpy(np.stack([on_short[..., 0] / 511 * 2 - 1, on_short[..., 1] / 383 * 2 - 1], -1)).float()
    sampled = F.grid_sample(torch.from_numpy(short).permute(2, 0, 1)[None], grid[None], align_corners=True)[0]
    assert float(torch.corrcoef(torch.stack([sampled.mean(0).flatten(), blocks.mean(0).flatten()]))[0, 1]) > 0.9
    channel_gap = (sampled.mean((1, 2)) / sampled.mean()) - (blocks.mean((1, 2)) / blocks.mean())
    assert float(channel_gap.abs().max()) > 0.02  # the two cameras render colours differently


def test_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []
    real = dualzoom_module.write_png

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        real(*args)

    monkeypatch.setattr(dualzoom_module, "write_png", failing)
    with pytest.raises(KeyboardInterrupt):
        simulate_dualzoom(tmp_path / "out", TINY, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "bad", [{"width": 97}, {"train_pairs": 0, "test_pairs": 0}, {"trim": 20}, {"orientations": (2,)},
            {"focal_ratio": 1.0}, {"layout": "srraw"}, {"parallax_px": (3.0, 1.0)}]
)
def test_invalid_configs_are_rejected(tmp_path, bad):
    with pytest.raises(ValueError, match="invalid DualZoomSimulation"):
        simulate_dualzoom(tmp_path / "x", dataclasses.replace(TINY, **bad), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        simulate_dualzoom(tmp_path, TINY, progress=False)


def test_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    cli_main(["dualzoom", "--out", str(out), "--layout", "camerafusion", "--pairs", "1", "1", "--size", "96x64",
              "--focal-ratio", "2", "--seed", "4", "--no-progress"])
    assert str(out) in capsys.readouterr().out
    config = json.loads((out / "simulation.json").read_text())["config"]
    assert (config["layout"], config["width"], config["height"], config["seed"], config["train_pairs"]) == (
        "camerafusion", 96, 64, 4, 1)
    assert read_png(out / "train_HR" / "IMG_0001.png").shape == (2 * 24, 2 * 40, 3)
    captures = tmp_path / "captures"
    cli_main(["dualzoom", "--out", str(captures), "--output", "captures", "--pairs", "1", "0", "--size", "96x64",
              "--no-progress"])
    assert sorted(p.name for p in (captures / "short").iterdir()) == ["IMG_0001.DNG", "IMG_0001.JPG"]
