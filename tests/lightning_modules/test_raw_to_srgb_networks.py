"""RAW-to-sRGB networks (reference ``raw_to_srgb.md`` §1, §2, §8): GCM, LiteISPNet, PatchGAN, the SRResNet
backbone options of ZoomLearnNet, and the official checkpoint converters.

The official key tables and forwards below are written from the reference (layer tables, §1) and the official
module structure, independently of the networks under test.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_modules.checkpoints import (
    OfficialCheckpointError,
    gcm_state_from_official,
    gcm_state_to_official,
    liteispnet_state_from_official,
    liteispnet_state_to_official,
    load_official_raw_to_srgb,
    srresnet_state_from_official,
    srresnet_state_to_official,
)
from lightning_modules.networks import (
    RAW_TO_SRGB_BACKBONE,
    GlobalColorMapping,
    LiteISPNet,
    PatchGANDiscriminator,
    ZoomLearnNet,
)
from lightning_modules.networks.gcm import coordinate_map
from lightning_modules.networks.liteispnet import ResidualGroup
from lightning_modules.networks.zoom_learn_net import make_deconv
from ops.bayer import pack_bayer

#: The official DWTForward / DWTInverse filters (``models/networks.py:L182-207``), one per sub-band.
OFFICIAL_HAAR = 0.5 * torch.tensor(
    [[[1.0, 1], [1, 1]], [[1.0, 1], [-1, -1]], [[1.0, -1], [1, -1]], [[1.0, -1], [-1, 1]]]
).unsqueeze(1)  # (4, 1, 2, 2)


def trainable(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def on_meta(build):
    with torch.device("meta"):
        return build()


def official_coord(height: int, width: int, dtype=np.float32) -> torch.Tensor:
    """``util.get_coord(H, W, 1, 1)``: numpy float64 linspace of pixel centres, cast to float32 (or ``dtype``)."""
    xs = np.tile(np.linspace(-1 + 1 / width, 1 - 1 / width, width)[None], (height, 1))
    ys = np.tile(np.linspace(-1 + 1 / height, 1 - 1 / height, height)[:, None], (1, width))
    return torch.from_numpy(np.stack([xs, ys]).astype(dtype))


# ----------------------------------------------------------------------- official key tables
def _conv(shapes, prefix, out, inp, k, bias=True):
    shapes[f"{prefix}.weight"] = (out, inp, k, k)
    if bias:
        shapes[f"{prefix}.bias"] = (out,)


def _rg(shapes, prefix, channels, nb):
    for i in range(nb):
        _conv(shapes, f"{prefix}.rg.{i}.res.0", channels, channels, 3)
        _conv(shapes, f"{prefix}.rg.{i}.res.2", channels, channels, 3)
        _conv(shapes, f"{prefix}.rg.{i}.ca.conv_du.0", channels // 16, channels, 1)
        _conv(shapes, f"{prefix}.rg.{i}.ca.conv_du.2", channels, channels // 16, 1)
    _conv(shapes, f"{prefix}.rg.{nb}", channels, channels, 3)


HAAR_KEYS = ("down1.3.weight", "down2.2.weight", "down3.2.weight", "up3.0.weight", "up2.0.weight", "up1.0.weight")


def official_liteispnet_shapes(nb=4):
    s = {}
    _conv(s, "head", 64, 4, 3)
    _conv(s, "down1.0", 66, 66, 3)
    _rg(s, "down1.1", 66, nb)
    _conv(s, "down1.2", 64, 66, 3)
    s["down1.3.weight"] = (256, 1, 2, 2)
    _conv(s, "down2.0", 64, 256, 3)
    _rg(s, "down2.1", 64, nb)
    s["down2.2.weight"] = (256, 1, 2, 2)
    _conv(s, "down3.0", 128, 256, 3)
    _rg(s, "down3.1", 128, nb)
    s["down3.2.weight"] = (512, 1, 2, 2)
    _conv(s, "middle.0", 128, 512, 3)
    _rg(s, "middle.1", 128, nb)
    _rg(s, "middle.2", 128, nb)
    _conv(s, "middle.3", 512, 128, 3)
    s["up3.0.weight"] = (512, 1, 2, 2)
    _rg(s, "up3.1", 128, nb)
    _conv(s, "up3.2", 256, 128, 3)
    s["up2.0.weight"] = (256, 1, 2, 2)
    _rg(s, "up2.1", 64, nb)
    _conv(s, "up2.2", 256, 64, 3)
    s["up1.0.weight"] = (256, 1, 2, 2)
    _rg(s, "up1.1", 64, nb)
    _conv(s, "up1.2", 64, 64, 3)
    _conv(s, "tail.0", 256, 64, 3)
    _conv(s, "tail.2", 3, 64, 3)
    return s


def official_gcm_shapes():
    s = {}
    _conv(s, "guide_net.0.0", 32, 8, 7)
    _conv(s, "guide_net.1.0", 32, 32, 3)
    _conv(s, "guide_net.1.2", 32, 32, 3)
    _conv(s, "guide_net.3", 64, 32, 1)
    _conv(s, "align_head.0", 64, 5, 1)
    for j in (0, 2, 4):
        _conv(s, f"align_base.{j}", 64, 64, 1)
    _conv(s, "align_tail", 3, 64, 1)
    return s


def official_srresnet_shapes(scale):
    s = {}
    _conv(s, "input_stage.0", 64, 4, 9)
    s["input_stage.1.weight"] = (64,)
    for i in range(1, 17):
        _conv(s, f"resblock_{i}.conv_1", 64, 64, 4, bias=False)
        s[f"resblock_{i}.BatchNorm.weight"] = s[f"resblock_{i}.BatchNorm.bias"] = (64,)
        s[f"resblock_{i}.Prelu.weight"] = (64,)
        _conv(s, f"resblock_{i}.conv_2", 64, 64, 3, bias=False)
        s[f"resblock_{i}.BatchNorm_1.weight"] = s[f"resblock_{i}.BatchNorm_1.bias"] = (64,)
    _conv(s, "resblock_output.0", 64, 64, 3, bias=False)
    s["resblock_output.1.weight"] = s["resblock_output.1.bias"] = (64,)
    for k in range(1, {1: 1, 2: 2, 4: 3}[scale] + 1):
        _conv(s, f"deconv_stage{k}.0", 256, 64 if k == 1 else 256, 3)
        _conv(s, f"deconv_stage{k}.1", 256, 256, 3)  # ConvTranspose2d weight (in, out, k, k)
        s[f"deconv_stage{k}.2.weight"] = (256,)
    _conv(s, "deconv_output_stage", 3, 256, 9)
    return s


def random_state(shapes, seed=0, dtype=torch.float32):
    """Random official weights (std 0.5/√fan-in for weights, 0.1 for vectors, so deep stacks stay finite) with
    the Haar filters where they belong."""
    generator = torch.Generator().manual_seed(seed)
    scale = {key: 0.5 / np.prod(shape[1:]) ** 0.5 if len(shape) > 1 else 0.1 for key, shape in shapes.items()}
    state = {key: scale[key] * torch.randn(shape, generator=generator, dtype=dtype) for key, shape in shapes.items()}
    for key in HAAR_KEYS:
        if key in state:
            state[key] = OFFICIAL_HAAR.to(dtype).repeat(shapes[key][0] // 4, 1, 1, 1)
    return state


def numel(shapes):
    return sum(int(np.prod(shape)) for shape in shapes.values())


# ------------------------------------------------------------------------------ parameter counts
@pytest.mark.parametrize(("nb", "official_total"), [(2, 6_064_107), (4, 9_047_815), (8, 15_015_231), (20, 32_917_479)])
def test_liteispnet_counts_are_the_official_ones_minus_the_haar_filters(nb, official_total):
    assert numel(official_liteispnet_shapes(nb)) == official_total  # the reference's count of the official net
    assert trainable(on_meta(lambda: LiteISPNet(num_blocks=nb))) == official_total - 8_192


def test_liteispnet_released_configuration_has_9_039_623_trainable_parameters():
    net = on_meta(LiteISPNet)
    assert trainable(net) == sum(p.numel() for p in net.parameters()) == 9_039_623
    per_stage = {name: trainable(module) for name, module in net.named_children()}
    # reference §1.2 per stage incl. the frozen Haar filters: 1,024 per 64-channel, 2,048 per 128-channel DWT/IWT
    assert per_stage == {
        "head": 2_368, "down1": 434_196 - 1_024, "down2": 483_216 - 1_024, "down3": 1_634_080 - 2_048,
        "middle": 3_854_272, "up3": 1_634_208 - 2_048, "up2": 483_408 - 1_024, "up1": 372_624 - 1_024,
        "tail": 149_443,
    }  # fmt: skip
    assert trainable(ResidualGroup(66, 4)) == 355_822 and trainable(ResidualGroup(128, 4)) == 1_336_992


def test_liteispnet_without_coordinates_is_the_papers_table_b():
    """Table B: head conv → RG(64) → DWT; the release adds τ, a 66→66 conv before the RG, 66→64 after it."""
    net = LiteISPNet(coord=False)
    with_coord, without = trainable(on_meta(LiteISPNet)), trainable(net)
    conv = lambda i, o: i * o * 9 + o  # noqa: E731
    assert with_coord - without == conv(66, 66) + (355_822 - 334_672) + conv(66, 64)
    assert without == 8_941_123
    assert [type(m).__name__ for m in net.down1] == ["ResidualGroup", "DWT"]
    assert net(torch.rand(1, 4, 8, 8)).shape == (1, 3, 16, 16)


def test_gcm_counts():
    gcm = GlobalColorMapping()
    parts = {name: trainable(module) for name, module in gcm.named_children()}
    assert parts == {"guide_net": 33_184, "align_head": 384, "align_base": 12_480, "align_tail": 195}
    assert trainable(gcm) == numel(official_gcm_shapes()) == 46_243
    assert trainable(GlobalColorMapping(coord=False)) == 42_979


def test_patchgan_count_and_layers():
    d = PatchGANDiscriminator()
    assert trainable(d) == 2_765_633
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0], c.bias is not None) for c in convs] == [
        (3, 64, 2, True), (64, 128, 2, False), (128, 256, 2, False), (256, 512, 1, False), (512, 1, 1, True)
    ]  # fmt: skip
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules()) == 3
    assert isinstance(d.model[-1], torch.nn.Conv2d)  # logits: no BN or activation after the last conv


@pytest.mark.parametrize(("scale", "expected"), [(1, 2_501_635), (2, 3_682_051), (4, 4_862_467)])
def test_srresnet_backbone_counts(scale, expected):
    net = ZoomLearnNet(zoom=scale, **RAW_TO_SRGB_BACKBONE)
    assert trainable(net) == numel(official_srresnet_shapes(scale)) == expected


@pytest.mark.parametrize(("zoom", "expected"), [(2, 3_679_939), (4, 4_860_355), (8, 6_040_771)])
def test_zoom_learn_net_defaults_are_unchanged(zoom, expected):
    net = ZoomLearnNet(zoom=zoom)
    assert trainable(net) == expected
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules())
    prelus = [m.weight for m in net.modules() if isinstance(m, torch.nn.PReLU)]
    assert all(torch.equal(w, torch.zeros_like(w)) for w in prelus)


# ---------------------------------------------------------------------------------------- shapes
def test_official_sizes_on_the_meta_device():
    with torch.device("meta"):
        assert LiteISPNet()(torch.rand(1, 4, 224, 224)).shape == (1, 3, 448, 448)
        gcm = GlobalColorMapping()
        image = torch.rand(1, 3, 448, 448)
        assert gcm.guide_net[0](torch.rand(1, 8, 448, 448)).shape == (1, 32, 221, 221)
        assert gcm.guidance(image, image).shape == (1, 64, 1, 1)
        assert gcm(image, image).shape == (1, 3, 448, 448)
        assert PatchGANDiscriminator()(image).shape == (1, 1, 54, 54)
        assert ZoomLearnNet(zoom=4, **RAW_TO_SRGB_BACKBONE)(torch.rand(1, 4, 64, 64)).shape == (1, 3, 512, 512)


def test_liteispnet_forward_on_a_small_packed_raw():
    torch.manual_seed(0)
    net = LiteISPNet().eval()
    with torch.no_grad():
        out = net(torch.rand(1, 4, 32, 32))
    assert out.shape == (1, 3, 64, 64) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out.std() > 0


def test_patchgan_and_srresnet_small_forwards():
    assert PatchGANDiscriminator()(torch.rand(2, 3, 64, 64)).shape == (2, 1, 6, 6)
    x = torch.rand(1, 4, 3, 5)
    for scale in (1, 2, 4):
        assert ZoomLearnNet(zoom=scale, **RAW_TO_SRGB_BACKBONE)(x).shape == (1, 3, 6 * scale, 10 * scale)


def test_input_guards():
    with pytest.raises(ValueError, match="divisible by 8"):
        LiteISPNet(num_blocks=1)(torch.rand(1, 4, 12, 16))
    with pytest.raises(ValueError, match=r"packed raw \(B, 4, h, w\)"):
        LiteISPNet(num_blocks=1)(torch.rand(1, 3, 16, 16))
    gcm = GlobalColorMapping()
    with pytest.raises(ValueError, match="must have the shape of raw_rgb"):
        gcm(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="at least 7×7"):
        gcm(torch.rand(1, 3, 6, 6), torch.rand(1, 3, 6, 6))
    with pytest.raises(ValueError, match="expected coord"):
        gcm(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), torch.rand(3, 2, 8, 8))
    with pytest.raises(ValueError, match="coord=False"):
        GlobalColorMapping(coord=False)(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 8))


# ------------------------------------------------------------------------------ LiteISPNet details
def test_haar_filters_are_buffers_not_parameters():
    net = LiteISPNet(num_blocks=1)
    buffers = dict(net.named_buffers())
    assert sorted(buffers) == sorted(key.replace(".weight", ".filters") for key in HAAR_KEYS)
    assert all(torch.equal(b, OFFICIAL_HAAR) for b in buffers.values())
    assert not any("filters" in name for name, _ in net.named_parameters())
    assert all(p.requires_grad for p in net.parameters())
    assert not set(net.state_dict()) & set(HAAR_KEYS) and not any("filters" in k for k in net.state_dict())


def test_liteispnet_forward_is_the_official_forward():
    """Gamma, coordinate channels after the head, official DWT/IWT as convolutions, additive skips."""
    torch.manual_seed(1)
    net = LiteISPNet(num_blocks=1).eval()
    raw = torch.rand(2, 4, 8, 16)

    def dwt(t):
        return F.conv2d(t, OFFICIAL_HAAR.repeat(t.shape[1], 1, 1, 1), stride=2, groups=t.shape[1])

    def iwt(t):
        c = t.shape[1] // 4
        return F.conv_transpose2d(t, OFFICIAL_HAAR.repeat(c, 1, 1, 1), stride=2, groups=c)

    with torch.no_grad():
        h = net.head(raw.pow(1 / 2.2))
        hc = torch.cat((h, official_coord(8, 16).expand(2, -1, -1, -1)), dim=1)
        d1 = dwt(net.down1[2](net.down1[1](net.down1[0](hc))))
        d2 = dwt(net.down2[1](net.down2[0](d1)))
        d3 = dwt(net.down3[1](net.down3[0](d2)))
        m = net.middle(d3) + d3
        u3 = net.up3[2](net.up3[1](iwt(m))) + d2
        u2 = net.up2[2](net.up2[1](iwt(u3))) + d1
        u1 = net.up1[2](net.up1[1](iwt(u2))) + h
        expected = net.tail(u1)
        torch.testing.assert_close(net(raw), expected, rtol=1e-6, atol=1e-6)
        x = torch.randn(1, 8, 6, 6)
        torch.testing.assert_close(net.down2[2](x), dwt(x), rtol=0, atol=0)
        torch.testing.assert_close(net.up2[0](dwt(x)), x, rtol=0, atol=1e-6)


def test_residual_group_formula():
    """RG(x) = x + conv(RCAB(…RCAB(x))), RCAB(x) = x + r·σ(W₂ReLU(W₁ mean(r))), r = conv(ReLU(conv(x)))."""
    torch.manual_seed(2)
    group = ResidualGroup(32, 2).double()
    x = torch.randn(2, 32, 5, 7, dtype=torch.float64)
    y = x
    for block in group.rg[:2]:
        conv1, _, conv2 = block.res
        r = conv2(F.relu(conv1(y)))
        squeeze, _, excite, _ = block.ca.conv_du
        y = y + r * torch.sigmoid(excite(F.relu(squeeze(r.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(group(x), x + group.rg[2](y))
    assert block.ca.conv_du[0].out_channels == 2  # reduction 16


def test_coordinate_map_matches_get_coord():
    tau = coordinate_map(448, 448)
    assert torch.equal(tau, official_coord(448, 448))
    assert tau[0, 0, 0].item() == pytest.approx(-0.997768, abs=1e-6)
    assert tau[0, 0, -1].item() == pytest.approx(0.997768, abs=1e-6)
    small = coordinate_map(3, 5)
    assert torch.equal(small[0], small[0, :1].expand(3, 5)) and torch.equal(small[1], small[1, :, :1].expand(3, 5))
    torch.testing.assert_close(small[0, 0], torch.tensor([-0.8, -0.4, 0.0, 0.4, 0.8]))


# -------------------------------------------------------------------------------------- GCM details
def _gcm_inputs(seed=3, size=(12, 14)):
    generator = torch.Generator().manual_seed(seed)
    raw = torch.rand(2, 3, *size, generator=generator) + 0.05
    return raw, torch.rand(2, 3, *size, generator=generator)


def test_gcm_mapping_is_strictly_per_pixel_given_the_guidance():
    torch.manual_seed(3)
    gcm = GlobalColorMapping()
    raw, target = _gcm_inputs()
    with torch.no_grad():
        g = gcm.guidance(raw, target)
        before = gcm.spn(raw, g)
        perturbed = raw.clone()
        perturbed[1, :, 5, 7] += 0.3
        changed = (gcm.spn(perturbed, g) != before).any(dim=1)
    expected = torch.zeros_like(changed)
    expected[1, 5, 7] = True
    assert torch.equal(changed, expected)


def test_gcm_raw_pixel_reaches_other_pixels_only_through_the_guidance_vector():
    """The official GuideNet also sees the raw: one raw pixel moves g, and through g every pixel, nothing else."""
    torch.manual_seed(4)
    gcm = GlobalColorMapping()
    raw, target = _gcm_inputs()
    perturbed = raw.clone()
    perturbed[0, :, 2, 3] += 0.5
    with torch.no_grad():
        out = gcm(perturbed, target)
        via_g = gcm.spn(raw, gcm.guidance(perturbed, target))
        unchanged_g = gcm(raw, target)
    keep = torch.ones(raw.shape[-2:], dtype=torch.bool)
    keep[2, 3] = False
    torch.testing.assert_close(out[0][:, keep], via_g[0][:, keep], rtol=0, atol=0)
    assert not torch.equal(out[0][:, keep], unchanged_g[0][:, keep])  # g moved
    torch.testing.assert_close(out[1], unchanged_g[1], rtol=0, atol=0)  # other images are untouched


def test_gcm_is_the_official_forward():
    raw, target = _gcm_inputs(seed=5)
    raw, target = raw.double(), target.double()
    state = random_state(official_gcm_shapes(), seed=5, dtype=torch.float64)
    gcm = GlobalColorMapping().double()
    gcm.load_state_dict(gcm_state_from_official(state))
    w = lambda key: state[f"{key}.weight"]  # noqa: E731
    b = lambda key: state[f"{key}.bias"]  # noqa: E731
    coord = official_coord(12, 14, np.float64).expand(2, -1, -1, -1)
    xg = raw.pow(1 / 2.2)
    g = F.relu(F.conv2d(torch.cat((xg, target, coord), 1), w("guide_net.0.0"), b("guide_net.0.0"), stride=2))
    g = F.relu(F.conv2d(g, w("guide_net.1.0"), b("guide_net.1.0"), padding=1))
    g = F.conv2d(g, w("guide_net.1.2"), b("guide_net.1.2"), padding=1)
    g = F.conv2d(g.mean((2, 3), keepdim=True), w("guide_net.3"), b("guide_net.3"))
    f = F.relu(F.conv2d(torch.cat((xg, coord), 1), w("align_head.0"), b("align_head.0")))
    f = g * f + f
    for j in (0, 2, 4):
        f = F.relu(F.conv2d(f, w(f"align_base.{j}"), b(f"align_base.{j}")))
    expected = F.conv2d(f, w("align_tail"), b("align_tail")) + xg
    with torch.no_grad():
        torch.testing.assert_close(gcm(raw, target), expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gcm(raw, target, coordinate_map(12, 14, torch.float64)[None]), expected)


def test_gcm_residual_is_the_gamma_encoded_demosaic():
    gcm = GlobalColorMapping(coord=False)
    torch.nn.init.zeros_(gcm.align_tail.weight)
    torch.nn.init.zeros_(gcm.align_tail.bias)
    raw, target = _gcm_inputs(seed=6)
    torch.testing.assert_close(gcm(raw, target), raw ** (1 / 2.2))


# --------------------------------------------------------------------------- SRResNet backbone options
def test_srresnet_backbone_options():
    net = ZoomLearnNet(zoom=2, **RAW_TO_SRGB_BACKBONE)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(norms) == 33 and all(m.affine and m.eps == 1e-5 and not m.track_running_stats for m in norms)
    prelus = [m for m in net.modules() if isinstance(m, torch.nn.PReLU)]
    assert prelus and all(torch.equal(m.weight, torch.full_like(m.weight, 0.25)) for m in prelus)
    deconvs = [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(deconvs) == 2 and all(m.padding == (1, 1) and m.output_padding == (1, 1) for m in deconvs)


def test_torch_deconv_padding_keeps_indices_1_to_2h():
    x = torch.rand(1, 2, 3, 4)
    tf, torch_style = make_deconv(2, "tf"), make_deconv(2, "torch")
    torch_style.load_state_dict(tf.state_dict())
    full = F.conv_transpose2d(x, tf.weight, tf.bias, stride=2)  # 7 × 9
    torch.testing.assert_close(tf(x), full[..., :6, :8])
    torch.testing.assert_close(torch_style(x), full[..., 1:7, 1:9])


def test_zoom_learn_net_rejects_bad_new_options():
    with pytest.raises(ValueError, match="deconv_padding"):
        ZoomLearnNet(zoom=2, deconv_padding="same")
    with pytest.raises(ValueError, match="init must be"):
        ZoomLearnNet(zoom=2, init="xavier")


def official_srresnet_forward(state, x, stages):
    """The official ``SRResNet.forward`` (``srrawjoint_model.py``) written with functional ops."""

    def norm(t, prefix):
        return F.instance_norm(t, weight=state[f"{prefix}.weight"], bias=state[f"{prefix}.bias"], eps=1e-5)

    head = F.conv2d(x, state["input_stage.0.weight"], state["input_stage.0.bias"], padding=4)
    head = F.prelu(head, state["input_stage.1.weight"])
    y = head
    for i in range(1, 17):
        p = f"resblock_{i}"
        r = norm(F.conv2d(F.pad(y, (1, 2, 1, 2)), state[f"{p}.conv_1.weight"]), f"{p}.BatchNorm")
        r = F.prelu(r, state[f"{p}.Prelu.weight"])
        y = y + norm(F.conv2d(r, state[f"{p}.conv_2.weight"], padding=1), f"{p}.BatchNorm_1")
    y = norm(F.conv2d(y, state["resblock_output.0.weight"], padding=1), "resblock_output.1") + head
    for k in range(1, stages + 1):
        p = f"deconv_stage{k}"
        y = F.conv2d(y, state[f"{p}.0.weight"], state[f"{p}.0.bias"], padding=1)
        y = F.conv_transpose2d(y, state[f"{p}.1.weight"], state[f"{p}.1.bias"], stride=2, padding=1, output_padding=1)
        y = F.prelu(y, state[f"{p}.2.weight"])
    return F.conv2d(y, state["deconv_output_stage.weight"], state["deconv_output_stage.bias"], padding=4)


@pytest.mark.parametrize(("scale", "stages"), [(1, 1), (2, 2)])
def test_converted_srresnet_computes_the_official_forward(scale, stages):
    state = random_state(official_srresnet_shapes(scale), seed=7)
    net = ZoomLearnNet(zoom=scale, **RAW_TO_SRGB_BACKBONE)
    net.load_state_dict(srresnet_state_from_official(state), strict=True)
    x = torch.rand(1, 4, 3, 4, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.testing.assert_close(net(x), official_srresnet_forward(state, x, stages))


# ------------------------------------------------------------------------------------- converters
def _shapes(state):
    return {key: tuple(value.shape) for key, value in state.items()}


def test_liteispnet_converter_key_layout_and_round_trip():
    net = LiteISPNet(num_blocks=2)
    official = liteispnet_state_to_official(net.state_dict(), num_blocks=2)
    assert _shapes(official) == official_liteispnet_shapes(2)
    for key in HAAR_KEYS:
        assert torch.equal(official[key], OFFICIAL_HAAR.repeat(official[key].shape[0] // 4, 1, 1, 1))
    state = random_state(official_liteispnet_shapes(2), seed=8)
    ours = liteispnet_state_from_official(state, num_blocks=2)
    LiteISPNet(num_blocks=2).load_state_dict(ours, strict=True)
    back = liteispnet_state_to_official(ours, num_blocks=2)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    rggb = liteispnet_state_from_official(state, num_blocks=2, packing="rggb")
    assert torch.equal(rggb["head.weight"], state["head.weight"][:, [2, 1, 0, 3]])
    back = liteispnet_state_to_official(rggb, num_blocks=2, packing="rggb")
    assert torch.equal(back["head.weight"], state["head.weight"])


def test_liteispnet_converter_is_strict():
    state = random_state(official_liteispnet_shapes(1), seed=9)
    missing = {k: v for k, v in state.items() if k != "down3.1.rg.0.ca.conv_du.2.bias"}
    with pytest.raises(OfficialCheckpointError, match=r"missing keys \['down3.1.rg.0.ca.conv_du.2.bias'\]"):
        liteispnet_state_from_official(missing, num_blocks=1)
    with pytest.raises(OfficialCheckpointError, match=r"unexpected keys \['pre_coord.fc.0.weight'\]"):
        liteispnet_state_from_official({**state, "pre_coord.fc.0.weight": torch.zeros(256, 10816)}, num_blocks=1)
    with pytest.raises(OfficialCheckpointError, match="missing keys .*down1.1.rg.1.res.0.weight"):
        liteispnet_state_from_official(state, num_blocks=2)  # a checkpoint with fewer RCABs
    bad_haar = {**state, "up1.0.weight": -state["up1.0.weight"]}
    with pytest.raises(OfficialCheckpointError, match="unexpected constant values: up1.0.weight"):
        liteispnet_state_from_official(bad_haar, num_blocks=1)
    wrong = {**state, "tail.2.weight": torch.zeros(3, 64, 1, 1)}
    with pytest.raises(OfficialCheckpointError, match=r"wrong shapes: tail.2.weight: expected \(3, 64, 3, 3\)"):
        liteispnet_state_from_official(wrong, num_blocks=1)
    with pytest.raises(OfficialCheckpointError, match=r"our LiteISPNet .*missing keys \['head.bias'\]"):
        ours = LiteISPNet(num_blocks=1).state_dict()
        liteispnet_state_to_official({k: v for k, v in ours.items() if k != "head.bias"}, num_blocks=1)
    with pytest.raises(ValueError, match="packing"):
        liteispnet_state_from_official(state, num_blocks=1, packing="bggr")


def test_rggb_packing_option_gives_the_same_image_from_the_project_packing():
    """Official weights see (B, G1, R, G2); converted with packing='rggb' they give the same output from
    :func:`ops.bayer.pack_bayer`'s (R, G1, B, G2)."""
    state = random_state(official_liteispnet_shapes(1), seed=10)
    official_order, rggb_order = LiteISPNet(num_blocks=1).eval(), LiteISPNet(num_blocks=1).eval()
    official_order.load_state_dict(liteispnet_state_from_official(state, num_blocks=1))
    rggb_order.load_state_dict(liteispnet_state_from_official(state, num_blocks=1, packing="rggb"))
    mosaic = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(10))
    blue, green_red_rows, red, green_blue_rows = (mosaic[:, i::2, j::2] for i, j in ((1, 1), (0, 1), (0, 0), (1, 0)))
    official_packed = torch.stack((blue, green_red_rows, red, green_blue_rows), dim=1)
    with torch.no_grad():
        expected = official_order(official_packed)
        torch.testing.assert_close(rggb_order(pack_bayer(mosaic)), expected, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(official_order(pack_bayer(mosaic)), expected, rtol=1e-4, atol=1e-5)


def test_gcm_converter_round_trip_and_strictness():
    official = gcm_state_to_official(GlobalColorMapping().state_dict())
    assert _shapes(official) == official_gcm_shapes()
    state = random_state(official_gcm_shapes(), seed=11)
    back = gcm_state_to_official(gcm_state_from_official(state))
    assert all(torch.equal(back[k], state[k]) for k in state) and back.keys() == state.keys()
    shapes = r"wrong shapes: guide_net.0.0.weight: expected \(32, 6, 7, 7\), got \(32, 8, 7, 7\); align_head.0.weight"
    with pytest.raises(OfficialCheckpointError, match=shapes):
        gcm_state_from_official(state, coord=False)  # a coordinate checkpoint into the coordinate-free GCM
    with pytest.raises(OfficialCheckpointError, match=r"missing keys \['align_tail.bias'\]"):
        gcm_state_from_official({k: v for k, v in state.items() if k != "align_tail.bias"})


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_srresnet_converter_key_layout_and_round_trip(scale):
    official = srresnet_state_to_official(ZoomLearnNet(zoom=scale, **RAW_TO_SRGB_BACKBONE).state_dict())
    assert _shapes(official) == official_srresnet_shapes(scale)
    state = random_state(official_srresnet_shapes(scale), seed=12)
    ours = srresnet_state_from_official(state)  # scale read from the keys
    ZoomLearnNet(zoom=scale, **RAW_TO_SRGB_BACKBONE).load_state_dict(ours, strict=True)
    back = srresnet_state_to_official(ours, scale=scale)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_srresnet_converter_is_strict():
    x1 = random_state(official_srresnet_shapes(1), seed=13)
    with pytest.raises(OfficialCheckpointError, match=r"missing keys \['deconv_stage2.0.bias', 'deconv_stage2.0.weig"):
        srresnet_state_from_official(x1, scale=2)  # the ×1 curriculum stage is not a ×2 network
    with pytest.raises(OfficialCheckpointError, match="0 upsampling stages"):
        srresnet_state_from_official({k: v for k, v in x1.items() if not k.startswith("deconv_stage")})
    with pytest.raises(OfficialCheckpointError, match=r"unexpected keys \['resblock_17.conv_1.weight'\]"):
        srresnet_state_from_official({**x1, "resblock_17.conv_1.weight": torch.zeros(64, 64, 4, 4)})
    with pytest.raises(OfficialCheckpointError, match="scale 1, 2 or 4"):
        srresnet_state_from_official(x1, scale=8)


def test_load_official_raw_to_srgb(tmp_path):
    lite, gcm = random_state(official_liteispnet_shapes(1), seed=14), random_state(official_gcm_shapes(), seed=15)
    torch.save({"state_dict": lite}, tmp_path / "LiteISPNet_model_1.pth")
    torch.save({"state_dict": gcm}, tmp_path / "GCMModel_model_1.pth")
    module = SimpleNamespace(net=LiteISPNet(num_blocks=1), gcm=GlobalColorMapping())
    load_official_raw_to_srgb(module, tmp_path / "LiteISPNet_model_1.pth", tmp_path / "GCMModel_model_1.pth")
    assert all(torch.equal(module.net.state_dict()[k], lite[k]) for k in module.net.state_dict())
    assert all(torch.equal(module.gcm.state_dict()[k], gcm[k]) for k in gcm)
    load_official_raw_to_srgb(module, net=tmp_path / "LiteISPNet_model_1.pth", packing="rggb")
    assert torch.equal(module.net.head.weight, lite["head.weight"][:, [2, 1, 0, 3]])

    srresnet = random_state(official_srresnet_shapes(1), seed=16)
    torch.save({"state_dict": srresnet}, tmp_path / "SRResNet_model_1.pth")
    backbone = SimpleNamespace(net=ZoomLearnNet(zoom=1, **RAW_TO_SRGB_BACKBONE))
    load_official_raw_to_srgb(backbone, net=tmp_path / "SRResNet_model_1.pth")
    assert torch.equal(backbone.net.trunk[3].body[1].weight, srresnet["resblock_4.BatchNorm.weight"])
    assert torch.equal(backbone.net.upsample[1].weight, srresnet["deconv_stage1.1.weight"])


def test_load_official_raw_to_srgb_errors(tmp_path):
    path = tmp_path / "LiteISPNet_model_1.pth"
    torch.save({"state_dict": random_state(official_liteispnet_shapes(1), seed=17)}, path)
    with pytest.raises(FileNotFoundError, match="GCMModel_model_9.pth"):
        load_official_raw_to_srgb(SimpleNamespace(gcm=GlobalColorMapping()), gcm=tmp_path / "GCMModel_model_9.pth")
    with pytest.raises(OfficialCheckpointError, match=f"{path}: .*missing keys"):
        load_official_raw_to_srgb(SimpleNamespace(net=LiteISPNet(num_blocks=2)), net=path)
    with pytest.raises(AttributeError, match="no network 'gcm'"):
        load_official_raw_to_srgb(SimpleNamespace(net=LiteISPNet(num_blocks=1)), gcm=path)
    with pytest.raises(TypeError, match="expected LiteISPNet or ZoomLearnNet"):
        load_official_raw_to_srgb(SimpleNamespace(net=PatchGANDiscriminator()), net=path)
    srresnet = tmp_path / "SRResNet_model_1.pth"
    torch.save({"state_dict": random_state(official_srresnet_shapes(1), seed=18)}, srresnet)
    with pytest.raises(OfficialCheckpointError, match="not built in the official layout"):
        load_official_raw_to_srgb(SimpleNamespace(net=ZoomLearnNet(zoom=1)), net=srresnet)  # TF-style defaults
