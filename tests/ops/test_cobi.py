import math

import pytest
import torch
import torch.nn.functional as F

from ops.cobi import (
    W_SPATIAL_PER_PIXEL,
    CoBiLoss,
    ContextualLoss,
    cobi_loss,
    cobi_loss_at,
    contextual_loss,
    resolve_w_spatial,
    sample_positions,
    unique_match_share,
)
from tests.ops.cobi_reference import cobi_official_reference, cobi_paper_reference, official_similarity

VARIANTS = ("paper", "official")
DISTANCES = ("cosine", "l2")
REFERENCES = {"paper": cobi_paper_reference, "official": cobi_official_reference}


def _features(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=dtype)


def _pair(*shape: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return _features(*shape, seed=seed).requires_grad_(), _features(*shape, seed=seed + 1).requires_grad_()


# ------------------------------------------------------------------------ chunked == naive reference
@pytest.mark.parametrize("w_spatial", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_chunked_matches_reference_values_and_gradients(variant: str, distance: str, w_spatial: float) -> None:
    pred, target = _pair(2, 4, 5, 6)  # P = 30 positions, non-square, chunks of 7 do not divide P
    loss = cobi_loss(
        pred, target, w_spatial=w_spatial, distance=distance, variant=variant, max_positions=None,
        chunk_size=7, reduction="none",
    )
    grads = torch.autograd.grad(loss.sum(), (pred, target))
    expected = REFERENCES[variant](pred, target, w_spatial, distance)
    expected_grads = torch.autograd.grad(expected.sum(), (pred, target))
    assert loss.dtype == torch.float64 and loss.shape == (2,)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    for grad, expected_grad in zip(grads, expected_grads):
        assert expected_grad.abs().sum() > 0
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_chunk_size_does_not_change_the_result(variant: str) -> None:
    pred, target = _pair(2, 3, 4, 5)
    results = []
    for chunk_size in (1, 3, 20, 64, None):
        loss = cobi_loss(pred, target, variant=variant, max_positions=None, chunk_size=chunk_size, reduction="none")
        results.append((loss, *torch.autograd.grad(loss.sum(), (pred, target))))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_target_without_grad_gets_the_same_pred_gradient(variant: str, distance: str) -> None:
    pred, target = _pair(1, 3, 4, 4)
    loss = cobi_loss(pred, target, distance=distance, variant=variant, max_positions=None, chunk_size=5)
    (both,) = torch.autograd.grad(loss, pred)
    loss = cobi_loss(pred, target.detach(), distance=distance, variant=variant, max_positions=None, chunk_size=5)
    (alone,) = torch.autograd.grad(loss, pred)
    torch.testing.assert_close(alone, both, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcheck(variant: str, distance: str) -> None:
    # random float64 inputs: all minima / maxima are unique, so the loss is smooth around them
    pred, target = _pair(2, 2, 2, 3, seed=3)
    torch.autograd.gradcheck(
        lambda p, t: cobi_loss(
            p, t, w_spatial=0.1, distance=distance, variant=variant, max_positions=None, chunk_size=4,
            reduction="none",
        ),
        (pred, target),
    )


# ------------------------------------------------------------------------------ hand-derived values
def _map(*values: tuple[float, ...]) -> torch.Tensor:
    """Positions (a row of W = len(values) pixels) with channel vectors → (1, C, 1, W), float64."""
    return torch.tensor(values, dtype=torch.float64).T.reshape(len(values[0]), 1, len(values))[None]


@pytest.mark.parametrize(
    ("w_spatial", "units", "expected"),
    [(0.0, "pixels", 0.5), (0.5, "pixels", 0.75), (3.0, "pixels", 1.5), (0.5, "image", 0.625), (3.0, "image", 1.25)],
)
def test_paper_l2_hand_derived(w_spatial: float, units: str, expected: float) -> None:
    # C = 1, H = 1, W = 2: p = (0, 1), q = (1, 3); D_ij = |p_i − q_j|/√1; the two positions are 1 pixel apart,
    # so D′ = δ off-diagonal with δ = 1 ("pixels") or 1/max(H, W) = 1/2 ("image").
    # i = 0: min(|0−1| + 0, |0−3| + wδ);  i = 1: min(|1−1| + wδ, |1−3| + 0).
    # pixels: w = 0: (1 + 0)/2;  w = 0.5: (1 + 0.5)/2 = 0.75;  w = 3: (1 + min(3, 2))/2 = 1.5.
    # image:  w = 0.5: (1 + 0.25)/2 = 0.625;  w = 3: (1 + min(1.5, 2))/2 = 1.25.
    loss = cobi_loss(_map((0.0,), (1.0,)), _map((1.0,), (3.0,)), w_spatial=w_spatial, distance="l2", spatial_units=units)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_paper_l2_is_root_mean_square_per_channel() -> None:
    # one position, C = 4: D = ‖0 − (1, 1, 1, 1)‖/√4 = 2/2 = 1
    loss = cobi_loss(torch.zeros(1, 4, 1, 1), torch.ones(1, 4, 1, 1), distance="l2")
    assert loss.item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("w_spatial", "expected"), [(0.0, 0.25), (0.1, 0.35), (1.0, 0.75)])
def test_paper_cosine_hand_derived(w_spatial: float, expected: float) -> None:
    # p = (1, 0), (−1, 0): μ = 0, p̂ = (1, 0), (−1, 0).  q = (−3, 0), (0, 2): q̂ = (−1, 0), (0, 1).
    # D = (1 − cos)/2: D(p0, q0) = 1, D(p0, q1) = 1/2, D(p1, q0) = 0, D(p1, q1) = 1/2; D′ = 1 pixel off-diagonal.
    # i = 0: min(1 + 0, 1/2 + w);  i = 1: min(0 + w, 1/2 + 0).
    # w = 0: (1/2 + 0)/2;  w = 0.1: (0.6 + 0.1)/2 = 0.35;  w = 1: (1 + 1/2)/2 = 0.75.
    loss = cobi_loss(_map((1.0, 0.0), (-1.0, 0.0)), _map((-3.0, 0.0), (0.0, 2.0)), w_spatial=w_spatial)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("w_spatial", "expected"), [(0.0, 0.0), (0.1, -math.log(0.9)), (0.5, math.log(2.0))])
def test_official_cosine_hand_derived(w_spatial: float, expected: float) -> None:
    # T = (1, 0), (0, 1): μ = (½, ½), t_0 = (1, −1)/√2, t_1 = −t_0.  I = (0, 1), (1, 0): q_0 = t_1, q_1 = t_0.
    # d_ij = (1 − q_i·t_j)/2 = [[1, 0], [0, 1]]; row minima 0 → d̃ = [[1000, 0], [0, 1000]]
    # → CX = [[0, 1], [1, 0]] (e^{−2000} underflows to 0). CX^sp = identity.
    # C = (1 − w)·CX + w·I = [[w, 1 − w], [1 − w, w]] → max_i C_ij = max(w, 1 − w) → loss = −log max(w, 1 − w).
    pred, target = _map((1.0, 0.0), (0.0, 1.0)), _map((0.0, 1.0), (1.0, 0.0))
    loss = cobi_loss(pred, target, w_spatial=w_spatial, variant="official")
    assert loss.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("w_spatial", [0.0, 0.5])
def test_official_l2_hand_derived(w_spatial: float) -> None:
    # C = 1: T = (0, 1), I = (0, 3); d_ij = (I_i − T_j)² = [[0, 1], [9, 4]].
    # row 0: min 0 → d̃ = [0, 1000] → CX_0· = [1, e^{−2000} = 0];
    # row 1: min 4 → d̃ = [9, 4]/4.001 → CX_11 = 1/(1 + exp(−(9 − 4)/4.001/h)), h = 0.5, CX_10 = 1 − CX_11.
    # CX^sp = I.  w = 0: m = (max(1, CX_10), max(0, CX_11)) = (1, CX_11) → −log((1 + CX_11)/2).
    # w = 0.5: m = (0.5 + 0.5, 0.5·CX_11 + 0.5) → −log((1.5 + 0.5·CX_11)/2).
    cx_11 = 1.0 / (1.0 + math.exp(-(9.0 - 4.0) / 4.001 / 0.5))
    m = [1.0, (1.0 - w_spatial) * cx_11 + w_spatial]
    loss = cobi_loss(_map((0.0,), (1.0,)), _map((0.0,), (3.0,)), w_spatial=w_spatial, distance="l2", variant="official")
    assert loss.item() == pytest.approx(-math.log(sum(m) / 2.0), abs=1e-12)


# ------------------------------------------------------------------------------------------ official
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("w_spatial", [0.5, 0.7, 1.0])
def test_official_large_w_spatial_is_the_diagonal_closed_form(w_spatial: float, distance: str) -> None:
    # reference §1.10: CX^sp = δ, so for w_s ≥ 0.5 the diagonal wins: loss = −log(w_s + (1 − w_s)·mean_j CX_jj)
    pred, target = _features(2, 5, 6, 6, seed=4), _features(2, 5, 6, 6, seed=5)
    loss = cobi_loss(pred, target, w_spatial=w_spatial, distance=distance, variant="official", reduction="none")
    diagonal = official_similarity(pred, target, distance).diagonal(dim1=1, dim2=2).mean(dim=1)
    torch.testing.assert_close(loss, -torch.log(w_spatial + (1.0 - w_spatial) * diagonal), rtol=1e-12, atol=1e-14)


def test_official_spatial_term_is_the_identity_on_a_63_grid() -> None:
    # w_s = 1: C = CX^sp; loss = −log(mean_j max_i CX^sp_ij) is 0 only if every column holds a 1 (δ_ij)
    pred, target = _features(1, 2, 63, 63, dtype=torch.float32), _features(1, 2, 63, 63, seed=1, dtype=torch.float32)
    assert cobi_loss(pred, target, w_spatial=1.0, variant="official", max_positions=None).item() == 0.0


def test_official_samples_3969_positions_reproducibly() -> None:
    pred = _features(2, 3, 70, 70, dtype=torch.float32)  # 4900 > 63² positions
    target = _features(2, 3, 70, 70, seed=1, dtype=torch.float32)
    loss = cobi_loss(pred, target, variant="official", generator=torch.Generator().manual_seed(7), reduction="none")
    again = cobi_loss(pred, target, variant="official", generator=torch.Generator().manual_seed(7), reduction="none")
    other = cobi_loss(pred, target, variant="official", generator=torch.Generator().manual_seed(8), reduction="none")
    # the same draw by hand: one permutation, its first 3969 entries, read as a 63×63 grid in that order
    kept = torch.randperm(4900, generator=torch.Generator().manual_seed(7))[:3969]
    gather = lambda x: x.flatten(2)[:, :, kept].reshape(2, 3, 63, 63)  # noqa: E731
    dense = cobi_loss(gather(pred), gather(target), variant="official", max_positions=None, reduction="none")
    assert torch.equal(loss, again)
    assert not torch.allclose(loss, other)
    torch.testing.assert_close(loss, dense, rtol=1e-6, atol=1e-7)


def test_official_small_sample_matches_reference() -> None:
    pred, target = _pair(2, 3, 5, 7)
    loss = cobi_loss(pred, target, variant="official", max_positions=16, generator=torch.Generator().manual_seed(0))
    kept = torch.randperm(35, generator=torch.Generator().manual_seed(0))[:16]
    gather = lambda x: x.flatten(2)[:, :, kept].reshape(2, 3, 4, 4)  # noqa: E731
    expected = cobi_official_reference(gather(pred), gather(target), 0.1, "cosine").mean()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-14)
    grads = torch.autograd.grad(loss, (pred, target))
    expected_grads = torch.autograd.grad(expected, (pred, target))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_identical_inputs_give_zero_loss(variant: str, distance: str) -> None:
    features = _features(2, 16, 9, 9, dtype=torch.float32).requires_grad_()
    loss = cobi_loss(features, features.detach().clone(), distance=distance, variant=variant, max_positions=None)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    (grad,) = torch.autograd.grad(loss, features)  # zero distances: the gradient stays finite
    assert torch.isfinite(grad).all()


# --------------------------------------------------------------------------------------------- paper
def _shifted_pair(shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random texture (1, 3, 24, 24) and the same texture moved by ``shift`` pixels diagonally."""
    coarse = _features(1, 3, 8, 8, seed=11)
    texture = torch.nn.functional.interpolate(coarse, size=(40, 40), mode="bicubic", align_corners=False)
    return texture[..., 8:32, 8:32], texture[..., 8 + shift : 32 + shift, 8 + shift : 32 + shift]


@pytest.mark.parametrize("distance", DISTANCES)
def test_paper_spatial_term_grows_with_weight_and_shift(distance: str) -> None:
    losses = torch.tensor(
        [[cobi_loss(*_shifted_pair(shift), w_spatial=w, distance=distance).item() for shift in (0, 1, 2, 4)]
         for w in (0.0, 0.1, 0.5, 1.0)]
    )
    assert (losses[:, 0] < 1e-9).all()  # aligned: every position matches itself
    assert (losses[1:, 1:].diff(dim=0) > 0).all()  # more weight, larger loss (for any shift)
    assert (losses[1:].diff(dim=1) > 0).all()  # larger shift, larger loss (for any w_s > 0)
    # with a large weight the matches stay at the same position: the loss tends to the aligned distance
    assert (losses[-1, 1:] > 2.0 * losses[0, 1:]).all()


@pytest.mark.parametrize("distance", DISTANCES)
def test_paper_per_sample_loss_ignores_the_rest_of_the_batch(distance: str) -> None:
    pred, target = _features(3, 4, 6, 5), _features(3, 4, 6, 5, seed=1)
    alone = cobi_loss(pred[:1], target[:1], distance=distance, reduction="none")
    batch = cobi_loss(pred, target, distance=distance, reduction="none")
    torch.testing.assert_close(batch[:1], alone, rtol=1e-12, atol=1e-14)


def test_paper_sampling_keeps_true_coordinates_and_searches_the_whole_target() -> None:
    pred, target = _pair(2, 3, 5, 7)
    loss = cobi_loss(
        pred, target, w_spatial=0.1, max_positions=12, generator=torch.Generator().manual_seed(0), reduction="none"
    )
    kept = torch.randperm(35, generator=torch.Generator().manual_seed(0))[:12]
    # naive: full 35×35 distances (true pixel coordinates), the sampled rows, every column
    p = pred.flatten(2).transpose(1, 2)
    q = target.flatten(2).transpose(1, 2)
    mu = p[:, kept].mean(dim=1, keepdim=True)
    p_hat = (p - mu) / (p - mu).norm(dim=-1, keepdim=True)
    q_hat = (q - mu) / (q - mu).norm(dim=-1, keepdim=True)
    d = (1.0 - p_hat @ q_hat.transpose(1, 2)) / 2.0
    xy = torch.stack([torch.arange(35) // 7, torch.arange(35) % 7], dim=-1).double()
    combined = d + 0.1 * torch.cdist(xy, xy, compute_mode="donot_use_mm_for_euclid_dist")
    expected = combined[:, kept].min(dim=2).values.mean(dim=1)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-14)
    reference = cobi_paper_reference(pred, target, 0.1, "cosine", positions=kept)
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=1e-14)
    grads = torch.autograd.grad(loss.sum(), (pred, target))
    expected_grads = torch.autograd.grad(reference.sum(), (pred, target))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


def _smooth_texture(channels: int, side: int, seed: int, coarse: int = 12, margin: int = 16) -> torch.Tensor:
    """A smooth random texture (1, C, side + 2·margin, …): bicubic upsampling of Gaussian noise on a coarse grid."""
    noise = _features(1, channels, coarse, coarse, seed=seed)
    return F.interpolate(noise, size=(side + 2 * margin,) * 2, mode="bicubic", align_corners=False)


def _diagonal_shift(texture: torch.Tensor, side: int, shift: int, margin: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction, target) = the central side×side window and the same window moved ``shift`` px diagonally."""
    window = slice(margin, margin + side)
    moved = slice(margin + shift, margin + shift + side)
    return texture[..., window, window], texture[..., moved, moved]


@pytest.mark.parametrize("w_spatial", [0.0, 0.1])
@pytest.mark.parametrize("distance", DISTANCES)
def test_paper_sampling_does_not_shrink_the_search(distance: str, w_spatial: float) -> None:
    # 6.25 % of the prediction positions (the paper config samples 16384 of 512²): each sampled feature still
    # finds its match among all target positions, so the sampled loss estimates the exact one. Sampling the
    # target alike (what the TF graph does, and this code did before) leaves each feature 6.25 % of the
    # target to match against: under a 1-px shift its CX is ~30× the exact one.
    texture = _smooth_texture(16, 64, seed=2)
    pred, target = _diagonal_shift(texture, 64, 1)
    exact = cobi_loss(pred, target, w_spatial=w_spatial, distance=distance, max_positions=None).item()
    sampled = cobi_loss(
        pred, target, w_spatial=w_spatial, distance=distance, max_positions=256,
        generator=torch.Generator().manual_seed(0),
    ).item()
    assert exact > 0
    assert exact / 1.5 <= sampled <= 1.5 * exact
    if w_spatial == 0:
        kept = sample_positions(64, 64, 256, torch.Generator().manual_seed(0), pred.device)
        gather = lambda x: x.flatten(2)[..., kept].reshape(1, 16, 16, 16)  # noqa: E731
        shrunken = cobi_paper_reference(gather(pred), gather(target), 0.0, distance).item()
        assert shrunken > 10.0 * exact


@pytest.mark.parametrize("distance", DISTANCES)
def test_spatial_units_pixels_scale_with_the_feature_stride(distance: str) -> None:
    pred, target = _features(2, 4, 6, 7), _features(2, 4, 6, 7, seed=1)
    strided = cobi_loss(pred, target, w_spatial=0.05, distance=distance, feature_stride=4.0, reduction="none")
    scaled_weight = cobi_loss(pred, target, w_spatial=0.2, distance=distance, reduction="none")
    torch.testing.assert_close(strided, scaled_weight, rtol=1e-12, atol=1e-14)
    image = cobi_loss(pred, target, w_spatial=0.7, distance=distance, spatial_units="image", reduction="none")
    pixels = cobi_loss(pred, target, w_spatial=0.1, distance=distance, reduction="none")  # 0.7/max(6, 7) = 0.1
    torch.testing.assert_close(image, pixels, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_auto_w_spatial_is_the_official_weight_per_image_side(variant: str) -> None:
    # 0.1 per image side: per output pixel of a 512-pixel crop for the paper variant, 0.1 as such otherwise
    assert resolve_w_spatial("auto", "paper", "pixels") == 0.1 / 512
    assert resolve_w_spatial("auto", "paper", "image") == resolve_w_spatial("auto", "official", "pixels") == 0.1
    assert resolve_w_spatial(0.3, "paper", "pixels") == 0.3
    pred, target = _features(2, 4, 6, 7), _features(2, 4, 6, 7, seed=1)
    automatic = cobi_loss(pred, target, variant=variant, distance="l2", reduction="none")
    explicit = resolve_w_spatial("auto", variant, "pixels")
    given = cobi_loss(pred, target, w_spatial=explicit, variant=variant, distance="l2", reduction="none")
    torch.testing.assert_close(automatic, given, rtol=0, atol=0)
    assert not torch.equal(automatic, cobi_loss(pred, target, w_spatial=0.5, variant=variant, distance="l2", reduction="none"))
    with pytest.raises(ValueError, match="'auto' or a number"):
        cobi_loss(pred, target, w_spatial="none", variant=variant)


def test_unique_match_share_counts_distinct_targets() -> None:
    matches = torch.tensor([[0, 1, 2, 3], [5, 5, 5, 1], [7, 7, 2, 2]])
    torch.testing.assert_close(unique_match_share(matches), torch.tensor([1.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"\(B, P\)"):
        unique_match_share(torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("distance", DISTANCES)
def test_matches_are_the_naive_nearest_neighbours_and_cobi_is_more_one_to_one_than_cx(distance: str) -> None:
    # a prediction that is a blurred, noisy version of the target moved by 1 px (as a network's output is)
    texture = _smooth_texture(3, 32, seed=5)
    target = texture[..., 17:49, 17:49]
    blurred = F.avg_pool2d(F.pad(texture, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    pred = blurred[..., 16:48, 16:48] + 0.05 * _features(1, 3, 32, 32, seed=9)
    positions = torch.arange(32 * 32)
    xy = torch.stack([positions // 32, positions % 32], dim=-1).double()
    p, q = pred.flatten(2).transpose(1, 2), target.flatten(2).transpose(1, 2)
    if distance == "cosine":
        mu = p.mean(dim=1, keepdim=True)
        d = (1 - F.normalize(p - mu, dim=-1) @ F.normalize(q - mu, dim=-1).transpose(1, 2)) / 2
    else:
        d = torch.cdist(p, q) / 3**0.5
    shares = []
    for w_spatial in (0.0, 0.1, 1.0):
        _, matches = cobi_loss_at(
            pred.flatten(2), target.flatten(2), positions, (32, 32), w_spatial=w_spatial, distance=distance,
            return_matches=True,
        )
        naive = (d + w_spatial * torch.cdist(xy, xy)).argmin(dim=-1)  # the arg-min of Eq. (2), full matrix
        assert matches.shape == (1, 1024) and (matches == naive).double().mean() > 0.999
        shares.append(unique_match_share(matches).item())
    cx, cobi, strong = shares
    # the paper: 43.7 % (CX) vs 93.9 % (CoBi) one-to-one matches
    assert cx < 0.75 and cx + 0.1 < cobi < strong and strong > 0.95, shares


# ------------------------------------------------------------------------------- modules, reduction
@pytest.mark.parametrize("variant", VARIANTS)
def test_modules_equal_functions(variant: str) -> None:
    pred, target = _features(2, 3, 9, 9), _features(2, 3, 9, 9, seed=1)
    kwargs = dict(distance="l2", variant=variant, max_positions=64, chunk_size=10)
    module = CoBiLoss(w_spatial=0.3, **kwargs)(pred, target, generator=torch.Generator().manual_seed(1))
    function = cobi_loss(pred, target, w_spatial=0.3, generator=torch.Generator().manual_seed(1), **kwargs)
    assert torch.equal(module, function)
    cx_module = ContextualLoss(reduction="none", **kwargs)(pred, target, generator=torch.Generator().manual_seed(1))
    cx_function = contextual_loss(pred, target, reduction="none", generator=torch.Generator().manual_seed(1), **kwargs)
    cobi_zero = cobi_loss(
        pred, target, w_spatial=0.0, reduction="none", generator=torch.Generator().manual_seed(1), **kwargs
    )
    assert torch.equal(cx_module, cx_function) and torch.equal(cx_function, cobi_zero)
    assert cx_module.shape == (2,) and torch.equal(cx_module.mean(), contextual_loss(
        pred, target, generator=torch.Generator().manual_seed(1), **kwargs
    ))


def test_default_module_is_the_paper_variant_dense() -> None:
    pred, target = _features(2, 3, 5, 6), _features(2, 3, 5, 6, seed=1)
    expected = cobi_paper_reference(pred, target, W_SPATIAL_PER_PIXEL, "cosine").mean()
    torch.testing.assert_close(CoBiLoss()(pred, target), expected, rtol=1e-12, atol=1e-14)


# -------------------------------------------------------------------------------------- precision
@pytest.mark.parametrize("variant", VARIANTS)
def test_half_input_is_computed_in_float32(variant: str) -> None:
    pred = _features(2, 8, 6, 6, dtype=torch.float32).half().requires_grad_()
    target = _features(2, 8, 6, 6, seed=1, dtype=torch.float32).half()
    loss = cobi_loss(pred, target, variant=variant)
    assert loss.dtype == torch.float32
    expected = cobi_loss(pred.detach().float(), target.float(), variant=variant)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)
    (grad,) = torch.autograd.grad(loss, pred)
    assert grad.dtype == torch.float16 and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_autocast_does_not_lower_the_precision(variant: str) -> None:
    pred, target = _features(2, 8, 6, 6, dtype=torch.float32), _features(2, 8, 6, 6, seed=1, dtype=torch.float32)
    expected = cobi_loss(pred, target, variant=variant)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = cobi_loss(pred, target, variant=variant)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------ guards
@pytest.mark.parametrize(
    ("pred", "target", "kwargs", "message"),
    [
        (torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5), {}, "same shape"),
        (torch.rand(3, 4, 4), torch.rand(3, 4, 4), {}, r"\(B, C, H, W\)"),
        (torch.ones(1, 3, 4, 4, dtype=torch.long), torch.ones(1, 3, 4, 4, dtype=torch.long), {}, "floating point"),
        (torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), {"variant": "official", "max_positions": 8}, "perfect square"),
        (torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), {"variant": "tf"}, "variant"),
        (torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), {"distance": "l1"}, "distance"),
        (torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), {"reduction": "sum"}, "reduction"),
        (torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), {"w_spatial": -0.1}, "w_spatial"),
        (torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), {"variant": "official", "w_spatial": 1.5}, r"\[0, 1\]"),
        (torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), {"max_positions": 0}, "max_positions"),
        (torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), {"chunk_size": 0}, "chunk_size"),
    ],
)
def test_guards(pred: torch.Tensor, target: torch.Tensor, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cobi_loss(pred, target, **kwargs)


def test_module_guards_at_construction() -> None:
    with pytest.raises(ValueError, match="perfect square"):
        CoBiLoss(variant="official", max_positions=1000)
    with pytest.raises(ValueError, match="distance"):
        ContextualLoss(distance="dot")


# ------------------------------------------------------------------ features taken at sampled positions
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_at_sampled_positions_equals_the_loss_on_full_maps(variant: str, distance: str) -> None:
    pred, target = _pair(2, 5, 12, 10)
    loss_full = cobi_loss(
        pred, target, w_spatial=0.3, distance=distance, variant=variant, max_positions=49,
        generator=torch.Generator().manual_seed(7),
    )
    positions = sample_positions(12, 10, 49, torch.Generator().manual_seed(7), pred.device)
    assert positions.shape == (49,) and positions.unique().numel() == 49 and positions.max() < 120
    target_vectors = target.flatten(2) if variant == "paper" else target.flatten(2)[..., positions]
    loss_at = cobi_loss_at(
        pred.flatten(2)[..., positions], target_vectors, positions, (12, 10),
        w_spatial=0.3, distance=distance, variant=variant,
    )
    torch.testing.assert_close(loss_at, loss_full, rtol=0, atol=0)
    grads_at = torch.autograd.grad(loss_at, (pred, target))
    grads_full = torch.autograd.grad(loss_full, (pred, target))
    for at, full in zip(grads_at, grads_full):
        torch.testing.assert_close(at, full)


def test_sample_positions_keeps_every_position_of_a_small_grid_in_order() -> None:
    assert torch.equal(sample_positions(3, 4, 12, None, torch.device("cpu")), torch.arange(12))
    assert torch.equal(sample_positions(3, 4, None, None, torch.device("cpu")), torch.arange(12))


def test_loss_at_rejects_mismatched_vectors_and_non_square_official_samples() -> None:
    positions = torch.arange(0, 20, 2)
    vectors = _features(1, 3, 10)
    with pytest.raises(ValueError, match=r"target \(B, C, 20\) at every H·W position"):
        cobi_loss_at(vectors, vectors, positions, (4, 5))
    with pytest.raises(ValueError, match=r"target \(B, C, 10\) at the P positions"):
        cobi_loss_at(vectors, _features(1, 3, 9), positions, (4, 5), variant="official", w_spatial=0.1)
    with pytest.raises(ValueError, match="square grid"):
        cobi_loss_at(vectors, vectors, positions, (4, 5), variant="official", w_spatial=0.1)


# -------------------------------------------------- numbers from outside our code: reference §1.11
#: The official graph's loss on 48×48 smooth textures against the same texture moved s px diagonally, as
#: measured with an independent numpy restatement of the TF code (reference zoom_learn_zoom.md §1.11):
#: {(distance, w_s): [loss at s = 0, 1, 2, 8]}. RGB-L2 on 3 channels × 255 (the RGB path of the official
#: code), cosine on multi-channel features.
REFERENCE_TABLE = {
    ("l2", 0.0): [0.000, 0.039, 0.080, 0.302],
    ("l2", 0.1): [0.000, 0.140, 0.177, 0.378],
    ("l2", 0.5): [0.000, 0.691, 0.692, 0.693],
    ("cosine", 0.0): [0.001, 0.043, 0.086, 0.358],
    ("cosine", 0.1): [0.001, 0.144, 0.182, 0.423],
    ("cosine", 0.5): [0.001, 0.686, 0.691, 0.693],
}


@pytest.mark.parametrize("distance", DISTANCES)
def test_official_variant_reproduces_the_reference_behaviour_table(distance: str) -> None:
    channels, scale = (3, 255.0) if distance == "l2" else (16, 1.0)
    texture = scale * _smooth_texture(channels, 48, seed=1).float()
    for w_spatial in (0.0, 0.1, 0.5):
        for shift, expected in zip((0, 1, 2, 8), REFERENCE_TABLE[(distance, w_spatial)]):
            loss = cobi_loss(
                *_diagonal_shift(texture, 48, shift), w_spatial=w_spatial, distance=distance, variant="official",
                max_positions=None,
            ).item()
            tolerance = 0.005 if shift <= 2 else 0.03  # the texture statistics matter more for large shifts
            assert loss == pytest.approx(expected, abs=tolerance), (w_spatial, shift)
