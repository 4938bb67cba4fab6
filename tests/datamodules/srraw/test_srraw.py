"""SRRAWDataModule on simulated SR-RAW captures: alignment vs truth, pairs, batches, determinism, caching, errors."""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image

from datamodules import SRRAWDataModule
from datamodules.common.epoch_sampler import EpochSampler
from datamodules.common.errors import DatasetError
from datamodules.common.images import read_jpg
from datamodules.common.raw import read_raw_mosaic
from datamodules.simulate import SRRAWSimulation, shot_mapping, simulate_srraw
from datamodules.srraw.alignment import ALIGNMENT_CACHE_NAME, SceneSkipped, align_scene, load_alignment, prepare_alignments
from datamodules.srraw.focal_pairs import select_focal_pairs
from datamodules.srraw.layout import find_scenes
from datamodules.srraw.official import fov_crop_to_shot
from datamodules.srraw.pair_geometry import CropRegion, output_grid, valid_region
from datamodules.srraw.scene_split import read_split_file, split_counts, split_scenes
from ops.geometry import map_points, scale_map
from ops.registration import register_similarity
from tests.conftest import single_torch_thread
from tests.datamodules.common.test_raw import write_linear_dng

SIMULATION = SRRAWSimulation(scenes=3, width=512, height=384, seed=7)
NOMINAL_FOCALS = {f"{i + 1:05d}": f for i, f in enumerate((240.0, 150.0, 100.0, 70.0, 50.0, 35.0, 24.0))}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Simulated data, aligned once (through the DataModule's own prepare_data)."""
    root = tmp_path_factory.mktemp("srraw") / "data"
    with single_torch_thread():  # as in one_thread (a module-scoped fixture cannot use it)
        SRRAWDataModule(str(root), simulate=SIMULATION, num_workers=0).prepare_data()
    return root


def _module(root: Path, **kwargs) -> SRRAWDataModule:
    arguments = dict(zoom=4, patch_size=16, target_margin=8, eval_crop=24, num_workers=0, split_fractions=(1.0, 0.0, 0.0))
    arguments.update(kwargs)
    module = SRRAWDataModule(str(root), **arguments)
    module.prepare_data()  # the alignment is cached; decodes the windows of these pairs
    module.setup("fit")
    return module


def _truth_in_jpg_pixels(truth: dict, shot: str, points: np.ndarray) -> np.ndarray:
    """Where reference JPG pixels ``points`` (..., 2) land in ``shot``'s JPG (the truth is in sensor pixels)."""
    top, left = truth["jpeg_box"][:2]
    return shot_mapping(truth, shot, points + [left, top]) - [left, top]


def _copy_scene(source: Path, destination: Path, shots: tuple[str, ...]) -> Path:
    destination.mkdir(parents=True)
    for shot in shots:
        for suffix in (".DNG", ".JPG"):
            shutil.copy2(source / f"{shot}{suffix}", destination / f"{shot}{suffix}")
    return destination


def _truth(root: Path, scene: str) -> dict:
    return json.loads((root / scene / "simulation_truth.json").read_text())


# ------------------------------------------------------------------ construction, simulation, caches


def test_construction_does_no_io(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("I/O while constructing the DataModule")

    for name in ("stat", "scandir", "listdir", "mkdir", "makedirs"):
        monkeypatch.setattr(os, name, forbidden)
    monkeypatch.setattr(builtins, "open", forbidden)
    missing = tmp_path / "missing"
    module = SRRAWDataModule(str(missing), split_file=str(tmp_path / "split.json"), cache_dir=str(tmp_path / "cache"),
                             simulate=SRRAWSimulation(scenes=1))
    png = SRRAWDataModule(str(missing), input="png")
    monkeypatch.undo()

    assert (module.in_channels, png.in_channels) == (4, 12)
    assert not missing.exists() and not (tmp_path / "cache").exists()
    with pytest.raises(DatasetError) as error:
        SRRAWDataModule(str(missing)).prepare_data()
    assert str(missing) in str(error.value)


def test_simulation_is_reused_and_a_different_config_is_an_error(root):
    caches = sorted(root.glob(f"*/{ALIGNMENT_CACHE_NAME}"))
    assert len(caches) == 3
    stamps = [path.stat().st_mtime_ns for path in caches]
    SRRAWDataModule(str(root), simulate=SIMULATION).prepare_data()  # same config: nothing is redone
    assert [path.stat().st_mtime_ns for path in caches] == stamps
    other = SRRAWSimulation(scenes=3, width=512, height=384, seed=8)
    with pytest.raises(DatasetError, match="simulated with") as error:
        SRRAWDataModule(str(root), simulate=other).prepare_data()
    assert str(root / "simulation.json") in str(error.value)


def test_data_of_an_older_simulator_format_is_refused_by_name(root):
    manifest = root / "simulation.json"
    original = manifest.read_text()
    older = json.loads(original)
    older["format"] = 1
    try:
        manifest.write_text(json.dumps(older))
        with pytest.raises(DatasetError, match="simulator format 1, this version writes format 3") as error:
            SRRAWDataModule(str(root), simulate=SIMULATION).prepare_data()
        assert str(manifest) in str(error.value) and f"delete {root}" in str(error.value)
    finally:
        manifest.write_text(original)


def test_cached_alignment_matches_the_simulator_truth(root):
    """Shots differ by a similarity, a perspective change (2 px) and a smooth warp; the JPGs are the sensor
    image cut by 8 px on every side. The similarity found is within a pixel of the true mapping."""
    errors = []
    for scene in find_scenes(root):
        alignment = load_alignment(scene)
        truth = _truth(root, scene.name)
        assert alignment.reference == "00001" and len(alignment.shots) == 7
        ys, xs = torch.meshgrid(torch.linspace(0, 367, 13, dtype=torch.float64), torch.linspace(0, 495, 17, dtype=torch.float64), indexing="ij")
        for name, shot in alignment.shots.items():
            expected = truth["shots"][name]
            # A grid over the reference frame (inside every wider shot), compared in the shot's JPG pixels.
            ours = torch.stack(map_points(shot.matrix, xs, ys), dim=-1).numpy()
            true = _truth_in_jpg_pixels(truth, name, torch.stack((xs, ys), dim=-1).numpy())
            errors.append(float(np.linalg.norm(ours - true, axis=-1).max()))
            assert shot.focal_length == expected["focal_exif"]
            assert shot.camera_white_balance == pytest.approx(expected["wb_gains"], abs=1e-3)
            assert shot.official_white_balance is None  # no wb.txt
            assert (shot.pattern, shot.black_levels, shot.white_level) == ("RGGB", (512.0,) * 4, 16383.0)
            assert shot.raw_size == (384, 512) and shot.jpg_size == (368, 496)
            # the camera's raw → JPG map: the crop by 8 px, not a rescale
            np.testing.assert_allclose(shot.bayer_to_jpg, [[1, 0, -8], [0, 1, -8], [0, 0, 1]], atol=0.2)
            assert shot.alignment_source == ("reference" if name == "00001" else "registration")
            assert shot.score > (0.95 if name == "00002" else 0.6)  # the widest shots are upsampled ~10×
    assert max(errors) <= 1.0
    assert float(np.mean(errors)) <= 0.4


def test_what_a_similarity_cannot_fit_is_reported(tmp_path):
    """The same scene without and with a strong perspective change (12 px at the corners): the residual
    reported for the tele shot grows with it and follows the distance between the found and the true
    mapping (a tile averages the misalignment over 64 pixels, so it reads lower than the pointwise 90th
    percentile)."""
    residuals, errors = [], []
    for perspective in (0.0, 12.0):
        config = dataclasses.replace(SIMULATION, scenes=1, max_perspective_px=perspective, max_warp_px=0.0)
        data = tmp_path / f"perspective{perspective:g}"
        simulate_srraw(data, config, progress=False)
        scene = find_scenes(data)[0]
        shot = align_scene(scene).shots["00002"]
        ys, xs = torch.meshgrid(torch.linspace(0, 367, 13, dtype=torch.float64), torch.linspace(0, 495, 17, dtype=torch.float64), indexing="ij")
        ours = torch.stack(map_points(shot.matrix, xs, ys), dim=-1).numpy()
        true = _truth_in_jpg_pixels(_truth(data, scene.name), "00002", torch.stack((xs, ys), dim=-1).numpy())
        errors.append(float(np.quantile(np.linalg.norm(ours - true, axis=-1), 0.9)))
        residuals.append(shot.residual_px)
    assert errors[0] < 0.1 and residuals[0] < 0.3  # a similarity fits: only the measurement's noise
    assert errors[1] > 1.0 and 0.4 * errors[1] <= residuals[1] <= 1.5 * errors[1]
    assert residuals[1] > residuals[0] + 0.4


def test_alignment_at_a_reduced_working_resolution(root):
    """registration_size below the image size exercises the anti-aliased downscaling of every shot."""
    scene = find_scenes(root)[1]
    alignment = align_scene(scene, registration_size=256)
    ys, xs = torch.meshgrid(torch.linspace(0, 367, 7, dtype=torch.float64), torch.linspace(0, 495, 9, dtype=torch.float64), indexing="ij")
    everything = _truth(root, scene.name)
    for name, shot in alignment.shots.items():
        ours = torch.stack(map_points(shot.matrix, xs, ys), dim=-1).numpy()
        error = ours - _truth_in_jpg_pixels(everything, name, torch.stack((xs, ys), dim=-1).numpy())
        assert float(np.linalg.norm(error, axis=-1).max()) <= 1.0, name


def test_cache_is_reused_and_invalidated_by_a_changed_file(tmp_path, root):
    scene_dir = _copy_scene(root / "00001", tmp_path / "data" / "00001", ("00001", "00002", "00005"))
    scenes = find_scenes(tmp_path / "data")
    assert prepare_alignments(scenes, progress=False).computed == ["00001"]
    cache = scene_dir / ALIGNMENT_CACHE_NAME
    stamp = cache.stat().st_mtime_ns
    report = prepare_alignments(scenes, progress=False)
    assert report.computed == [] and report.current == ["00001"]
    assert cache.stat().st_mtime_ns == stamp

    jpg = scene_dir / "00002.JPG"
    os.utime(jpg, ns=(jpg.stat().st_atime_ns, jpg.stat().st_mtime_ns + 10**9))
    with pytest.raises(DatasetError, match="stale") as error:
        load_alignment(scenes[0])
    assert str(cache) in str(error.value)
    assert prepare_alignments(scenes, progress=False).computed == ["00001"]
    assert load_alignment(scenes[0]).shots["00002"].jpg_path == jpg

    cache_dir = tmp_path / "cache"
    assert prepare_alignments(scenes, cache_dir=cache_dir, progress=False).computed == ["00001"]
    assert (cache_dir / "00001" / ALIGNMENT_CACHE_NAME).is_file()


def _damage(scene_dir: Path, problem: str) -> Path:
    """Break the scene as ``problem`` says; return the file the error must name."""
    raw, jpg = scene_dir / "00005.DNG", scene_dir / "00005.JPG"
    if problem == "corrupt raw":
        raw.write_bytes(raw.read_bytes()[:1000])
        return raw
    if problem == "missing jpg":
        jpg.unlink()
        return jpg
    if problem == "foreign jpg":  # the JPG of the same focal length from another scene
        shutil.copy2(scene_dir.parents[1] / "foreign.JPG", jpg)
        return jpg
    write_linear_dng(raw)  # "non-Bayer raw"
    return raw


@pytest.mark.parametrize("problem", ["corrupt raw", "missing jpg", "non-Bayer raw"])
def test_bad_scene_names_the_file_and_keeps_no_cache(tmp_path, root, problem):
    scene_dir = _copy_scene(root / "00002", tmp_path / "data" / "00002", ("00001", "00005"))
    prepare_alignments(find_scenes(tmp_path / "data"), progress=False)  # a valid cache that becomes stale
    assert (scene_dir / ALIGNMENT_CACHE_NAME).is_file()
    named = _damage(scene_dir, problem)
    before = {path.name for path in scene_dir.iterdir()} - {ALIGNMENT_CACHE_NAME}

    with pytest.raises(DatasetError) as error:
        SRRAWDataModule(str(tmp_path / "data")).prepare_data()

    assert str(named) in str(error.value)
    assert {path.name for path in scene_dir.iterdir()} == before  # no cache, no temporary file


def _drop_focal_length(jpg: Path, raw: Path) -> None:
    """Remove the focal length from a shot: the JPG's EXIF and the DNG's FocalLength tag (rewritten)."""
    with Image.open(jpg) as image:
        pixels, exif = np.asarray(image), image.getexif()
    del exif.get_ifd(0x8769)[37386]
    Image.fromarray(pixels).save(jpg, quality=95, exif=exif)
    with tifffile.TiffFile(raw) as tif:
        page = tif.pages[0]
        mosaic = page.asarray()
        tags = [(tag.code, tag.dtype, tag.count, tag.value, True) for tag in page.tags.values()
                if tag.code in (50706, 50707, 50708, 271, 272, 274, 33421, 33422, 50710, 50711, 50713, 50714, 50717, 50728, 50721, 50778)]
    tifffile.imwrite(raw, mosaic, photometric="cfa", extratags=tags, metadata=None)


def test_scenes_that_are_no_zoom_sequence_are_skipped_and_reported(tmp_path, root, caplog):
    data = tmp_path / "data"
    _copy_scene(root / "00001", data / "00001", ("00001", "00005"))
    _copy_scene(root / "00002", data / "00002", ("00001",))  # a single shot
    no_focal = _copy_scene(root / "00003", data / "00003", ("00001", "00005"))
    _drop_focal_length(no_focal / "00005.JPG", no_focal / "00005.DNG")
    scenes = find_scenes(data)
    with caplog.at_level("WARNING"):
        report = prepare_alignments(scenes, progress=False)
    assert report.computed == ["00001"]
    assert set(report.skipped) == {"00002", "00003"}
    assert "has 1 shot" in report.skipped["00002"] and "00005.JPG: no EXIF focal length" in report.skipped["00003"]
    assert "00002" in caplog.text and "00003" in caplog.text
    assert load_alignment(scenes[1]) is None  # the skip is recorded, not recomputed every time
    assert set(prepare_alignments(scenes, progress=False).skipped) == {"00002", "00003"}
    module = _module(data, zoom=4, patch_size=8)
    assert {pair.scene for pair in module.pairs["train"]} == {"00001"}
    with pytest.raises(SceneSkipped, match="has 1 shot"):
        SRRAWDataModule(str(data), strict=True, cache_dir=str(tmp_path / "strict")).prepare_data()


def test_a_jpg_that_is_not_the_raws_picture_is_named(tmp_path, root):
    scene_dir = _copy_scene(root / "00002", tmp_path / "data" / "00002", ("00001", "00005"))
    shutil.copy2(root / "00003" / "00005.JPG", tmp_path / "foreign.JPG")
    named = _damage(scene_dir, "foreign jpg")
    with pytest.raises(DatasetError, match="does not show the picture of the raw 00005.DNG") as error:
        SRRAWDataModule(str(tmp_path / "data"), zoom=4, split_fractions=(1.0, 0.0, 0.0), patch_size=8).prepare_data()
    assert str(named) in str(error.value)


def test_white_balance_comes_from_one_source(tmp_path, root):
    scene_dir = _copy_scene(root / "00001", tmp_path / "data" / "00001", ("00001", "00005"))
    truth = _truth(root, "00001")["shots"]
    camera = _module(tmp_path / "data", patch_size=8)
    pair = camera.pairs["train"][0]
    assert pair.wb_input == pytest.approx(truth["00005"]["wb_gains"], abs=1e-3)
    assert camera.datasets["train"][0]["wb_source"] == "camera"
    (scene_dir / "wb.txt").write_text("WB\n/some/where/00001/00005:\n2.2 1.1 1.1 1.76\n")  # 00001 missing
    with pytest.raises(DatasetError, match="no official white balance for shot 00001") as error:
        _module(tmp_path / "data", patch_size=8, wb_source="wb.txt")
    assert str(scene_dir / "wb.txt") in str(error.value)
    (scene_dir / "wb.txt").write_text("WB\n/a/00005:\n2.2 1.1 1.1 1.76\n/a/00001:\n1.9 1.0 1.0 1.5\n")
    official = _module(tmp_path / "data", patch_size=8, wb_source="wb.txt")
    pair = official.pairs["train"][0]
    assert pair.wb_input == pytest.approx((2.0, 1.0, 1.6)) and pair.wb_target == pytest.approx((1.9, 1.0, 1.5))
    assert official.datasets["train"][0]["wb_source"] == "wb.txt"


# ------------------------------------------------------------------ pairs and splits


def test_pairs_are_chosen_by_focal_ratio():
    zoom4 = [(p.input, p.target) for p in select_focal_pairs(NOMINAL_FOCALS, 4)]
    zoom8 = [(p.input, p.target) for p in select_focal_pairs(NOMINAL_FOCALS, 8)]
    assert zoom4 == [("00005", "00001"), ("00006", "00002"), ("00007", "00003")]
    assert zoom8 == [("00007", "00001")]
    assert [round(p.ratio, 3) for p in select_focal_pairs(NOMINAL_FOCALS, 4)] == [4.8, 4.286, 4.167]
    narrow = [(p.input, p.target) for p in select_focal_pairs(NOMINAL_FOCALS, 4, (0.95, 1.05))]  # ratios in [3.8, 4.2]
    assert narrow == [("00007", "00003")]
    assert select_focal_pairs(NOMINAL_FOCALS, 4, (1.21, 1.3)) == []  # nothing in [4.84, 5.2]
    assert [(p.input, p.target) for p in select_focal_pairs({"a": 10.0, "b": 41.0, "c": 44.0}, 4)] == [("a", "b")]


@pytest.mark.parametrize("zoom, expected", [(4, {("00005", "00001"), ("00006", "00002"), ("00007", "00003")}), (8, {("00007", "00001")})])
def test_datamodule_pairs_on_simulated_scenes(root, zoom, expected):
    module = _module(root, zoom=zoom, patch_size=8)
    pairs = module.pairs["train"]
    assert sorted({p.scene for p in pairs}) == ["00001", "00002", "00003"]
    for scene in ("00001", "00002", "00003"):
        assert {(p.input.name, p.target.name) for p in pairs if p.scene == scene} == expected
    for pair in pairs:
        assert pair.focal_ratio == pytest.approx(pair.target.focal_length / pair.input.focal_length)


def test_pairs_too_small_for_a_training_crop_are_skipped(root, caplog):
    with caplog.at_level("WARNING", logger="datamodules.srraw.datamodule"):
        module = _module(root, zoom=8, patch_size=30, split_fractions=(0.8, 0.1, 0.1))
    assert module.pairs["train"] == [] and len(module.datasets["train"]) == 0
    assert "00007 → 00001 skipped" in caplog.text
    assert len(module.pairs["val"]) == len(module.pairs["test"]) == 1  # evaluation takes any region


def test_scene_split_counts_and_determinism(tmp_path):
    assert split_counts(3, (0.8, 0.1, 0.1)) == (1, 1, 1)
    assert split_counts(10, (0.8, 0.1, 0.1)) == (8, 1, 1)
    assert split_counts(500, (0.8, 0.1, 0.1)) == (400, 50, 50)
    assert split_counts(2, (0.8, 0.1, 0.1)) == (1, 0, 1)
    assert split_counts(5, (1.0, 0.0, 0.0)) == (5, 0, 0)

    for name in [f"{i:05d}" for i in range(1, 8)] + ["cropped"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / ("00001.ARW" if name != "cropped" else "00001.JPG")).touch()
    scenes = find_scenes(tmp_path)
    assert [s.name for s in scenes] == [f"{i:05d}" for i in range(1, 8)]  # a folder without raws is no scene
    split = split_scenes(scenes, (0.8, 0.1, 0.1), seed=0)
    assert sorted(sum(split.values(), [])) == [s.name for s in scenes]
    assert [len(split[k]) for k in ("train", "val", "test")] == [5, 1, 1]
    assert split == split_scenes(scenes, (0.8, 0.1, 0.1), seed=0)
    assert any(split_scenes(scenes, (0.8, 0.1, 0.1), seed=s) != split for s in range(1, 5))


def test_released_layout_and_split_file(tmp_path):
    for folder in ["train/00001", "train/00002", "train/00003", "train/00004", "test/00001"]:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "00001.arw").touch()
    scenes = find_scenes(tmp_path)
    assert [(s.name, s.released_split) for s in scenes][-1] == ("test/00001", "test")
    split = split_scenes(scenes, (0.8, 0.1, 0.1), seed=0)
    assert split["test"] == ["test/00001"] and len(split["val"]) == 1 and len(split["train"]) == 3

    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": ["train/00001"], "test": ["test/00001"]}))
    assert read_split_file(split_file, scenes) == {"train": ["train/00001"], "val": [], "test": ["test/00001"]}
    split_file.write_text(json.dumps({"val": ["train/00002"], "test": ["train/00002", "test/00001"]}))
    assert read_split_file(split_file, scenes)["test"] == ["test/00001", "train/00002"]  # val and test may overlap
    split_file.write_text(json.dumps({"train": ["train/00001", "train/00099"]}))
    with pytest.raises(DatasetError, match="unknown scenes") as error:
        read_split_file(split_file, scenes)
    assert str(split_file) in str(error.value) and "train/00099" in str(error.value)
    split_file.write_text(json.dumps({"train": ["train/00001"], "test": ["train/00001"]}))
    with pytest.raises(DatasetError, match="both training and evaluation") as error:
        read_split_file(split_file, scenes)
    assert str(split_file) in str(error.value)


def test_split_file_drives_the_datamodule(tmp_path, root):
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": ["00002"], "val": ["00003"], "test": ["00001"]}))
    module = _module(root, split_file=str(split_file))
    assert {name: sorted({p.scene for p in pairs}) for name, pairs in module.pairs.items()} == {
        "train": ["00002"], "val": ["00003"], "test": ["00001"]
    }


# ------------------------------------------------------------------ geometry and samples


def test_output_grid_and_size_rescaling():
    xs, ys = output_grid(CropRegion(top=10, left=20, height=2, width=3), zoom=4, margin=2)
    assert xs.shape == ys.shape == (2 * 4 * 2 + 4, 2 * 4 * 3 + 4)
    assert float(xs[0, 2]) == 40 + 0.5 / 4 - 0.5  # output pixel u = 0 of packed column 20
    assert float(xs[0, 0]) == 40 + (-2 + 0.5) / 4 - 0.5 and float(ys[2, 0]) == 20 + 0.5 / 4 - 0.5
    assert float(xs[0, 2:6].mean()) == 40.0  # the zoom output pixels of a Bayer pixel are centred on it
    # Sony: 6048×4024 visible raw, 6000×4000 JPG; pixel centres and edges correspond.
    to_jpg = scale_map((4024, 6048), (4000, 6000))
    corners = to_jpg @ np.array([[-0.5, 6047.5, 3023.5], [-0.5, 4023.5, 2011.5], [1, 1, 1]])
    np.testing.assert_allclose(corners[:2], [[-0.5, 5999.5, 2999.5], [-0.5, 3999.5, 1999.5]])


def test_valid_region_of_a_pure_zoom():
    """Target = the central quarter of the input, magnified 4× (64×64 raw, 64×64 target)."""
    bayer_to_target = np.array([[4.0, 0.0, -96.0 + 1.5], [0.0, 4.0, -96.0 + 1.5], [0, 0, 1]])  # x_t = 4(x_b − 24) + 1.5
    region = valid_region(bayer_to_target, raw_size=(64, 64), target_size=(64, 64), zoom=2, margin=0)
    xs, ys = map_points(bayer_to_target, *output_grid(region, 2, 0))
    assert float(xs.min()) >= 1 and float(xs.max()) <= 61
    # Allowed Bayer x: [95.5/4, 155.5/4] = [23.875, 38.875]; packed column c samples 2c ± 0.25 … 2c + 1.25.
    assert (region.top, region.height) == (region.left, region.width) == (13, 6)
    wider = CropRegion(region.top, region.left, region.height, region.width + 1)
    assert float(map_points(bayer_to_target, *output_grid(wider, 2, 0))[0].max()) > 61
    with_margin = valid_region(bayer_to_target, (64, 64), (64, 64), zoom=2, margin=8)  # 8 px = 3.75 Bayer px more
    assert (with_margin.left, with_margin.width) == (15, 2)
    with pytest.raises(ValueError, match="flips"):
        valid_region(np.diag([-1.0, 1.0, 1.0]), (64, 64), (64, 64), zoom=2, margin=0)


def test_valid_region_keeps_the_whole_target_sample_inside(root):
    module = _module(root, zoom=4, patch_size=8, target_margin=16)
    for pair in module.pairs["train"]:
        region = pair.region
        xs, ys = map_points(pair.bayer_to_target, *output_grid(region, 4, 16))
        height, width = pair.target.jpg_size
        assert float(xs.min()) >= 1 and float(xs.max()) <= width - 3
        assert float(ys.min()) >= 1 and float(ys.max()) <= height - 3
        # Nearly maximal: every packed pixel whose own sample is inside lies at most 2 pixels outside.
        rows, cols = torch.meshgrid(torch.arange(pair.input.raw_size[0] // 2), torch.arange(pair.input.raw_size[1] // 2), indexing="ij")
        inside = torch.ones_like(rows, dtype=torch.bool)
        for du, dv in ((-16, -16), (-16, 23), (23, -16), (23, 23)):  # corner output pixels of one packed pixel
            tx, ty = map_points(pair.bayer_to_target, 2 * cols + (du + 0.5) / 4 - 0.5, 2 * rows + (dv + 0.5) / 4 - 0.5)
            inside &= (tx >= 1) & (tx <= width - 3) & (ty >= 1) & (ty <= height - 3)
        valid_rows, valid_cols = torch.nonzero(inside.any(1)).flatten(), torch.nonzero(inside.any(0)).flatten()
        assert region.top - 2 <= int(valid_rows.min()) <= region.top
        assert region.top + region.height - 1 <= int(valid_rows.max()) <= region.top + region.height + 1
        assert region.left - 2 <= int(valid_cols.min()) <= region.left
        assert region.left + region.width - 1 <= int(valid_cols.max()) <= region.left + region.width + 1


@pytest.mark.parametrize("kind, channels", [("raw", 4), ("png", 12), ("synthetic_raw", 4)])
def test_batches_of_every_input_variant(root, kind, channels):
    module = _module(root, input=kind, batch_size=2, split_fractions=(0.8, 0.1, 0.1))
    assert module.in_channels == channels
    p, zoom, margin = 16, 4, 8
    batch = next(iter(module.train_dataloader()))
    assert set(batch) == {"input", "target", "wb_input", "wb_target", "wb_source", "scene", "input_name",
                          "target_name", "focal_ratio", "crop"}  # training reads no more than it uses
    assert batch["input"].shape == (2, channels, p, p) and batch["input"].dtype == torch.float32
    assert batch["target"].shape == (2, 3, 2 * zoom * p + 2 * margin, 2 * zoom * p + 2 * margin)
    assert batch["wb_input"].shape == batch["wb_target"].shape == (2, 3) and batch["wb_source"] == ["camera"] * 2
    assert batch["focal_ratio"].shape == (2,) and batch["focal_ratio"].dtype == torch.float32
    assert batch["crop"].dtype == torch.int64 and batch["crop"][:, 2:].tolist() == [[p, p], [p, p]]
    assert all(isinstance(name, str) for name in batch["scene"] + batch["input_name"] + batch["target_name"])
    assert batch["target"].min() >= 0 and batch["target"].max() <= 1 and batch["target"].dtype == torch.float32
    assert (batch["wb_input"][:, 1] == 1).all()

    val = next(iter(module.val_dataloader()))
    assert set(val) == set(batch) | {"input_rgb"}
    assert val["input"].shape == (1, channels, 24, 24)
    assert val["target"].shape == (1, 3, 2 * zoom * 24 + 2 * margin, 2 * zoom * 24 + 2 * margin)
    assert val["input_rgb"].shape == (1, 3, 48, 48) and 0 <= val["input_rgb"].min() and val["input_rgb"].max() <= 1
    predict = next(iter(module.predict_dataloader()))
    assert set(predict) == {"input", "wb_input", "wb_source", "scene", "input_name", "target_name", "crop"}
    pair = module.pairs["test"][0]
    assert predict["crop"][0].tolist() == list(pair.region.as_tuple())
    assert predict["input"].shape == (1, channels, pair.region.height, pair.region.width)


def test_input_values_of_every_variant(root):
    samples = {kind: _module(root, input=kind).datasets["train"][(4, 1)] for kind in ("raw", "png", "synthetic_raw")}
    top, left, height, width = samples["raw"]["crop"].tolist()
    assert all(s["crop"].tolist() == [top, left, height, width] for s in samples.values())  # same crop for all
    pair = _module(root).datasets["train"].pairs[4]
    _, mosaic = read_raw_mosaic(pair.input.raw_path)
    window = torch.from_numpy(mosaic[2 * top : 2 * (top + height), 2 * left : 2 * (left + width)].astype(np.float32))
    expected = (torch.stack([window[0::2, 0::2], window[0::2, 1::2], window[1::2, 1::2], window[1::2, 0::2]]) - 512) / (16383 - 512)
    torch.testing.assert_close(samples["raw"]["input"], expected)
    # the JPG-based inputs see the input's JPG where the camera put the raw's pixels: 8 px up and left
    jpg = read_jpg(pair.input.jpg_path)[2 * top - 8 : 2 * (top + height) - 8, 2 * left - 8 : 2 * (left + width) - 8]
    rgb = torch.from_numpy(jpg).permute(2, 0, 1) / 255.0
    gains = samples["png"]["wb_input"].view(3, 1, 1)
    without_wb = rgb / gains ** (1 / 2.2)
    unshuffled = F.pixel_unshuffle(without_wb[None], 2)[0]
    assert (samples["png"]["input"] - unshuffled).abs().mean() < 0.02  # within the camera map's sub-pixel error
    without_wb = F.pixel_shuffle(samples["png"]["input"][None], 2)[0]  # the input's own JPG crop, as sampled
    torch.testing.assert_close(samples["png"]["input"], F.pixel_unshuffle(without_wb[None], 2)[0])
    assert samples["png"]["input"][1, 0, 0] == without_wb[0, 0, 1]  # space-to-depth: channel 4c + 2i + j
    assert samples["png"]["input"][6, 0, 0] == without_wb[1, 1, 0]

    noise = samples["synthetic_raw"]["input"] - torch.stack(
        [without_wb[0, 0::2, 0::2], without_wb[1, 0::2, 1::2], without_wb[2, 1::2, 1::2], without_wb[1, 1::2, 0::2]]
    )
    assert 0 < float(noise.std()) <= 0.0784 * 1.2
    assert abs(float(noise.mean())) < 0.02


def _zncc(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.mark.parametrize("zoom", [4, 8])
def test_target_lines_up_with_the_input(root, zoom):
    module = _module(root, zoom=zoom, patch_size=8, eval_crop=None, target_margin=8, split_fractions=(0.0, 0.0, 1.0))
    dataset = module.datasets["test"]
    assert len(dataset) == (9 if zoom == 4 else 3)
    for index in range(len(dataset)):
        sample = dataset[index]
        target = sample["target"][:, 8:-8, 8:-8]
        on_input_grid = F.avg_pool2d(target[None], zoom)[0].mean(0)  # output block k·zoom… ↦ Bayer pixel k
        camera = sample["input_rgb"].mean(0)
        assert on_input_grid.shape == camera.shape
        result = register_similarity(camera, on_input_grid)
        centre = torch.tensor([(camera.shape[1] - 1) / 2, (camera.shape[0] - 1) / 2, 1.0], dtype=torch.float64)
        assert float(((result.matrix @ centre)[:2] - centre[:2]).norm()) < 0.5  # Bayer pixels of the input
        assert abs(float(result.matrix[0, 0]) - 1) < 0.02
        shifted = F.avg_pool2d(sample["target"][None, :, 8 + 3 * zoom :, 8:-8][:, :, : target.shape[1] - 3 * zoom], zoom)[0].mean(0)
        assert _zncc(on_input_grid, camera) > 0.8
        assert _zncc(on_input_grid[:-3], camera[:-3]) > _zncc(shifted, camera[:-3]) + 0.1


def test_eval_crops_are_centred_and_clipped(root):
    module = _module(root, eval_crop=24, split_fractions=(0.0, 1.0, 0.0))
    for index, pair in enumerate(module.pairs["val"]):
        region = pair.region
        crop = module.datasets["val"][index]["crop"].tolist()
        assert crop == [region.top + (region.height - 24) // 2, region.left + (region.width - 24) // 2, 24, 24]
    whole = _module(root, eval_crop=1000, split_fractions=(0.0, 1.0, 0.0))
    assert whole.datasets["val"][0]["crop"].tolist() == list(whole.pairs["val"][0].region.as_tuple())


# ------------------------------------------------------------------ randomness and distribution


def test_training_crops_depend_only_on_seed_epoch_and_index(root):
    dataset = _module(root, crops_per_pair=2).datasets["train"]
    again = _module(root, crops_per_pair=2).datasets["train"]
    first, second = dataset[(5, 3)], again[(5, 3)]
    assert first["crop"].tolist() == second["crop"].tolist()
    for key in ("input", "target"):
        assert torch.equal(first[key], second[key])
    crops = {epoch: [dataset.crop_of(i, epoch).as_tuple() for i in range(len(dataset))] for epoch in range(3)}
    assert crops[0] != crops[1] != crops[2]
    assert _module(root, crops_per_pair=2, seed=1).datasets["train"].crop_of(5, 3).as_tuple() != first["crop"].tolist()
    for index, (top, left, height, width) in enumerate(crops[1]):
        region = dataset.pairs[index // 2].region
        assert (height, width) == (16, 16)
        assert region.top <= top <= region.top + region.height - 16 and region.left <= left <= region.left + region.width - 16


def test_samples_read_the_decoded_windows_and_never_the_files(tmp_path, root, monkeypatch):
    """After prepare_data, sampling decodes no raw or JPG: it reads memory-mapped windows of them. A raw
    training sample reads no input JPG, so none is decoded for training pairs."""
    for scene in ("00001", "00002", "00003"):
        _copy_scene(root / scene, tmp_path / "data" / scene, ("00001", "00002", "00005", "00006"))
    module = _module(tmp_path / "data", crops_per_pair=2, split_fractions=(2.0, 1.0, 0.0))
    reads: list[str] = []
    monkeypatch.setattr("datamodules.srraw.decoded.read_raw_mosaic", lambda path: reads.append(str(path)))
    monkeypatch.setattr("datamodules.srraw.decoded.read_jpg", lambda path: reads.append(str(path)))
    train, val = module.datasets["train"], module.datasets["val"]
    samples = [train[(index, epoch)] for epoch in range(2) for index in range(len(train))] + [val[0]]
    assert len(samples) == 4 * len(train.pairs) + 1 and reads == []
    for pair in train.pairs:
        raw = np.load(pair.raw.path, mmap_mode="r")
        assert raw.dtype == np.uint16 and raw.shape == (4, pair.region.height, pair.region.width)
        assert pair.target_jpg.path.is_file() and not pair.input_jpg.path.is_file()
        target = np.load(pair.target_jpg.path, mmap_mode="r")
        assert target.dtype == np.uint8 and target.shape == (pair.target_jpg.window.height, pair.target_jpg.window.width, 3)
    assert all(pair.input_jpg.path.is_file() for pair in val.pairs)
    # a changed source file is decoded again under a new name, never read stale
    pair = train.pairs[0]
    before = pair.raw.path
    os.utime(pair.input.raw_path, ns=(pair.input.raw_path.stat().st_atime_ns, pair.input.raw_path.stat().st_mtime_ns + 10**9))
    assert pair.raw.path != before and not pair.raw.path.is_file()


def test_worker_processes_do_not_change_the_samples(root):
    def crops(workers: int) -> list[list[int]]:
        module = _module(root, batch_size=3, num_workers=workers)
        loader = module.train_dataloader()
        loader.sampler.set_epoch(2)
        return [batch["crop"].tolist() + [batch["input"].sum().item()] for batch in loader]

    assert crops(0) == crops(2)


def test_two_replicas_see_what_one_process_with_twice_the_batch_sees(root):
    dataset = _module(root, crops_per_pair=2).datasets["train"]
    assert len(dataset) == 18

    def steps(replicas: int, rank: int, batch: int, epoch: int) -> list[list[tuple[int, int]]]:
        sampler = EpochSampler(dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(epoch)
        keys = list(sampler)
        return [keys[i : i + batch] for i in range(0, len(keys), batch)]

    for epoch in (0, 1):
        single, rank0, rank1 = steps(1, 0, 4, epoch), steps(2, 0, 2, epoch), steps(2, 1, 2, epoch)
        for step in range(len(dataset) // 4):
            assert sorted(rank0[step] + rank1[step]) == sorted(single[step])
            assert all(key[1] == epoch for key in single[step])

    def first_batch(batch_size: int, trainer: SimpleNamespace | None) -> dict:
        module = _module(root, crops_per_pair=2, batch_size=batch_size)
        module.trainer = trainer
        loader = module.train_dataloader()
        loader.sampler.set_epoch(1)
        return next(iter(loader))

    one = first_batch(4, None)
    ranks = [first_batch(2, SimpleNamespace(world_size=2, global_rank=rank)) for rank in (0, 1)]
    samples = {tuple(crop) + (scene, name): image for batch in ranks
               for crop, scene, name, image in zip(batch["crop"].tolist(), batch["scene"], batch["input_name"], batch["input"])}
    assert len(samples) == 4
    for crop, scene, name, image in zip(one["crop"].tolist(), one["scene"], one["input_name"], one["input"]):
        assert torch.equal(samples[tuple(crop) + (scene, name)], image)


def test_lightning_keeps_the_sampler_and_sets_its_epoch(root):
    from lightning.pytorch import LightningModule, Trainer

    class Recorder(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(()))
            self.seen: list[tuple[int, list[list[int]]]] = []

        def training_step(self, batch, batch_idx):
            self.seen.append((self.current_epoch, batch["crop"].tolist()))
            return self.weight**2

        def validation_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = SRRAWDataModule(str(root), zoom=4, patch_size=16, target_margin=8, num_workers=0, batch_size=2,
                             split_fractions=(1.0, 0.0, 0.0), seed=3)
    recorder = Recorder()
    trainer = Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(recorder, datamodule=module)

    dataset = module.datasets["train"]
    for epoch in (0, 1):
        sampler = EpochSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=3)
        sampler.set_epoch(epoch)
        keys = list(sampler)[:4]
        expected = [list(dataset.crop_of(*key).as_tuple()) for key in keys]
        assert [crop for e, batch in recorder.seen if e == epoch for crop in batch] == expected


# ------------------------------------------------------------------ official files


def test_official_tform_and_wb_files_are_used(tmp_path):
    shots = ("00001", "00002", "00005")
    simulated = tmp_path / "simulated"  # an affine truth: tform.txt holds 2×3 matrices
    simulate_srraw(simulated, dataclasses.replace(SIMULATION, scenes=1, max_perspective_px=0.0), progress=False)
    scene_dir = _copy_scene(simulated / "00001", tmp_path / "data" / "00003", shots)
    truth = _truth(simulated, "00001")["shots"]
    crop = np.array([[1.0, 0.0, 8.0], [0.0, 1.0, 8.0], [0.0, 0.0, 1.0]])  # JPG pixel → sensor pixel
    in_jpg = {shot: np.linalg.inv(crop) @ np.array(truth[shot]["ref_to_shot"]) @ crop for shot in shots}
    lines = []
    for position, shot in enumerate(shots, 1):
        ratio = 240.0 / truth[shot]["focal_exif"]
        official = np.linalg.inv(fov_crop_to_shot((368, 496), ratio)) @ in_jpg[shot]
        lines += [f"00001-{position:05d}:"] + [" ".join(f"{v:.4f}" for v in row) for row in official[:2]]
    (scene_dir / "tform.txt").write_text("\n".join(lines + ["corner:", "00010 00370 00012 00500"]) + "\n")
    (scene_dir / "wb.txt").write_text("WB\n/some/where/00003/00002:\n2.2 1.1 1.1 1.76\n")

    prepare_alignments(find_scenes(tmp_path / "data"), progress=False)
    alignment = load_alignment(find_scenes(tmp_path / "data")[0])
    for shot in shots[1:]:
        aligned = alignment.shots[shot]
        assert aligned.alignment_source == "tform.txt"
        assert aligned.score > 0.8
        points = np.array([[0, 495, 0, 495], [0, 0, 367, 367], [1, 1, 1, 1]], dtype=np.float64)
        error = np.abs(aligned.matrix @ points - in_jpg[shot] @ points).max()
        assert error < 0.1  # only the 4-decimal rounding of tform.txt
    assert alignment.shots["00002"].official_white_balance == pytest.approx((2.0, 1.0, 1.6))
    assert alignment.shots["00005"].official_white_balance is None
    assert alignment.shots["00002"].camera_white_balance == pytest.approx(truth["00002"]["wb_gains"], abs=1e-3)
