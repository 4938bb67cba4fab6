"""ZRR samples: keys and values, the official bilinear demosaic and coordinate map, joint crop + flips +
transpose that keep raw, demosaic, target and τ consistent, and determinism in (seed, epoch, index)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.common.errors import DatasetError
from datamodules.zrr.dataset import ZRRDataset, coordinate_map
from datamodules.zrr.layout import find_pairs, normalize_raw, pack_raw, read_raw_png
from tests.datamodules.zrr.conftest import random_mosaic, write_pair

pytestmark = pytest.mark.usefixtures("one_thread")


def _official_bilinear(mosaic: np.ndarray) -> np.ndarray:
    """colour_demosaicing's bilinear RGGB demosaic written out: masked CFA ⊛ kernels, mirrored borders
    (scipy ``mode='mirror'`` = numpy ``'reflect'``)."""
    height, width = mosaic.shape
    masks = np.zeros((3, height, width))
    masks[0, 0::2, 0::2] = 1
    masks[1, 0::2, 1::2] = masks[1, 1::2, 0::2] = 1
    masks[2, 1::2, 1::2] = 1
    h_g = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4
    h_rb = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4
    out = np.zeros((3, height, width))
    for channel, kernel in zip(range(3), (h_rb, h_g, h_rb)):
        padded = np.pad(mosaic * masks[channel], 1, mode="reflect")
        for i in range(3):
            for j in range(3):
                out[channel] += kernel[i, j] * padded[i : i + height, j : j + width]
    return out


@pytest.fixture(scope="module")
def random_root(tmp_path_factory):
    """Three 16×16 pairs (8×8 packed) of random raw and JPG content: every pixel is distinguishable."""
    root = tmp_path_factory.mktemp("random_zrr")
    rng = np.random.default_rng(0)
    for name in range(3):
        write_pair(root, "train", str(name), random_mosaic(rng, 16), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    return root


def test_full_sample_keys_values_and_official_processing(zrr_root):
    pairs = find_pairs(zrr_root, "test")
    sample = ZRRDataset(pairs, "full", raw_size=128)[1]
    assert sorted(sample) == ["coord", "crop", "name", "raw", "raw_rgb", "target"]
    assert sample["name"] == "1" and sample["crop"].tolist() == [0, 0, 64, 64]
    assert sample["raw"].shape == (4, 64, 64) and sample["raw_rgb"].shape == (3, 128, 128)
    assert sample["target"].shape == (3, 128, 128) and sample["coord"].shape == (2, 128, 128)
    assert all(sample[k].dtype == torch.float32 for k in ("raw", "raw_rgb", "target", "coord"))
    mosaic = read_raw_png(pairs[1].raw_path)
    x = (np.maximum(mosaic.astype(np.float64) - 63, 0)) / 957
    torch.testing.assert_close(sample["raw"], pack_raw(torch.from_numpy(x)).float())
    torch.testing.assert_close(sample["raw_rgb"], torch.from_numpy(_official_bilinear(x)).float(), atol=1e-6, rtol=0)
    assert 0 <= float(sample["target"].min()) and float(sample["target"].max()) <= 1
    assert torch.equal(sample["coord"], coordinate_map(128, 128))


def test_demosaic_matches_the_official_bilinear_at_the_borders_too():
    mosaic = random_mosaic(np.random.default_rng(1), 10)
    linear = normalize_raw(mosaic)
    from ops.bayer import demosaic

    ours = demosaic(linear[None, None].double(), "RGGB")[0].numpy()
    np.testing.assert_allclose(ours, _official_bilinear(linear.double().numpy()), atol=1e-12)


def test_coordinate_map_is_the_official_get_coord():
    tau = coordinate_map(448, 448)
    assert abs(float(tau[0, 0, 0]) + 0.997768) < 1e-6 and abs(float(tau[0, 0, -1]) - 0.997768) < 1e-6
    assert torch.equal(tau[0, 0], tau[0, 100]) and torch.all(tau[0, :, 1:] > tau[0, :, :-1])  # ch 0 varies along W
    assert torch.equal(tau[1, :, 0], tau[1, :, 37]) and torch.all(tau[1, 1:] > tau[1, :-1])  # ch 1 along H
    small = coordinate_map(4, 6)
    torch.testing.assert_close(small[0, 0], torch.tensor([-5, -3, -1, 1, 3, 5]) / 6)
    torch.testing.assert_close(small[1, :, 0], torch.tensor([-3.0, -1, 1, 3]) / 4)


def _source_pixels(coord: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of the whole image that each pixel's τ names: τ = (2p + 1)/N − 1 ↔ p = (τ + 1)·N/2 − ½."""
    cols = ((coord[0] + 1) * width / 2 - 0.5).round().long()
    rows = ((coord[1] + 1) * height / 2 - 0.5).round().long()
    return rows, cols


def test_joint_crop_flips_and_transpose_keep_everything_consistent(random_root):
    pairs = find_pairs(random_root, "train")
    whole = ZRRDataset(pairs, "full", raw_size=16)
    train = ZRRDataset(pairs, "train", patch_size=5, raw_size=16, seed=11)
    orientations = set()
    for epoch in range(24):
        for index in range(len(pairs)):
            full, sample = whole[index], train[(index, epoch)]
            assert sample["raw"].shape == (4, 5, 5) and sample["target"].shape == (3, 10, 10)
            top, left, h, w = sample["crop"].tolist()
            assert (h, w) == (5, 5) and 0 <= top <= 3 and 0 <= left <= 3
            rows, cols = _source_pixels(sample["coord"], 16, 16)
            # every pixel of the crop comes from the stored crop window, each exactly once
            assert rows.min() == 2 * top and rows.max() == 2 * top + 9 and cols.min() == 2 * left and cols.max() == 2 * left + 9
            assert len(set((rows * 16 + cols).flatten().tolist())) == 100
            torch.testing.assert_close(sample["coord"], full["coord"][:, rows, cols])
            assert torch.equal(sample["target"], full["target"][:, rows, cols])
            assert torch.equal(sample["raw_rgb"], full["raw_rgb"][:, rows, cols])
            # packed pixel (i, j) is the 2×2 block of output pixels (2i…2i+1, 2j…2j+1): same block of the stored raw
            for source in (rows, cols):  # each 2×2 output block lies in one 2×2 block of the stored mosaic
                blocks = (source // 2).view(5, 2, 5, 2)
                assert torch.equal(blocks, blocks[:, :1, :, :1].expand(5, 2, 5, 2))
            block_rows, block_cols = rows[0::2, 0::2] // 2, cols[0::2, 0::2] // 2
            assert torch.equal(sample["raw"], full["raw"][:, block_rows, block_cols])
            transposed = bool(sample["coord"][0, 1, 0] != sample["coord"][0, 0, 0])  # ch 0 varies along H
            along_w = sample["coord"][1 if transposed else 0, 0]
            along_h = sample["coord"][0 if transposed else 1, :, 0]
            orientations.add((transposed, bool(along_w[1] > along_w[0]), bool(along_h[1] > along_h[0])))
    assert len(orientations) == 8  # all flip/transpose combinations were drawn and checked


def test_whole_image_crop_when_patch_is_the_packed_size(random_root):
    pairs = find_pairs(random_root, "train")
    sample = ZRRDataset(pairs, "train", patch_size=8, raw_size=16)[(0, 3)]
    assert sample["crop"].tolist() == [0, 0, 8, 8] and sample["raw"].shape == (4, 8, 8)
    with pytest.raises(DatasetError, match=str(pairs[0].raw_path) + ".*8×8 is smaller than the training crop of 9×9"):
        ZRRDataset(pairs, "train", patch_size=9, raw_size=16)[0]


def test_determinism_in_seed_epoch_index(random_root):
    pairs = find_pairs(random_root, "train")

    def draw(seed, epoch, index):
        return ZRRDataset(pairs, "train", patch_size=4, raw_size=16, seed=seed)[(index, epoch)]

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in ("raw", "raw_rgb", "target", "coord", "crop"))

    first = draw(0, 2, 1)
    assert same(first, draw(0, 2, 1))  # a fresh dataset, same key: the same sample
    dataset = ZRRDataset(pairs, "train", patch_size=4, raw_size=16)
    assert same(dataset[1], dataset[(1, 0)])  # a plain index is epoch 0
    assert not all(same(first, draw(0, epoch, 1)) for epoch in range(3, 9))  # epochs differ
    assert not all(same(first, draw(seed, 2, 1)) for seed in range(1, 7))  # seeds differ
    full = ZRRDataset(pairs, "full", raw_size=16)
    assert same(full[(1, 0)], full[(1, 5)])  # whole images are never augmented
    with pytest.raises(IndexError):
        dataset[3]
