"""The dual-zoom prepare command on simulated phone captures: zoom, crop, alignment against the simulator's
truth, colour fit, skipped pairs, any zoom ratio, both-or-none writing, EXIF handling."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import datamodules.dualzoom.prepare as prepare_module
from datamodules.common.flow_weights import read_flow_weights
from datamodules.dualzoom.degradation import area_downscale
from datamodules.dualzoom.layout import find_pairs, read_png
from datamodules.dualzoom.prepare import (
    centre_crop_box,
    largest_centred_box,
    main,
    prepare,
    prepare_pair,
    read_capture_image,
)
from datamodules.simulate.dualzoom import orient_points, short_to_tele, simulate_dualzoom
from ops.flow import PWCNet, build_flow_estimator
from tests.conftest import single_torch_thread
from tests.datamodules.dualzoom.conftest import CAPTURES

pytestmark = pytest.mark.usefixtures("one_thread")


def _truth(root: Path) -> dict:
    return json.loads((root / "simulation_truth.json").read_text())["pairs"]


def _error_against_truth(pair, truth: dict, scale: int) -> np.ndarray:
    """|sampled − true| telephoto position per HR pixel, in HR pixels.

    HR pixel h sits at short-focus (displayed) coordinates crop + box + (h + 0.5)/s − 0.5; the truth maps
    it to the telephoto's stored frame, which the EXIF orientation turns into the displayed frame.
    """
    top, left, _, _ = pair.report["crop"]
    box_top, box_left, _, _ = pair.report["kept_box"]
    rows, cols = np.meshgrid(np.arange(pair.hr.shape[0]), np.arange(pair.hr.shape[1]), indexing="ij")
    shown = np.stack([left + box_left + (cols + 0.5) / scale - 0.5, top + box_top + (rows + 0.5) / scale - 0.5], -1)
    size, orientation = (truth["height"], truth["width"]), truth["orientation"]
    true = orient_points(short_to_tele(truth, orient_points(shown, size, orientation, inverse=True)), size, orientation)
    error = np.hypot(*(true - np.moveaxis(pair.positions, 0, -1)).reshape(-1, 2).T)
    return error * scale / pair.report["zoom"]  # telephoto pixels → HR pixels


@pytest.fixture(scope="module")
def inputs(captures_root, tmp_path_factory) -> Path:
    """The simulated captures, plus a pair whose telephoto shows another scene and a lone short-focus image."""
    folder = tmp_path_factory.mktemp("inputs")
    for camera in ("short", "tele"):
        shutil.copytree(captures_root / camera, folder / camera)
    shutil.copy(captures_root / "short" / "IMG_0001.JPG", folder / "short" / "IMG_0009.JPG")
    shutil.copy(captures_root / "tele" / "IMG_0003.JPG", folder / "tele" / "IMG_0009.JPG")
    shutil.copy(captures_root / "short" / "IMG_0002.JPG", folder / "short" / "IMG_0010.JPG")
    return folder


@pytest.fixture(scope="module")
def prepared(inputs, tmp_path_factory) -> tuple[Path, dict, int]:
    out = tmp_path_factory.mktemp("prepared") / "Nikon"
    with single_torch_thread():
        code = main(["--short-focus", str(inputs / "short"), "--telephoto", str(inputs / "tele"), "--out", str(out),
                     "--layout", "nikon", "--split", "train", "--no-progress"])
    return out, json.loads((out / "prepare_report_train.json").read_text()), code


def test_writes_the_nikon_layout_with_a_report(prepared, captures_root, inputs, capsys):
    out, report, code = prepared
    assert code == 0
    names = [f"DSC_IMG_000{i}" for i in (1, 2, 3)]
    assert sorted(p.name for p in (out / "train_LR").iterdir()) == [f"{n}_x1.png" for n in names]
    assert sorted(p.name for p in (out / "train_HR").iterdir()) == [f"{n}_x4.png" for n in names]
    pairs = find_pairs(out, "train", "nikon", 4)  # the dataset reader accepts the result: HR = 4 × LR exactly
    assert [p.name for p in pairs] == [f"{n}_x1.png" for n in names]
    assert (report["layout"], report["split"], report["scale"], report["flow"]) == ("nikon", "train", 4, "classical")

    truth = _truth(captures_root)
    for stem in ("IMG_0001", "IMG_0002", "IMG_0003"):
        entry = report["pairs"][stem]
        assert entry["status"] == "written" and entry["zoom_source"] == "exif_35mm" and entry["zoom_exif"] == 4.0
        assert entry["zoom"] == pytest.approx(truth[stem]["zoom_true"], rel=0.01)
        assert entry["registration_correlation"] > 0.9 and 80 < entry["kept_area_percent"] <= 100
        assert entry["residual_shift_px"] < 0.5
        lr = read_png(out / entry["lr_file"])
        assert list(lr.shape[:2]) == entry["lr_size"] and list(read_png(out / entry["hr_file"]).shape[:2]) == entry["hr_size"]
        shown = (384, 512) if truth[stem]["orientation"] != 6 else (512, 384)  # EXIF orientation applied
        assert entry["crop"] == [*centre_crop_box(shown, 4.0)[:2], shown[0] // 4, shown[1] // 4]

    skipped = report["pairs"]["IMG_0009"]
    assert skipped["status"] == "skipped" and skipped["reason"].startswith(str(inputs / "tele" / "IMG_0009.JPG"))
    assert "registration correlation" in skipped["reason"]
    lone = report["pairs"]["IMG_0010"]
    assert lone["status"] == "skipped" and lone["reason"] == f"{inputs / 'short' / 'IMG_0010.JPG'}: no image with this stem in {inputs / 'tele'}"


def test_colour_fit_brings_the_hr_to_the_lr(prepared):
    out, report, _ = prepared
    for stem in ("IMG_0001", "IMG_0002", "IMG_0003"):
        entry = report["pairs"][stem]
        fit = entry["colour_fit"]
        assert fit["error_after"] < 0.75 * fit["error_before"]
        lr = torch.from_numpy(read_png(out / entry["lr_file"])).permute(2, 0, 1).double()
        down = area_downscale(torch.from_numpy(read_png(out / entry["hr_file"])).permute(2, 0, 1).double(), 4)
        assert float((lr.mean((1, 2)) - down.mean((1, 2))).abs().max()) < 2.5  # channel means within 2.5 / 255
        assert fit["error_after"] == pytest.approx(float((lr - down).abs().mean()), abs=0.6)  # 8-bit rounding


@pytest.mark.parametrize("stem, suffix", [("IMG_0001", "JPG"), ("IMG_0002", "JPG"), ("IMG_0003", "JPG"), ("IMG_0002", "DNG")])
def test_alignment_matches_the_simulator_truth(captures_root, stem, suffix):
    pair = prepare_pair(captures_root / "short" / f"{stem}.{suffix}", captures_root / "tele" / f"{stem}.{suffix}", 4,
                        build_flow_estimator("classical"))
    error = _error_against_truth(pair, _truth(captures_root)[stem], 4)
    assert error.mean() < 0.5 and np.median(error) < 0.4
    assert pair.hr.shape == (4 * pair.lr.shape[0], 4 * pair.lr.shape[1], 3)


def test_any_zoom_ratio_on_the_layouts_grid(tmp_path, captures_root):
    """EXIF ratio 96/26 (true ≈ 3.7) into the ×4 Nikon grid, and ×4 captures into the ×2 CameraFusion grid."""
    captures = simulate_dualzoom(
        tmp_path / "captures", dataclasses.replace(CAPTURES, focal_ratio=3.7, train_pairs=1, orientations=(8,)),
        progress=False,
    )
    truth = _truth(captures)["IMG_0001"]
    pair = prepare_pair(captures / "short" / "IMG_0001.JPG", captures / "tele" / "IMG_0001.JPG", 4, build_flow_estimator())
    assert pair.report["zoom_exif"] == pytest.approx(96 / 26) and pair.report["zoom"] == pytest.approx(truth["zoom_true"], rel=0.01)
    assert pair.hr.shape == (4 * pair.lr.shape[0], 4 * pair.lr.shape[1], 3)
    assert _error_against_truth(pair, truth, 4).mean() < 0.5

    out = tmp_path / "CameraFusion"
    report = prepare(captures_root / "short", captures_root / "tele", out, "camerafusion", "test", progress=False)
    assert all(entry["status"] == "written" for entry in report["pairs"].values())
    pairs = find_pairs(out, "test", "camerafusion", 2)
    assert [p.name for p in pairs] == ["IMG_0001.png", "IMG_0002.png", "IMG_0003.png"]
    one = prepare_pair(captures_root / "short" / "IMG_0001.JPG", captures_root / "tele" / "IMG_0001.JPG", 2,
                       build_flow_estimator())
    assert _error_against_truth(one, _truth(captures_root)["IMG_0001"], 2).mean() < 0.5


def test_a_pair_is_written_whole_or_not_at_all(tmp_path, captures_root, monkeypatch):
    real = prepare_module.write_png

    def failing(path, rgb):
        if "_HR" in str(path.parent):
            raise OSError("disk full")
        real(path, rgb)

    monkeypatch.setattr(prepare_module, "write_png", failing)
    short, tele = tmp_path / "short", tmp_path / "tele"
    short.mkdir(), tele.mkdir()
    shutil.copy(captures_root / "short" / "IMG_0001.JPG", short)
    shutil.copy(captures_root / "tele" / "IMG_0001.JPG", tele)
    with pytest.raises(OSError, match="disk full"):
        prepare(short, tele, tmp_path / "out", "nikon", "train", progress=False)
    assert [list(folder.iterdir()) for folder in (tmp_path / "out" / "train_LR", tmp_path / "out" / "train_HR")] == [[], []]


def test_images_without_exif_need_the_zoom_option(tmp_path, captures_root):
    short, tele = tmp_path / "short", tmp_path / "tele"
    short.mkdir(), tele.mkdir()
    for camera, folder in (("short", short), ("tele", tele)):
        from PIL import Image

        Image.open(captures_root / camera / "IMG_0001.JPG").save(folder / "IMG_0001.png")  # pixels only
    report = prepare(short, tele, tmp_path / "out", "nikon", "test", progress=False)
    assert report["pairs"]["IMG_0001"]["reason"] == f"{short / 'IMG_0001.png'}: no EXIF focal length (tags 41989, 37386); give the zoom ratio with --zoom"
    assert not (tmp_path / "out" / "test_LR").exists() or not any((tmp_path / "out" / "test_LR").iterdir())
    report = prepare(short, tele, tmp_path / "out", "nikon", "test", zoom=4.0, progress=False)
    entry = report["pairs"]["IMG_0001"]
    assert entry["status"] == "written" and entry["zoom_source"] == "option" and entry["zoom_exif"] is None
    assert (tmp_path / "out" / "test_HR" / "DSC_IMG_0001_x4.png").is_file()


def test_raw_captures_are_read_oriented_with_their_focal_lengths(captures_root):
    raw = read_capture_image(captures_root / "tele" / "IMG_0002.DNG")  # orientation 6: shown in portrait
    jpg = read_capture_image(captures_root / "tele" / "IMG_0002.JPG")
    assert raw.rgb.shape == jpg.rgb.shape == (512, 384, 3)
    assert (raw.focal_35mm, jpg.focal_35mm) == (104, 104) and raw.focal_mm == pytest.approx(jpg.focal_mm)
    correlation = np.corrcoef(raw.rgb.mean(2).ravel(), jpg.rgb.mean(2).ravel())[0, 1]
    assert correlation > 0.9  # same pixels, same orientation (a rotated one would not correlate)


def test_largest_centred_box():
    valid = np.ones((10, 12), dtype=bool)
    assert largest_centred_box(valid) == (0, 0, 10, 12)
    valid[0, 5] = False  # top row: trimming one row each side (8×12 = 96) beats columns 6 deep (10×0)
    assert largest_centred_box(valid) == (1, 0, 8, 12)
    valid[4, 0] = False  # left column too: one row and one column off each side
    assert largest_centred_box(valid) == (1, 1, 8, 10)
    valid[:, :] = True
    valid[5, 1] = False  # two columns off each side (10×8 = 80) beats five rows (0)
    assert largest_centred_box(valid) == (0, 2, 10, 8)
    rng = np.random.default_rng(0)
    for _ in range(20):  # brute force over all symmetric trims
        valid = rng.uniform(size=(9, 11)) > 0.03
        best = max(((9 - 2 * a) * (11 - 2 * b), a, b) for a in range(5) for b in range(6)
                   if valid[a : 9 - a, b : 11 - b].all())
        top, left, height, width = largest_centred_box(valid)
        assert height * width == best[0] and valid[top : top + height, left : left + width].all()


def test_too_small_a_kept_area_is_skipped(tmp_path, captures_root):
    short, tele = tmp_path / "short", tmp_path / "tele"
    short.mkdir(), tele.mkdir()
    shutil.copy(captures_root / "short" / "IMG_0002.JPG", short)
    shutil.copy(captures_root / "tele" / "IMG_0002.JPG", tele)
    report = prepare(short, tele, tmp_path / "out", "camerafusion", "train", progress=False, min_kept_area=0.99)
    reason = report["pairs"]["IMG_0002"]["reason"]
    assert reason.startswith(f"{tele / 'IMG_0002.JPG'}: only ") and "% of the LR lies inside the telephoto (< 99 %)" in reason
    assert not (tmp_path / "out" / "train_LR").exists() or not any((tmp_path / "out" / "train_LR").iterdir())
    assert json.loads((tmp_path / "out" / "prepare_report_train.json").read_text())["pairs"]["IMG_0002"]["status"] == "skipped"


def test_zoom_ratio_prefers_35mm_equivalents():
    from datamodules.common.errors import DatasetError
    from datamodules.dualzoom.prepare import CaptureImage, zoom_ratio

    def image(name, focal, focal_35mm):
        return CaptureImage(Path(name), np.zeros((2, 2, 3), np.uint8), focal, focal_35mm)

    phone = (image("wide.jpg", 4.25, 26), image("tele.jpg", 6.0, 52))
    assert zoom_ratio(*phone) == (2.0, "exif_35mm")  # not 6.0/4.25: the sensors differ
    assert zoom_ratio(image("a.jpg", 18, None), image("b.jpg", 85, 85)) == (85 / 18, "exif_focal_length")
    assert zoom_ratio(*phone, zoom=3.7) == (3.7, "option")
    with pytest.raises(DatasetError, match="^b.jpg: no EXIF focal length"):
        zoom_ratio(image("a.jpg", 18, None), image("b.jpg", None, None))


def test_flow_weights_are_read_from_the_file_or_refused_naming_it(tmp_path, captures_root, capsys):
    common = ["--short-focus", str(captures_root / "short"), "--telephoto", str(captures_root / "tele"),
              "--out", str(tmp_path / "out"), "--layout", "nikon", "--split", "train", "--no-progress"]
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"not a weight file")
    for flow, weights, message in (
        ("pwcnet", tmp_path / "missing.pth", "missing.pth' not found; get the RAW-to-sRGB release"),
        ("raft_small", damaged, "damaged.pth: cannot read the raft_small weights"),
        ("classical", damaged, "classical (OpenCV DIS) flow takes no weights"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*common, "--flow", flow, "--flow-weights", str(weights)])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main([*common[:1], str(tmp_path / "no_such_folder"), *common[2:]])
    assert "no_such_folder: folder does not exist" in capsys.readouterr().err
    # a state dict written by torch comes back whole and builds the estimator
    path = tmp_path / "pwc.pth"
    torch.save(PWCNet().state_dict(), path)
    state = read_flow_weights("pwcnet", path)
    assert state.keys() == PWCNet().state_dict().keys()
    assert isinstance(build_flow_estimator("pwcnet", state), PWCNet)
