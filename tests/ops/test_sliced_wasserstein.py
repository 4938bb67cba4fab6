"""Sliced Wasserstein distance and SelfDZSR's VGG loss (reference §3.1) against naive loops."""

import math

import pytest
import torch

from ops.sliced_wasserstein import SlicedWassersteinLoss, sliced_wasserstein

pytestmark = pytest.mark.usefixtures("one_thread")


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def naive_sliced_wasserstein(pred, target, num_projections, generator):
    """Loops over samples and directions; Python sorts of the projected positions; float64."""
    b_, c_ = pred.shape[:2]
    pred, target = pred.double().flatten(2), target.double().flatten(2)
    draws = torch.randn(num_projections, c_, generator=generator, dtype=torch.float64)
    total, count = 0.0, 0
    for p in range(num_projections):
        norm = math.sqrt(sum(v * v for v in draws[p].tolist()))
        direction = [v / norm for v in draws[p].tolist()]
        for b in range(b_):
            projected = [
                sorted(sum(direction[c] * x[b, c, n].item() for c in range(c_)) for n in range(x.shape[-1]))
                for x in (pred, target)
            ]
            total += sum(abs(u - v) for u, v in zip(*projected))
            count += len(projected[0])
    return total / count


def test_equals_naive_loops_with_the_same_generator():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 6, 3, 4, dtype=torch.float64), torch.randn(2, 6, 3, 4, dtype=torch.float64) + 0.5
    for num_projections in (None, 1, 5):
        value = sliced_wasserstein(pred, target, num_projections=num_projections, generator=seeded(3))
        expected = naive_sliced_wasserstein(pred, target, num_projections or 3, seeded(3))
        assert value.dtype == torch.float64 and value.shape == ()
        torch.testing.assert_close(value.item(), expected, rtol=1e-12, atol=1e-12)


def test_zero_for_identical_inputs_and_positive_for_different_distributions():
    torch.manual_seed(1)
    x = torch.randn(2, 8, 5, 5)
    assert sliced_wasserstein(x, x.clone(), generator=seeded()) == 0
    assert sliced_wasserstein(x, 3.0 * torch.randn(2, 8, 5, 5), generator=seeded()) > 0.5


def test_a_constant_feature_shift_costs_its_projection():
    # y = x + v at every position: each projection moves by d̂·v, so SW = mean_p |d̂_p·v|
    torch.manual_seed(2)
    x, v = torch.randn(2, 6, 4, 5, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    value = sliced_wasserstein(x, x + v[:, None, None], num_projections=4, generator=seeded(5))
    directions = torch.randn(4, 6, generator=seeded(5), dtype=torch.float64)
    directions = directions / directions.norm(dim=1, keepdim=True)
    torch.testing.assert_close(value, (directions @ v).abs().mean())


def test_invariant_to_permutations_of_the_positions():
    torch.manual_seed(3)
    pred, target = torch.randn(2, 8, 4, 6), torch.randn(2, 8, 4, 6)
    value = sliced_wasserstein(pred, target, generator=seeded())

    def permuted(x, order):
        return x.flatten(2)[..., order].view_as(x)

    same = torch.randperm(24)
    torch.testing.assert_close(sliced_wasserstein(permuted(pred, same), permuted(target, same), generator=seeded()), value)
    # each side is sorted on its own: independent permutations do not matter either
    other = torch.randperm(24)
    torch.testing.assert_close(sliced_wasserstein(permuted(pred, same), permuted(target, other), generator=seeded()), value)


def test_reproducible_with_a_seeded_generator_and_draws_half_the_channels():
    torch.manual_seed(4)
    pred, target = torch.randn(1, 10, 4, 4), torch.randn(1, 10, 4, 4)
    generator = seeded(7)
    first = sliced_wasserstein(pred, target, generator=generator)
    assert sliced_wasserstein(pred, target, generator=seeded(7)) == first
    assert sliced_wasserstein(pred, target, generator=seeded(8)) != first
    # default P = C/2 = 5: the call consumed exactly one (5, 10) float32 draw
    consumed = seeded(7)
    torch.randn(5, 10, generator=consumed)
    assert torch.equal(generator.get_state(), consumed.get_state())


def test_global_rng_when_no_generator():
    pred, target = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    torch.manual_seed(9)
    first = sliced_wasserstein(pred, target)
    torch.manual_seed(9)
    assert sliced_wasserstein(pred, target) == first


def test_gradcheck():
    torch.manual_seed(5)
    pred = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, t: sliced_wasserstein(p, t, num_projections=4, generator=seeded(1)), (pred, target)
    )


def test_float32_under_autocast():
    torch.manual_seed(6)
    pred, target = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    expected = sliced_wasserstein(pred, target, generator=seeded())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = sliced_wasserstein(pred, target, generator=seeded())
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, expected)


@pytest.fixture(scope="module")
def loss_module():
    torch.manual_seed(0)
    return SlicedWassersteinLoss()  # random VGG-19 weights: nothing is downloaded


def test_module_weighs_relu3_2_relu4_2_relu5_2_by_1_1_2_times_0_08(loss_module):
    torch.manual_seed(7)
    pred, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    generator = seeded(11)
    loss = loss_module(pred, target, generator=generator)
    features = loss_module.vgg(pred), loss_module.vgg(target)
    assert [f.shape[1] for f in features[0].values()] == [256, 512, 512]
    draws = seeded(11)  # one draw per layer in the order relu3_2, relu4_2, relu5_2
    per_layer = [sliced_wasserstein(features[0][name], features[1][name], generator=draws) for name in features[0]]
    assert list(features[0]) == ["conv3_2", "conv4_2", "conv5_2"] and min(per_layer) > 0
    torch.testing.assert_close(loss, 0.08 * (per_layer[0] + per_layer[1] + 2 * per_layer[2]))
    # the draws were 128, 256 and 256 directions (C/2)
    reference = seeded(11)
    for shape in ((128, 256), (256, 512), (256, 512)):
        torch.randn(*shape, generator=reference)
    assert torch.equal(generator.get_state(), reference.get_state())


def test_module_layer_weights_keep_the_draw_order():
    torch.manual_seed(8)
    module = SlicedWassersteinLoss(weight=0.5, layer_weights={"conv3_2": 0.0, "conv4_2": 0.0, "conv5_2": 1.0})
    pred, target = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    draws = seeded(2)
    features = module.vgg(pred), module.vgg(target)
    per_layer = [sliced_wasserstein(features[0][name], features[1][name], generator=draws) for name in features[0]]
    torch.testing.assert_close(module(pred, target, generator=seeded(2)), 0.5 * per_layer[2])


def test_module_gradients_reach_the_prediction_only(loss_module):
    pred = torch.rand(1, 3, 32, 32, requires_grad=True)
    module = torch.nn.Sequential(loss_module).train()
    loss_module(pred, torch.rand(1, 3, 32, 32), generator=seeded()).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in loss_module.parameters())
    assert module.training and not loss_module.vgg.training


def test_module_loads_torchvision_layout_weights(loss_module):
    torch.manual_seed(9)
    module = SlicedWassersteinLoss()
    state = {f"features.{key}": value for key, value in loss_module.vgg.features.state_dict().items()}
    module.load_torchvision_state_dict(state)
    pred, target = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(module(pred, target, generator=seeded()), loss_module(pred, target, generator=seeded()))
    with pytest.raises(ValueError, match=r"features\.28\.weight"):
        module.load_torchvision_state_dict({k: v for k, v in state.items() if k != "features.28.weight"})


@pytest.mark.parametrize(
    ("pred", "target", "kwargs", "message"),
    [
        (torch.rand(4, 3, 3), torch.rand(1, 4, 3, 3), {}, r"pred_features of shape \(B, C, H, W\)"),
        (torch.rand(1, 4, 3, 3), torch.ones(1, 4, 3, 3, dtype=torch.int64), {}, "floating-point target_features"),
        (torch.rand(1, 4, 3, 3), torch.rand(1, 4, 3, 4), {}, "same shape"),
        (torch.rand(1, 4, 3, 3), torch.rand(1, 4, 3, 3), {"num_projections": 0}, "num_projections"),
    ],
)
def test_guards(pred, target, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sliced_wasserstein(pred, target, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight": -1.0}, "weight"),
        ({"layer_weights": {}}, "non-empty"),
        ({"layer_weights": {"conv3_2": -1.0}}, "weights >= 0"),
        ({"layer_weights": {"conv9_9": 1.0}}, "unknown VGG-19 layer"),
        ({"num_projections": 0}, "num_projections"),
    ],
)
def test_module_guards(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SlicedWassersteinLoss(**kwargs)
