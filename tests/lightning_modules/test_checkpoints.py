"""Official SelfDZSR checkpoint converters: key tables of reference §2.2, channel order, strictness, files."""

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.checkpoints import (
    OfficialCheckpointError,
    aux_lr_generator_state_from_official,
    aux_lr_generator_state_to_official,
    feature_extractor_state_from_official,
    feature_extractor_state_to_official,
    load_official_selfdzsr,
    selfdzsr_net_state_from_official,
    selfdzsr_net_state_to_official,
)
from lightning_modules.networks import AuxLRGenerator, DZSRFeatureExtractor, SelfDZSRNet

REPO = Path(__file__).resolve().parents[2]
MEAN = torch.tensor([0.4488, 0.4371, 0.4040])
GRID = torch.tensor([[-1.0, -1, -1, 0, 0, 0, 1, 1, 1], [-1.0, 0, 1, -1, 0, 1, -1, 0, 1]])
KERNELGEN_MD5 = "b2694554c92adb5ddfc5aa3e085e8d78"


# ------------------------------------------------------------------- official key tables (§2.2)
def _conv(shapes, prefix, out, inp, k, bias=True):
    shapes[f"{prefix}.weight"] = (out, inp, k, k)
    if bias:
        shapes[f"{prefix}.bias"] = (out,)


def _mean_shift(shapes, prefix):
    shapes[f"{prefix}.weight"], shapes[f"{prefix}.bias"] = (3, 1, 1, 1), (3,)


def official_refsr_shapes(scale):
    shapes = {}
    _mean_shift(shapes, "ref_extractor.0")
    _conv(shapes, "ref_extractor.1.0", 64, 3, 3)
    for j in (0, 2, 4, 6):
        _conv(shapes, f"ref_extractor.2.{j}", 64, 64, 3)
    _mean_shift(shapes, "ref_head.0")
    _conv(shapes, "ref_head.2", 64, 3 * scale**2, 3)
    _mean_shift(shapes, "head.0")
    _conv(shapes, "head.1", 64, 3, 3)
    for ada in ("ada1", "ada2", "ada3", "ref_ada"):
        shapes[f"{ada}.regular_matrix"] = (2, 9)
        _conv(shapes, f"{ada}.concat.0", 128, 1, 3)
        _conv(shapes, f"{ada}.concat2.0", 64, 2, 3)
        _conv(shapes, f"{ada}.transform_matrix_conv", 4, 64, 5)
        _conv(shapes, f"{ada}.translation_conv", 2, 64, 5)
        _conv(shapes, f"{ada}.adapt_conv", 64, 1, 3, bias=False)
    _conv(shapes, "deform_conv", 64, 1, 3)
    _mean_shift(shapes, "predictor.mean")
    _conv(shapes, "predictor.head.0.0", 64, 6, 3)
    _conv(shapes, "predictor.predictor.0.0", 64, 128, 3)
    for j in range(1, 5):
        _conv(shapes, f"predictor.predictor.{j}.0", 64, 64, 3)
    _conv(shapes, "concat_fea.0", 64, 128, 3)
    for b in range(16):
        _conv(shapes, f"block{b}.res.0", 64, 64, 3)
        _conv(shapes, f"block{b}.res.2", 64, 64, 3)
        _conv(shapes, f"block{b}.mlp.0.0", 4, 64, 1)
        _conv(shapes, f"block{b}.mlp.1", 64, 4, 1)
    _conv(shapes, "body_lastconv", 64, 64, 3)
    for j in range({4: 2, 2: 1}[scale]):
        _conv(shapes, f"up.{j}.0", 256, 64, 3)
    _conv(shapes, "tail.0", 3, 64, 3)
    _mean_shift(shapes, "tail.1")
    return shapes


def official_kernelgen_shapes(scale):
    shapes = {}
    _mean_shift(shapes, "head_mean")
    _conv(shapes, "head.0", 64, 3 * scale**2, 1)
    for k in (7, 5, 3):
        _conv(shapes, f"conv_{k}x{k}.0", 64, 64, k)
    for j in (0, 2, 4):
        _conv(shapes, f"conv_1x1.{j}", 64, 64, 1)
    _conv(shapes, "tail", 3, 64, 1)
    _conv(shapes, "guide_net.0.0", 64, 3 * scale**2 + 3, 7)
    for j in (0, 2, 4):
        _conv(shapes, f"guide_net.1.{j}", 64, 64, 3)
    _conv(shapes, "guide_net.3", 64, 64, 1)
    _mean_shift(shapes, "tail_mean")
    return shapes


def official_student_shapes():
    shapes = {}
    for branch in ("feature_extraction_image1", "feature_extraction_image2"):
        shapes[f"{branch}.mean"] = shapes[f"{branch}.std"] = (1, 3, 1, 1)
        layers = (("1_1", 64, 3), ("1_2", 64, 64), ("2_1", 128, 64), ("2_2", 128, 128), ("3_1", 256, 128))
        for name, out, inp in layers:
            _conv(shapes, f"{branch}.model.conv{name}", out, inp, 3)
    return shapes


def random_official_state(shapes, seed=0):
    """Random weights with the official constants: MeanShifts, regular matrices, ImageNet mean / std."""
    generator = torch.Generator().manual_seed(seed)
    state = {key: 0.05 * torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    for key in state:
        if key.endswith("regular_matrix"):
            state[key] = GRID.clone()
        elif key.endswith(".mean") and key.startswith("feature_extraction"):
            state[key] = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        elif key.endswith(".std"):
            state[key] = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for prefix in ("ref_extractor.0", "ref_head.0", "head.0", "predictor.mean", "head_mean", "tail.1", "tail_mean"):
        if f"{prefix}.bias" in state and state[f"{prefix}.weight"].shape == (3, 1, 1, 1):
            state[f"{prefix}.weight"] = torch.ones(3, 1, 1, 1)
            state[f"{prefix}.bias"] = (1 if prefix.startswith("tail") else -1) * MEAN
    return state


def randomised(net, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return net


# ------------------------------------------------------- the official forwards, from the reference
def down_block(x, scale):
    """Official DownBlock: channel (dy·s + dx)·C + c."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // scale, scale, w // scale, scale).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(n, c * scale**2, h // scale, w // scale)


def official_mean_shift(state, prefix, x):
    return F.conv2d(x, state[f"{prefix}.weight"], state[f"{prefix}.bias"], groups=3)


def official_kernelgen(state, hr, lr, scale):
    """KernelGen forward written from reference §1.2 with the official parameters and DownBlock order."""
    conv = lambda x, key, **kw: F.conv2d(x, state[f"{key}.weight"], state[f"{key}.bias"], **kw)  # noqa: E731
    hr_down = down_block(official_mean_shift(state, "head_mean", hr), scale)
    lr = official_mean_shift(state, "head_mean", lr)
    g = F.relu(conv(torch.cat((hr_down, lr), 1), "guide_net.0.0", stride=2, padding=0))
    g = F.relu(conv(g, "guide_net.1.0", padding=1))
    g = F.relu(conv(g, "guide_net.1.2", padding=1))
    g = conv(g, "guide_net.1.4", padding=1).mean(dim=(2, 3), keepdim=True)
    g = conv(g, "guide_net.3")
    h0 = F.relu(conv(hr_down, "head.0"))
    x = h0 * g + h0
    for k in (7, 5, 3):
        x = F.relu(conv(x, f"conv_{k}x{k}.0", padding=k // 2))
    for j in (0, 2, 4):
        x = F.relu(conv(x, f"conv_1x1.{j}"))
    return official_mean_shift(state, "tail_mean", conv(x + h0, "tail"))


# ------------------------------------------------------------------------------------ tables
@pytest.mark.parametrize(("scale", "keys", "elements"), [(4, 216, 2_054_337), (2, 214, 1_885_889)])
def test_hand_built_official_refsr_state_loads_strictly(scale, keys, elements):
    official = random_official_state(official_refsr_shapes(scale))
    assert len(official) == keys and sum(v.numel() for v in official.values()) == elements
    net = SelfDZSRNet(scale=scale)
    net.load_state_dict(selfdzsr_net_state_from_official(official, scale), strict=True)
    torch.testing.assert_close(net.block7.res[2].weight, official["block7.res.2.weight"])
    assert not torch.equal(net.ref_head[2].weight, official["ref_head.2.weight"])  # channels permuted
    # Functional check of the permutation: MeanShift → DownBlock → conv (official) == our ref_head.
    ref = torch.rand(2, 3, 8 * scale, 4 * scale)
    expected = F.conv2d(
        down_block(official_mean_shift(official, "ref_head.0", ref), scale),
        official["ref_head.2.weight"], official["ref_head.2.bias"], padding=1,
    )
    torch.testing.assert_close(net.ref_head(ref), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("scale", "elements"), [(4, 630_927), (2, 515_727)])
def test_hand_built_official_kernelgen_state_matches_the_official_forward(scale, elements):
    official = random_official_state(official_kernelgen_shapes(scale), seed=scale)
    assert len(official) == 30 and sum(v.numel() for v in official.values()) == elements
    net = AuxLRGenerator(scale=scale)
    net.load_state_dict(aux_lr_generator_state_from_official(official, scale), strict=True)
    hr, lr = torch.rand(2, 3, 12 * scale, 16 * scale), torch.rand(2, 3, 12, 16)
    torch.testing.assert_close(net(hr, lr), official_kernelgen(official, hr, lr, scale), rtol=1e-5, atol=1e-5)


def test_hand_built_official_student_state_loads_strictly():
    official = random_official_state(official_student_shapes())
    assert len(official) == 24 and sum(v.numel() for v in official.values()) == 1_110_668
    extractor = DZSRFeatureExtractor()
    extractor.load_state_dict(feature_extractor_state_from_official(official), strict=True)
    branches = {"lr_branch": "feature_extraction_image1", "ref_branch": "feature_extraction_image2"}
    for ours, theirs in branches.items():
        for layer in ("conv1_1", "conv2_2", "conv3_1"):
            for kind in ("weight", "bias"):
                got = extractor.get_parameter(f"{ours}.model.{layer}.{kind}")
                torch.testing.assert_close(got, official[f"{theirs}.model.{layer}.{kind}"])


# -------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("scale", [4, 2])
def test_round_trips_through_the_official_layout(scale):
    cases = (
        (SelfDZSRNet(scale=scale), official_refsr_shapes(scale), selfdzsr_net_state_to_official,
         selfdzsr_net_state_from_official, (scale,)),
        (AuxLRGenerator(scale=scale), official_kernelgen_shapes(scale), aux_lr_generator_state_to_official,
         aux_lr_generator_state_from_official, (scale,)),
        (DZSRFeatureExtractor(), official_student_shapes(), feature_extractor_state_to_official,
         feature_extractor_state_from_official, ()),
    )
    for net, shapes, to_official, from_official, args in cases:
        ours = randomised(net).state_dict()
        official = to_official(ours, *args)
        assert {key: tuple(value.shape) for key, value in official.items()} == shapes
        back = from_official(official, *args)
        assert back.keys() == ours.keys()
        for key in ours:
            assert torch.equal(back[key], ours[key]), key


# ------------------------------------------------------------------------------- strictness
def test_extra_missing_misshaped_keys_and_wrong_constants_are_named():
    official = random_official_state(official_kernelgen_shapes(4))
    with pytest.raises(OfficialCheckpointError, match=r"unexpected keys \['tail.extra'\]"):
        aux_lr_generator_state_from_official({**official, "tail.extra": torch.zeros(1)}, 4)
    missing = {key: value for key, value in official.items() if key != "conv_5x5.0.bias"}
    with pytest.raises(OfficialCheckpointError, match=r"missing keys \['conv_5x5.0.bias'\]"):
        aux_lr_generator_state_from_official(missing, 4)
    with pytest.raises(OfficialCheckpointError, match=r"guide_net.0.0.weight: expected \(64, 51, 7, 7\)"):
        aux_lr_generator_state_from_official({**official, "guide_net.0.0.weight": torch.zeros(64, 15, 7, 7)}, 4)
    with pytest.raises(OfficialCheckpointError, match="tail_mean.bias"):
        aux_lr_generator_state_from_official({**official, "tail_mean.bias": -MEAN}, 4)
    refsr = random_official_state(official_refsr_shapes(2))
    with pytest.raises(OfficialCheckpointError, match="ada2.regular_matrix"):
        selfdzsr_net_state_from_official({**refsr, "ada2.regular_matrix": GRID.flip(0)}, 2)
    with pytest.raises(OfficialCheckpointError, match=r"missing keys \['up.1.0.bias', 'up.1.0.weight'\]"):
        selfdzsr_net_state_from_official(refsr, 4)  # a ×2 checkpoint is not a ×4 one
    with pytest.raises(OfficialCheckpointError, match="our SelfRefSR"):
        selfdzsr_net_state_to_official({}, 2)


def test_load_official_selfdzsr_reads_files_and_names_the_bad_one(tmp_path):
    states = {
        "refsr": random_official_state(official_refsr_shapes(4), seed=1),
        "kernelgen": random_official_state(official_kernelgen_shapes(4), seed=2),
        "student": random_official_state(official_student_shapes(), seed=3),
    }
    paths = {}
    for name, state in states.items():
        paths[name] = tmp_path / f"{name}.pth"
        torch.save({"state_dict": state}, paths[name])
    module = SimpleNamespace(
        net=SelfDZSRNet(scale=4), aux_lr_generator=AuxLRGenerator(scale=4), feature_extractor=DZSRFeatureExtractor()
    )
    load_official_selfdzsr(module, refsr=paths["refsr"], kernelgen=paths["kernelgen"], student=paths["student"])
    refsr = states["refsr"]
    torch.testing.assert_close(module.net.predictor.predictor[3][0].weight, refsr["predictor.predictor.3.0.weight"])
    torch.testing.assert_close(module.aux_lr_generator.conv_7x7[0].weight, states["kernelgen"]["conv_7x7.0.weight"])
    torch.testing.assert_close(
        module.feature_extractor.lr_branch.model.conv1_1.weight,
        states["student"]["feature_extraction_image1.model.conv1_1.weight"],
    )
    bad = tmp_path / "bad_kernelgen.pth"
    torch.save({"state_dict": {**states["kernelgen"], "guide_net.9.weight": torch.zeros(1)}}, bad)
    with pytest.raises(OfficialCheckpointError, match=rf"{bad}: .*unexpected keys \['guide_net.9.weight'\]"):
        load_official_selfdzsr(module, kernelgen=bad)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_official_selfdzsr(module, refsr=tmp_path / "nowhere.pth")
    with pytest.raises(AttributeError, match="aux_lr_generator"):
        load_official_selfdzsr(SimpleNamespace(net=module.net), kernelgen=paths["kernelgen"])


# ------------------------------------------------------------------- the released Nikon KernelGen
def fixture_file() -> Path:
    folder = Path(os.environ.get("RAWZOOM_SELFDZSR_FIXTURES", REPO.parent / "shared" / "fixtures" / "selfdzsr"))
    path = folder / "KernelGen_nikon_pretrain_400.pth"
    if not path.is_file():
        pytest.skip(f"released KernelGen checkpoint not found at {path} (set RAWZOOM_SELFDZSR_FIXTURES to its folder)")
    return path


def test_released_nikon_kernelgen_loads_and_matches_the_official_forward():
    path = fixture_file()
    assert hashlib.md5(path.read_bytes()).hexdigest() == KERNELGEN_MD5
    official = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert len(official) == 30
    assert torch.equal(official["head_mean.bias"], -MEAN) and torch.equal(official["tail_mean.bias"], MEAN)
    net = AuxLRGenerator(scale=4)
    load_official_selfdzsr(SimpleNamespace(aux_lr_generator=net), kernelgen=path)
    generator = torch.Generator().manual_seed(0)
    hr, lr = torch.rand(2, 3, 64, 80, generator=generator), torch.rand(2, 3, 16, 20, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(net(hr, lr), official_kernelgen(official, hr, lr, 4), rtol=0, atol=1e-5)
