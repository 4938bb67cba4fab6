"""Ref ↔ LR patch matching (SelfDZSR reference §1.4) against naive loops."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.ops import deform_conv2d

from ops.matching import (
    DEFAULT_CHUNK_SIZE,
    PatchMatcher,
    index_to_offsets,
    match_offsets,
    match_patches,
    upsample_offsets,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def naive_match(features, ref, k=3):
    """Loops over samples, input windows and Ref patches; cosine of unit-vector features, float64."""
    features, ref = features.double(), ref.double()
    b_, _, h, w = features.shape
    h_r, w_r = ref.shape[-2:]
    unit = features / features.norm(dim=1, keepdim=True)
    ref_unit = ref / ref.norm(dim=1, keepdim=True)
    index = torch.zeros(b_, h - k + 1, w - k + 1, dtype=torch.int64)
    score = torch.zeros(b_, h - k + 1, w - k + 1, dtype=torch.float64)
    for b in range(b_):
        for y in range(h - k + 1):
            for x in range(w - k + 1):
                window = unit[b, :, y : y + k, x : x + k]
                best, best_q = -math.inf, -1
                for ry in range(h_r - k + 1):
                    for rx in range(w_r - k + 1):
                        patch = ref_unit[b, :, ry : ry + k, rx : rx + k]
                        s = (window * patch).sum().item() / (patch.norm().item() + 1e-5)
                        if s > best:
                            best, best_q = s, ry * (w_r - k + 1) + rx
                index[b, y, x], score[b, y, x] = best_q, best
    return index, score


def naive_offsets(index, ref_size, out_size, k=3):
    """Tap t = (i, j) at (y, x): the flow of the window with top-left (y − i, x − j), (dy, dx) at channels 2t, 2t+1."""
    b_, (h, w), grid_w = index.shape[0], out_size, ref_size[1] - k + 1
    out = torch.zeros(b_, 2 * k * k, h, w)
    for b in range(b_):
        for t in range(k * k):
            i, j = divmod(t, k)
            for y in range(h):
                for x in range(w):
                    py, px = y - i, x - j
                    if 0 <= py < index.shape[1] and 0 <= px < index.shape[2]:
                        ry, rx = divmod(index[b, py, px].item(), grid_w)
                        out[b, 2 * t, y, x], out[b, 2 * t + 1, y, x] = ry - py, rx - px
    return out


@pytest.mark.parametrize(
    ("in_size", "ref_size", "k"), [((7, 7), (7, 7), 3), ((6, 8), (9, 5), 3), ((5, 6), (4, 7), 2), ((4, 5), (6, 3), 1)]
)
def test_index_and_score_match_naive_loops(in_size, ref_size, k):
    torch.manual_seed(0)
    features = torch.randn(2, 4, *in_size, dtype=torch.float64)
    ref = torch.randn(2, 4, *ref_size, dtype=torch.float64)
    index, score = match_patches(features, ref, patch_size=k)
    ref_index, ref_score = naive_match(features, ref, k)
    assert index.dtype == torch.int64 and index.shape == (2, in_size[0] - k + 1, in_size[1] - k + 1)
    assert torch.equal(index, ref_index)
    torch.testing.assert_close(score, ref_score, rtol=1e-12, atol=1e-12)
    index32, score32 = match_patches(features.float(), ref.float(), patch_size=k)
    assert score32.dtype == torch.float32 and torch.equal(index32, ref_index)


def test_planted_shift_gives_that_flow_in_the_interior():
    torch.manual_seed(1)
    scene = torch.randn(2, 8, 16, 18)
    features = scene[:, :, 0:10, 0:12]  # features[y, x] = ref[y − 2, x − 1]: the Ref is the scene moved by (2, 1)
    ref = scene[:, :, 2:13, 1:16]  # 11×15, a different size from the input
    index, score = match_patches(features, ref)
    offsets = match_offsets(features, ref)
    grid_w = ref.shape[-1] - 2
    # the input window at (y, x) exists in the Ref at (y − 2, x − 1) for y ≥ 2, x ≥ 1 (and inside its 9×13 grid)
    interior = (slice(None), slice(2, 8), slice(1, 10))
    assert torch.equal(index[interior] // grid_w - torch.arange(2, 8)[:, None], torch.full((2, 6, 9), -2))
    assert torch.equal(index[interior] % grid_w - torch.arange(1, 10), torch.full((2, 6, 9), -1))
    # window · patch / (‖patch‖ + ε) with both norms 3 (nine unit vectors)
    torch.testing.assert_close(score[interior], torch.full((2, 6, 9), 9 / (3 + 1e-5)))
    # every tap at (y, x) whose window (y − i, x − j) lies in that interior carries (dy, dx) = (−2, −1)
    assert torch.equal(offsets[:, 0::2, 4:8, 3:10], torch.full((2, 9, 4, 7), -2.0))
    assert torch.equal(offsets[:, 1::2, 4:8, 3:10], torch.full((2, 9, 4, 7), -1.0))


def test_offsets_sample_the_matched_ref_pixels_in_deform_conv2d():
    # a centre-tap kernel samples the Ref at (y + dy, x + dx) for the window centred on (y, x): that is the input
    torch.manual_seed(2)
    scene = torch.randn(1, 6, 15, 15)
    features, ref = scene[:, :, 3:15, 1:13], scene[:, :, 0:12, 0:12]  # features[y, x] = ref[y + 3, x + 1]
    offsets = match_offsets(features, ref)
    weight = torch.zeros(6, 6, 3, 3)
    weight[range(6), range(6), 1, 1] = 1.0  # channel c → channel c, centre tap only
    warped = deform_conv2d(ref, offsets, weight, padding=1)
    # windows with top-left (y, x) match for y + 3 ≤ 9 and x + 1 ≤ 9: the centres (y + 1, x + 1) for y ≤ 6, x ≤ 8
    torch.testing.assert_close(warped[..., 1:8, 1:10], features[..., 1:8, 1:10])
    assert not torch.allclose(ref[..., 1:8, 1:10], features[..., 1:8, 1:10])


def test_identity_match_gives_zero_offsets():
    torch.manual_seed(3)
    features = torch.randn(2, 16, 9, 11)
    index, _ = match_patches(features, features.clone())
    assert torch.equal(index, torch.arange(7 * 9).view(1, 7, 9).expand(2, -1, -1))
    offsets = match_offsets(features, features)
    assert offsets.shape == (2, 18, 9, 11) and offsets.dtype == torch.float32
    assert torch.equal(offsets, torch.zeros_like(offsets))


@pytest.mark.parametrize(("index_size", "ref_size", "k"), [((4, 5), (7, 6), 3), ((3, 3), (5, 9), 3), ((5, 4), (3, 4), 2)])
def test_index_to_offsets_matches_naive_loop(index_size, ref_size, k):
    torch.manual_seed(4)
    grid = (ref_size[0] - k + 1) * (ref_size[1] - k + 1)
    index = torch.randint(0, grid, (2, *index_size))
    out_size = (index_size[0] + k - 1, index_size[1] + k - 1)
    offsets = index_to_offsets(index, ref_size, out_size)
    assert offsets.shape == (2, 2 * k * k, *out_size)
    assert torch.equal(offsets, naive_offsets(index, ref_size, out_size, k))


@pytest.mark.parametrize("chunk_size", [1, 300, 4000, 30000])
def test_chunked_equals_unchunked(chunk_size):
    torch.manual_seed(5)
    features = torch.randn(3, 8, 13, 10, dtype=torch.float64)
    ref = torch.randn(3, 8, 11, 15, dtype=torch.float64)
    whole_index, whole_score = match_patches(features, ref, chunk_size=10**9)  # a single tile
    index, score = match_patches(features, ref, chunk_size=chunk_size)
    assert torch.equal(index, whole_index)
    torch.testing.assert_close(score, whole_score, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, None])
def test_ties_go_to_the_first_ref_patch(chunk_size):
    # every Ref position holds the same one-hot vector: all Ref patches score exactly alike for every window
    features, ref = torch.randn(2, 4, 6, 7), torch.zeros(2, 4, 8, 9)
    ref[:, 1] = 1.0
    index, _ = match_patches(features, ref, chunk_size=chunk_size)
    assert torch.equal(index, torch.zeros_like(index))


def test_batched_equals_per_sample():
    torch.manual_seed(6)
    features, ref = torch.randn(4, 8, 10, 12), torch.randn(4, 8, 12, 9)
    index, score = match_patches(features, ref, chunk_size=2000)
    for b in range(4):
        one_index, one_score = match_patches(features[b : b + 1], ref[b : b + 1], chunk_size=2000)
        assert torch.equal(index[b : b + 1], one_index)
        torch.testing.assert_close(score[b : b + 1], one_score)


def test_runs_without_gradient_and_in_float32_under_autocast():
    torch.manual_seed(7)
    features = torch.randn(1, 8, 9, 9, requires_grad=True)
    ref = torch.randn(1, 8, 9, 9)
    index, score = match_patches(features, ref)
    assert not score.requires_grad
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp_index, amp_score = match_patches(features, ref)
    assert amp_score.dtype == torch.float32 and torch.equal(amp_index, index)
    half_index, _ = match_patches(features.detach().half(), ref.half())
    assert (half_index == index).float().mean() > 0.9  # only the rounding of the inputs differs


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize("chunk_size", [None, 2**24])
def test_whole_image_features_stay_within_the_chunk_budget(chunk_size):
    # shapes only (meta tensors): 256×277×171 features, ~47 k × 47 k ≈ 2.2 G scores if done at once
    features = torch.empty(1, 256, 277, 171, device="meta")
    with _LargestTensor() as spy:
        index, score = match_patches(features, torch.empty_like(features), chunk_size=chunk_size)
    assert index.shape == score.shape == (1, 275, 169)
    assert spy.largest <= max(chunk_size or DEFAULT_CHUNK_SIZE, features.numel())


def test_whole_image_sized_case_runs_chunked_and_finds_the_planted_shift():
    torch.manual_seed(8)
    scene = torch.randn(1, 64, 124, 124)
    features, ref = scene[:, :, 0:120, 0:120], scene[:, :, 4:124, 3:123]  # the Ref moved by (4, 3)
    with _LargestTensor() as spy:
        index, _ = match_patches(features, ref, chunk_size=2**23)
    assert spy.largest <= 2**23 < 118**4  # all 118² × 118² scores would not fit
    interior = index[:, 4:, 3:]
    assert torch.equal(interior // 118 - torch.arange(4, 118)[:, None], torch.full_like(interior, -4))
    assert torch.equal(interior % 118 - torch.arange(3, 118), torch.full_like(interior, -3))


def test_upsample_offsets_scales_and_interpolates():
    offsets = torch.zeros(1, 18, 2, 3)
    offsets[:, :, :, 1:] = 1.0
    up = upsample_offsets(offsets)
    assert up.shape == (1, 18, 8, 12)
    expected_row = 4 * torch.clamp(torch.arange(12) * 2 / 11, max=1.0)  # align_corners=True: x_in = x·(3−1)/(12−1)
    torch.testing.assert_close(up[0, 5], expected_row.expand(8, -1))
    expected = 2 * F.interpolate(offsets, size=(4, 6), mode="bilinear", align_corners=True)
    torch.testing.assert_close(upsample_offsets(offsets, factor=2), expected)


def test_module_equals_function():
    torch.manual_seed(9)
    features, ref = torch.randn(2, 8, 8, 9), torch.randn(2, 8, 10, 7)
    module = PatchMatcher(chunk_size=500)
    assert torch.equal(module(features, ref), match_offsets(features, ref, chunk_size=500))
    assert "chunk_size=500" in repr(module)


@pytest.mark.parametrize(
    ("features", "ref", "kwargs", "message"),
    [
        (torch.rand(8, 5, 5), torch.rand(1, 8, 5, 5), {}, r"features of shape \(B, C, H, W\)"),
        (torch.ones(1, 8, 5, 5, dtype=torch.int64), torch.rand(1, 8, 5, 5), {}, "floating-point features"),
        (torch.rand(1, 8, 5, 5), torch.rand(1, 4, 5, 5), {}, "same non-zero B and C"),
        (torch.rand(2, 8, 5, 5), torch.rand(1, 8, 5, 5), {}, "same non-zero B and C"),
        (torch.rand(1, 8, 5, 5), torch.rand(1, 8, 2, 9), {}, r"ref_features of at least 3×3"),
        (torch.rand(1, 8, 5, 5), torch.rand(1, 8, 5, 5), {"patch_size": 0}, "patch_size"),
        (torch.rand(1, 8, 5, 5), torch.rand(1, 8, 5, 5), {"chunk_size": 0}, "chunk_size"),
    ],
)
def test_guards(features, ref, kwargs, message):
    with pytest.raises(ValueError, match=message):
        match_patches(features, ref, **kwargs)


def test_offset_guards():
    with pytest.raises(ValueError, match="int64 index"):
        index_to_offsets(torch.zeros(1, 3, 3), (5, 5), (5, 5))
    with pytest.raises(ValueError, match="same k"):
        index_to_offsets(torch.zeros(1, 3, 3, dtype=torch.int64), (5, 5), (5, 6))
    with pytest.raises(ValueError, match=r"\(B, 2k², h, w\)"):
        upsample_offsets(torch.zeros(1, 17, 3, 3))
    with pytest.raises(ValueError, match="factor"):
        upsample_offsets(torch.zeros(1, 18, 3, 3), factor=0)
