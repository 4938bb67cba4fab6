"""ops.flow: PWC-Net layout and estimate protocol, RAFT wrapper, OpenCV DIS accuracy on known synthetic flows."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from ops.flow import (
    ClassicalFlow,
    FlowEstimator,
    PWCNet,
    RAFTFlow,
    build_flow_estimator,
    pwcnet_state_dict_from_official,
)
from ops.warp import backward_warp

pytestmark = pytest.mark.usefixtures("one_thread")


def _texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """RGB (1, 3, H, W) in [0, 1]: Gaussian-blurred noise at two scales (σ = 1.5 and 4 px)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.zeros(1, 3, height, width, dtype=torch.float64)
    for sigma in (1.5, 4.0):
        radius = int(3 * sigma)
        taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float64) ** 2 / (2 * sigma**2))
        taps = (taps / taps.sum()).repeat(3, 1, 1, 1)
        noise = torch.randn(1, 3, height, width, generator=generator, dtype=torch.float64)
        noise = F.conv2d(F.pad(noise, (radius, radius, 0, 0), mode="reflect"), taps.view(3, 1, 1, -1), groups=3)
        noise = F.conv2d(F.pad(noise, (0, 0, radius, radius), mode="reflect"), taps.view(3, 1, -1, 1), groups=3)
        image += noise / noise.std()
    return (image - image.min()) / (image.max() - image.min())


def _sinusoidal_flow(height: int, width: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    u = 1.2 * torch.sin(2 * math.pi * xs / 80 + 0.3) * torch.cos(2 * math.pi * ys / 96)
    v = torch.cos(2 * math.pi * xs / 100) * torch.sin(2 * math.pi * ys / 70 + 1)
    return torch.stack((u, v))[None]


# ---------------------------------------------------------------------------------------------- PWC-Net


@pytest.fixture(scope="module")
def pwcnet() -> PWCNet:
    torch.manual_seed(0)
    return PWCNet()


def test_pwcnet_has_the_reference_parameter_count_and_key_layout(pwcnet: PWCNet):
    assert sum(p.numel() for p in pwcnet.parameters()) == 9_374_274
    state = pwcnet.state_dict()
    assert len(state) == 126
    # the key format of sniklaus' network-default.pytorch after the official module → net renaming
    expected_shapes = {
        "netExtractor.netOne.0.weight": (16, 3, 3, 3),
        "netExtractor.netSix.4.bias": (196,),
        "netSix.netOne.0.weight": (128, 81, 3, 3),
        "netFiv.netUpfeat.weight": (81 + 448, 2, 4, 4),
        "netTwo.netUpflow.weight": (2, 2, 4, 4),
        "netTwo.netOne.0.weight": (128, 81 + 32 + 4, 3, 3),
        "netTwo.netSix.0.weight": (2, 117 + 448, 3, 3),
        "netRefiner.netMain.0.weight": (128, 565, 3, 3),
        "netRefiner.netMain.8.weight": (64, 96, 3, 3),
        "netRefiner.netMain.12.bias": (2,),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert "netSix.netUpflow.weight" not in state
    dilations = [m.dilation[0] for m in pwcnet.netRefiner.netMain if isinstance(m, torch.nn.Conv2d)]
    assert dilations == [1, 2, 4, 8, 16, 1, 1]
    assert not any(p.requires_grad for p in pwcnet.parameters())
    assert not pwcnet.train().training


def test_pwcnet_forward_runs_at_64(pwcnet: PWCNet):
    generator = torch.Generator().manual_seed(1)
    first, second = torch.rand(2, 1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        flow = pwcnet(first, second)
        quarter = pwcnet.network(first, second)
    assert flow.shape == (1, 2, 64, 64) and torch.isfinite(flow).all()
    assert quarter.shape == (1, 2, 16, 16)
    # 64 is a multiple of 64: the protocol is a plain ×4 bilinear up-sampling and ×20
    expected = 20 * F.interpolate(quarter, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(flow, expected)


def test_pwcnet_decoders_warp_with_the_level_scale_and_the_official_normalization(pwcnet: PWCNet, monkeypatch):
    import ops.flow

    warps, upflows = [], {}

    def recording_warp(image, flow, **options):
        warps.append((image.shape[-1], flow, options))
        return backward_warp(image, flow, **options)

    monkeypatch.setattr(ops.flow, "backward_warp", recording_warp)
    exact = PWCNet(warp_normalization="pixel")
    exact.load_state_dict(pwcnet.state_dict())
    hooks = [
        getattr(pwcnet, name).netUpflow.register_forward_hook(
            lambda _module, _inputs, out, level=level: upflows.update({level: out})
        )
        for level, name in zip(range(2, 6), ("netTwo", "netThr", "netFou", "netFiv"))
    ]
    generator = torch.Generator().manual_seed(4)
    first, second = torch.rand(2, 1, 3, 128, 128, generator=generator)
    with torch.no_grad():
        pwcnet.network(first, second)
        for hook in hooks:
            hook.remove()
        assert [width for width, _, _ in warps] == [4, 8, 16, 32]  # levels 5, 4, 3, 2 of a 128² input
        for (_, flow, options), level in zip(warps, (5, 4, 3, 2)):
            assert options == {"normalization": "official"}
            torch.testing.assert_close(flow, upflows[level] * (20 / 2**level))  # 0.625, 1.25, 2.5, 5
        warps.clear()
        exact.network(first, second)
    assert [options for _, _, options in warps] == [{"normalization": "pixel"}] * 4


def test_pwcnet_estimate_protocol_resizes_to_multiples_of_64_and_rescales(pwcnet: PWCNet, monkeypatch):
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def constant_network(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        seen.append((first, second))
        raw = torch.empty(first.shape[0], 2, first.shape[2] // 4, first.shape[3] // 4)
        raw[:, 0], raw[:, 1] = 0.05, -0.1  # 1 px and −2 px at the network's size
        return raw

    monkeypatch.setattr(pwcnet, "network", constant_network)
    generator = torch.Generator().manual_seed(2)
    first, second = torch.rand(2, 2, 3, 50, 70, generator=generator)
    flow = pwcnet(first, second)
    assert flow.shape == (2, 2, 50, 70)
    assert seen[0][0].shape == (2, 3, 64, 128)
    torch.testing.assert_close(seen[0][1], F.interpolate(second, size=(64, 128), mode="bilinear", align_corners=False))
    torch.testing.assert_close(flow[:, 0], torch.full((2, 50, 70), 1.0 * 70 / 128))
    torch.testing.assert_close(flow[:, 1], torch.full((2, 50, 70), -2.0 * 50 / 64))

    seen.clear()
    bgr = PWCNet(channel_order="bgr")
    monkeypatch.setattr(bgr, "network", constant_network)
    bgr(first, second)
    flipped = F.interpolate(first.flip(1), size=(64, 128), mode="bilinear", align_corners=False)
    torch.testing.assert_close(seen[0][0], flipped)


def test_pwcnet_loads_an_official_format_state_dict_strictly(pwcnet: PWCNet, tmp_path):
    # synthetic stand-in for sniklaus' file: this module's tensors under the original `module…` names
    official = {key.replace("net", "module"): value.clone() for key, value in pwcnet.state_dict().items()}
    assert all(key.startswith("module") and "net" not in key for key in official)
    assert "moduleExtractor.moduleOne.0.weight" in official and "moduleRefiner.moduleMain.12.bias" in official
    assert pwcnet_state_dict_from_official(official).keys() == pwcnet.state_dict().keys()
    wrapped = {f"module.{key}": value for key, value in official.items()}  # saved from a DataParallel wrapper
    assert pwcnet_state_dict_from_official(wrapped).keys() == pwcnet.state_dict().keys()

    path = tmp_path / "network-default.pytorch"
    torch.save(official, path)
    loaded = PWCNet(weights=torch.load(path, weights_only=True))
    for key, value in pwcnet.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    incomplete = dict(official)
    del incomplete["moduleTwo.moduleUpfeat.bias"]
    with pytest.raises(RuntimeError, match=r"netTwo\.netUpfeat\.bias"):
        PWCNet(weights=incomplete)
    with pytest.raises(ValueError, match="loaded state dict, got PosixPath.*sniklaus"):
        PWCNet(weights=tmp_path / "missing.pth")  # ops read no files


# ---------------------------------------------------------------------------------------------- RAFT


def test_raft_small_with_random_weights_runs_quickly_on_a_non_multiple_of_8():
    torch.manual_seed(0)
    raft = RAFTFlow("small")
    assert not any(p.requires_grad for p in raft.parameters()) and not raft.train().training
    generator = torch.Generator().manual_seed(3)
    first, second = torch.rand(2, 1, 3, 130, 132, generator=generator)
    start = time.perf_counter()
    with torch.no_grad():
        flow = raft(first, second)
    elapsed = time.perf_counter() - start
    assert flow.shape == (1, 2, 130, 132) and torch.isfinite(flow).all()
    assert elapsed < 3.0, f"RAFT-small took {elapsed:.2f} s at 130×132 (environment.md: ≈0.12 s at 128²)"
    with pytest.raises(ValueError, match="at least 128×128.*got 64×200"):
        raft(torch.rand(1, 3, 64, 200), torch.rand(1, 3, 64, 200))


def test_raft_loads_a_torchvision_state_dict(tmp_path):
    torch.manual_seed(0)
    source = RAFTFlow("small")
    path = tmp_path / "raft_small_C_T_V2-01064c6d.pth"
    torch.save(source.net.state_dict(), path)
    loaded = build_flow_estimator("raft_small", weights=torch.load(path, weights_only=True))
    assert isinstance(loaded, RAFTFlow) and loaded.size == "small"
    for key, value in source.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[key], value), key


# ---------------------------------------------------------------------------------------------- classical


def test_classical_recovers_a_smooth_sinusoidal_flow():
    second = _texture(128, 128)
    flow = _sinusoidal_flow(128, 128)
    assert flow.norm(dim=1).max() <= 2.0
    first, _ = backward_warp(second, flow)  # first(x) = second(x + flow(x))
    for preset in ("medium", "fine"):
        estimate = ClassicalFlow(preset)(first, second)
        assert estimate.shape == (1, 2, 128, 128) and estimate.dtype == torch.float64
        error = (estimate - flow).norm(dim=1)[0, 12:-12, 12:-12]
        assert error.mean() < 0.5, (preset, float(error.mean()))
    zero = ClassicalFlow("fine")(second, second)
    assert zero.abs().max() < 0.05


@pytest.mark.parametrize(("preset", "scale"), [("medium", 1.0), ("fine", 1.0), ("fine", 0.5)])
def test_classical_recovers_a_constant_translation(preset: str, scale: float):
    image = _texture(160, 160, seed=1)
    shift = torch.tensor([2.3, -1.7], dtype=torch.float64).view(1, 2, 1, 1).expand(1, 2, 160, 160)
    moved, _ = backward_warp(image, shift)
    first, second = moved[..., 16:-16, 16:-16], image[..., 16:-16, 16:-16]
    estimate = ClassicalFlow(preset, scale)(first, second)
    error = (estimate - shift[..., 16:-16, 16:-16]).norm(dim=1)
    assert error.median() < 0.2, float(error.median())


def test_classical_handles_each_batch_element_and_grey_input_without_gradient():
    image = _texture(96, 96, seed=2).float()
    shifts = torch.tensor([[1.5, 0.0], [-1.0, 2.0]]).view(2, 2, 1, 1).expand(2, 2, 96, 96)
    moved, _ = backward_warp(image.expand(2, -1, -1, -1), shifts)
    first, second = moved[..., 12:-12, 12:-12].requires_grad_(), image.expand(2, -1, -1, -1)[..., 12:-12, 12:-12]
    estimate = ClassicalFlow("fine")(first, second)
    assert estimate.dtype == torch.float32 and not estimate.requires_grad
    medians = estimate.flatten(2).median(dim=2).values
    torch.testing.assert_close(medians, shifts[:, :, 0, 0], rtol=0, atol=0.1)
    grey = ClassicalFlow("fine")(first.mean(1, keepdim=True), second.mean(1, keepdim=True))
    torch.testing.assert_close(grey.flatten(2).median(dim=2).values, shifts[:, :, 0, 0], rtol=0, atol=0.1)


# ---------------------------------------------------------------------------------------------- interface


def test_factory_and_guards():
    classical = build_flow_estimator()
    assert isinstance(classical, ClassicalFlow) and not classical.differentiable
    assert isinstance(build_flow_estimator("classical", preset="fine", scale=0.5), ClassicalFlow)
    torch.manual_seed(0)
    for kind, cls in (("pwcnet", PWCNet), ("raft_small", RAFTFlow)):
        estimator = build_flow_estimator(kind)
        assert isinstance(estimator, cls) and isinstance(estimator, FlowEstimator)
        assert not estimator.training and not any(p.requires_grad for p in estimator.parameters())
    with pytest.raises(ValueError, match="takes no weights"):
        build_flow_estimator("classical", weights="pwc-net.pth")
    with pytest.raises(ValueError, match="got 'farneback'"):
        build_flow_estimator("farneback")
    with pytest.raises(ValueError, match=r"one shape \(B, C, H, W\), got \(1, 3, 8, 8\) and \(1, 3, 8, 9\)"):
        classical(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="PWCNet expects 3 channels, got 1"):
        PWCNet()(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="0 < scale ≤ 1, got 2"):
        ClassicalFlow(scale=2)
    with pytest.raises(ValueError, match="at least 16×16 .* got 12×40 at scale 1.0: 12×40"):
        classical(torch.rand(1, 3, 12, 40), torch.rand(1, 3, 12, 40))  # OpenCV would crash the process
    with pytest.raises(ValueError, match="got 64×64 at scale 0.2: 13×13"):
        ClassicalFlow(scale=0.2)(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))


def test_unfrozen_pwcnet_trains_and_passes_gradients_to_the_images():
    torch.manual_seed(0)
    net = PWCNet(frozen=False)
    assert net.train().training and all(p.requires_grad for p in net.parameters())
    first = torch.rand(1, 3, 64, 64, requires_grad=True)
    net(first, torch.rand(1, 3, 64, 64)).square().mean().backward()
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert net.netExtractor.netOne[0].weight.grad is not None
