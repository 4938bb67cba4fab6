"""SelfDZSR networks: parameter counts, shapes, the paste, offset dropout, test-time collapse, tiling locality."""

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.networks import AuxLRGenerator, DZSRFeatureExtractor, SelfDZSRNet
from lightning_modules.networks.selfdzsr_net import DIV2K_RGB_MEAN, MeanShift


def trainable(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def small_net(scale: int = 4, **kwargs) -> SelfDZSRNet:
    """Few channels and blocks: the behaviour under test does not depend on the width or depth."""
    return SelfDZSRNet(scale=scale, channels=16, num_blocks=2, **kwargs)


def crop(images: torch.Tensor, box: torch.Tensor, factor: int = 1) -> torch.Tensor:
    """Per-sample crop of (top, left, height, width) boxes given in LR pixels, scaled by ``factor``."""
    return torch.stack(
        [image[:, t * factor : (t + h) * factor, l * factor : (l + w) * factor] for image, (t, l, h, w) in
         zip(images, box.tolist())]
    )


def inputs(scale=4, batch=2, size=(16, 16), ref_size=None, paste=None, seed=0, feature_channels=8):
    """Synthetic encode/forward inputs: LR, guide, random features, Ref, a random footprint box and its LR crop."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    h_r, w_r = ref_size or size
    lr = torch.rand(batch, 3, h, w, generator=g)
    guide = (lr + 0.05 * torch.randn(lr.shape, generator=g)).clamp(0, 1)
    ref = torch.rand(batch, 3, h_r, w_r, generator=g)
    box_h, box_w = h_r // scale, w_r // scale
    top = torch.randint(0, h - box_h + 1, (batch,), generator=g)
    left = torch.randint(0, w - box_w + 1, (batch,), generator=g)
    box = torch.stack([top, left, torch.full_like(top, box_h), torch.full_like(top, box_w)], dim=1)
    return dict(
        lr=lr,
        guide=guide,
        guide_features=torch.randn(batch, feature_channels, h // 4, w // 4, generator=g),
        ref=ref,
        ref_features=torch.randn(batch, feature_channels, h_r // 4, w_r // 4, generator=g),
        ref_box=box,
        paste=torch.ones(batch, dtype=torch.bool) if paste is None else paste,
        lr_box=crop(lr, box),
    )


# ------------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize(
    ("scale", "expected", "test_time"), [(4, 2_054_235, 2_017_929), (2, 1_885_787, 1_849_481)]
)
def test_selfdzsr_net_parameter_counts(scale, expected, test_time):
    net = SelfDZSRNet(scale=scale)
    assert trainable(net) == expected == net.parameter_count()
    assert all(p.requires_grad for p in net.parameters())  # MeanShift constants are buffers, not parameters
    assert net.parameter_count(test_time=True) == test_time == expected - 36_306
    # Official convention (reference §2.1), which also counts the 5 MeanShift layers' 30 frozen parameters.
    assert net.parameter_count(official=True) == expected + 30
    assert net.parameter_count(test_time=True, official=True) == {4: 2_017_959, 2: 1_849_511}[scale]


@pytest.mark.parametrize(("scale", "expected"), [(4, 630_915), (2, 515_715)])
def test_aux_lr_generator_parameter_count(scale, expected):
    net = AuxLRGenerator(scale=scale)
    assert trainable(net) == expected == sum(p.numel() for p in net.parameters())


def test_feature_extractor_parameter_count_and_frozen_state():
    extractor = DZSRFeatureExtractor()
    assert sum(p.numel() for p in extractor.parameters()) == 1_110_656
    assert sum(p.numel() for p in extractor.lr_branch.parameters()) == 555_328
    assert not any(p.requires_grad for p in extractor.parameters())
    extractor.train()
    assert not extractor.training and not any(m.training for m in extractor.modules())


def test_mean_shift_is_a_constant_buffer_outside_the_state_dict():
    shift = MeanShift(-1)
    assert list(shift.parameters()) == [] and shift.state_dict() == {}
    x = torch.rand(1, 3, 2, 2)
    torch.testing.assert_close(MeanShift(1)(shift(x)), x)
    torch.testing.assert_close(shift(torch.zeros(1, 3, 1, 1)).flatten(), -torch.tensor(DIV2K_RGB_MEAN))
    assert not any(key.endswith("shift") for key in SelfDZSRNet(scale=2, num_blocks=1).state_dict())


# ------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("scale", [4, 2])
def test_training_shapes_with_aux_lr_guide(scale):
    """LR 48², GT (48s)², Ref = the GT under a random (48/s)² LR box, guide = aux-LR: SR (48s)².

    The frozen extractor's features at ×4; random features of its shape at ×2 (the extractor does not depend on s).
    """
    torch.manual_seed(scale)
    batch = 2
    lr, gt = torch.rand(batch, 3, 48, 48), torch.rand(batch, 3, 48 * scale, 48 * scale)
    p = 48 // scale
    top, left = torch.randint(0, 48 - p + 1, (batch,)), torch.randint(0, 48 - p + 1, (batch,))
    box = torch.stack([top, left, torch.full_like(top, p), torch.full_like(top, p)], dim=1)
    ref, lr_ref = crop(gt, box, scale), crop(lr, box)
    assert ref.shape == (batch, 3, 48, 48) and lr_ref.shape == (batch, 3, p, p)
    aux = AuxLRGenerator(scale=scale, channels=16)(gt, lr).detach()
    assert aux.shape == lr.shape
    if scale == 4:
        extractor = DZSRFeatureExtractor()
        guide_features, ref_features = extractor(aux, "lr"), extractor(ref, "ref")
    else:
        guide_features, ref_features = torch.randn(batch, 256, 12, 12), torch.randn(batch, 256, 12, 12)
    assert guide_features.shape == ref_features.shape == (batch, 256, 12, 12)
    net = small_net(scale).train()
    paste = torch.tensor([True, False])
    fused, skip = net.encode(lr, aux, guide_features, ref, ref_features, box, paste, torch.Generator().manual_seed(0))
    assert fused.shape == skip.shape == (batch, 16, 48, 48)
    assert net.ref_head(ref).shape == (batch, 16, p, p)
    code = net.modulation(fused, lr_ref, ref)
    assert code.shape == (batch, 16, 1, 1)
    assert net.decode(fused, skip, code).shape == (batch, 3, 48 * scale, 48 * scale)


def test_eval_shapes_on_a_non_square_lr_with_a_centred_ref_box():
    net = small_net(4).eval()
    h, w = 40, 56
    data = inputs(4, batch=1, size=(h, w))
    box_h, box_w = h // 4, w // 4
    top, left = (h - box_h) // 2, (w - box_w) // 2
    data["ref_box"] = torch.tensor([[top, left, box_h, box_w]])
    data["lr_box"] = data["lr"][..., top : top + box_h, left : left + box_w]
    with torch.no_grad():
        sr = net(**data)
    assert sr.shape == (1, 3, 4 * h, 4 * w)
    assert torch.isfinite(sr).all()


def test_feature_extractor_matches_a_direct_vgg16_computation_and_output_size():
    extractor = DZSRFeatureExtractor()
    generator = torch.Generator().manual_seed(0)
    shapes = {0: (64, 3, 3, 3), 2: (64, 64, 3, 3), 5: (128, 64, 3, 3), 7: (128, 128, 3, 3), 10: (256, 128, 3, 3)}
    vgg = {}  # a torchvision-style VGG16 state dict (random values), plus a key the copy must ignore
    for index, shape in shapes.items():
        vgg[f"features.{index}.weight"] = 0.05 * torch.randn(shape, generator=generator)
        vgg[f"features.{index}.bias"] = 0.05 * torch.randn(shape[0], generator=generator)
    vgg["classifier.0.bias"] = torch.zeros(4096)
    extractor.load_torchvision_vgg16(vgg)
    image = torch.rand(1, 3, 18, 22, generator=generator)  # sizes not divisible by 4: floor
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (image - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    for index in (0, 2, 5, 7, 10):
        x = F.conv2d(x, vgg[f"features.{index}.weight"], vgg[f"features.{index}.bias"], padding=1)
        x = x if index == 10 else F.relu(x)
    expected = F.interpolate(x, size=(4, 5), mode="bilinear", align_corners=True)
    for branch in ("lr", "ref"):
        out = extractor(image, branch)
        assert out.shape == (1, 256, 4, 5)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="lacks"):
        extractor.load_torchvision_vgg16({"features.0.weight": vgg["features.0.weight"]})
    with pytest.raises(ValueError, match="branch"):
        extractor(image, "hr")


def test_aux_lr_generator_shapes_and_position_kernels():
    net = AuxLRGenerator(scale=2, channels=8)
    kernels = net.position_kernels()
    assert [tuple(k.shape) for k in kernels] == [(8, 8, 7, 7), (8, 8, 5, 5), (8, 8, 3, 3)]
    assert kernels[0] is net.conv_7x7[0].weight and kernels[2] is net.conv_3x3[0].weight
    first = net.guide_net[0][0]
    assert (first.kernel_size, first.stride, first.padding, first.in_channels) == ((7, 7), (2, 2), (0, 0), 15)
    aux = net(torch.rand(2, 3, 20, 28), torch.rand(2, 3, 10, 14))
    assert aux.shape == (2, 3, 10, 14)
    with pytest.raises(ValueError, match=r"expected hr of shape"):
        net(torch.rand(2, 3, 20, 20), torch.rand(2, 3, 10, 14))
    with pytest.raises(ValueError, match=r"h, w >= 7"):
        net(torch.rand(1, 3, 12, 12), torch.rand(1, 3, 6, 6))


# -------------------------------------------------------------------------------------- paste
def test_paste_overwrites_exactly_the_box_of_the_pasted_samples():
    """ref_ada's input = warped Ref features, with ref_head(ref) written over ref_box for pasted samples only."""
    net = small_net(4).eval()
    data = inputs(4, batch=3, size=(16, 16), paste=torch.tensor([True, False, True]))
    seen = {}
    net.deform_conv.register_forward_hook(lambda module, args, out: seen.__setitem__("warped", out))
    net.ref_ada.register_forward_pre_hook(lambda module, args: seen.__setitem__("ref_ada_in", args[0]))
    with torch.no_grad():
        net.encode(*(data[k] for k in ("lr", "guide", "guide_features", "ref", "ref_features", "ref_box", "paste")))
        pasted = net.ref_head(data["ref"])
    warped, got = seen["warped"], seen["ref_ada_in"]
    assert pasted.shape == (3, 16, 4, 4)
    for i, (top, left, h, w) in enumerate(data["ref_box"].tolist()):
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[top : top + h, left : left + w] = True
        if data["paste"][i]:
            torch.testing.assert_close(got[i][:, inside], pasted[i].flatten(1), rtol=0, atol=0)
            torch.testing.assert_close(got[i][:, ~inside], warped[i][:, ~inside], rtol=0, atol=0)
            assert not torch.allclose(warped[i][:, inside], pasted[i].flatten(1))
        else:
            torch.testing.assert_close(got[i], warped[i], rtol=0, atol=0)


def test_pasted_samples_do_not_depend_on_the_warped_ref_inside_the_box():
    net = small_net(4).eval()
    data = inputs(4, batch=2, size=(16, 16), paste=torch.tensor([True, False]))
    outputs = []
    for noise in (0.0, 5.0):
        def perturb(module, args, out, noise=noise):  # changes the warped Ref only inside every box
            out = out.clone()
            for i, (top, left, h, w) in enumerate(data["ref_box"].tolist()):
                out[i, :, top : top + h, left : left + w] += noise
            return out

        handle = net.deform_conv.register_forward_hook(perturb)
        with torch.no_grad():
            outputs.append(net(**data))
        handle.remove()
    torch.testing.assert_close(outputs[0][0], outputs[1][0], rtol=0, atol=0)  # pasted: box fully overwritten
    assert not torch.allclose(outputs[0][1], outputs[1][1])  # not pasted: the perturbation reaches the output


def test_smaller_ref_is_zero_padded_at_the_bottom_right():
    net = small_net(4).eval()
    data = inputs(4, batch=1, size=(32, 40), ref_size=(24, 28))
    seen = {}
    net.deform_conv.register_forward_pre_hook(lambda module, args: seen.__setitem__("ref_in", args[0]))
    with torch.no_grad():
        sr = net(**data)
        expected = net.ref_extractor(data["ref"])
    assert sr.shape == (1, 3, 128, 160)
    assert seen["ref_in"].shape == (1, 16, 32, 40)
    torch.testing.assert_close(seen["ref_in"][..., :24, :28], expected, rtol=0, atol=0)
    assert seen["ref_in"][..., 24:, :].abs().sum() == 0 and seen["ref_in"][..., :, 28:].abs().sum() == 0


# --------------------------------------------------------------------------- dropout and collapse
def test_offset_dropout_is_reproducible_with_a_seeded_generator():
    net = small_net(4, adastn_dropout=0.5).train()
    data = inputs(4, batch=4, size=(16, 16))
    run = lambda seed: net(**data, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    with torch.no_grad():
        first, again, other = run(1), run(1), run(2)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)  # another seed drops other samples (fixed seeds: deterministic)


def test_dropout_one_in_training_equals_the_collapsed_eval_network():
    """Dropped offsets (−G) make ada1–3 the depthwise 1×1 conv with the summed kernel: exactly the eval graph."""
    net = small_net(4, adastn_dropout=1.0)
    data = inputs(4, batch=2, size=(16, 16), paste=torch.tensor([True, False]))
    with torch.no_grad():
        trained = net.train()(**data, generator=torch.Generator().manual_seed(0))
        evaluated = net.eval()(**data)
    torch.testing.assert_close(trained, evaluated, rtol=1e-4, atol=1e-5)


def test_eval_mode_collapses_ada1_to_3_but_ref_ada_estimates_its_offsets(monkeypatch):
    net = small_net(4).eval()
    calls = []
    for name in ("ada1", "ada2", "ada3", "ref_ada"):
        block = getattr(net, name)
        original = block.offsets
        def counted(x, guide, name=name, original=original):
            calls.append(name)
            return original(x, guide)

        monkeypatch.setattr(block, "offsets", counted)
    with torch.no_grad():
        net(**inputs(4, batch=1, size=(16, 16)))
    assert calls == ["ref_ada"]
    calls.clear()
    with torch.no_grad():
        net.train()(**inputs(4, batch=1, size=(16, 16)), generator=torch.Generator().manual_seed(0))
    assert calls == ["ada1", "ada2", "ada3", "ref_ada"]


# ---------------------------------------------------------------------------- the three steps
def test_encode_modulation_decode_equals_forward():
    net = small_net(2).train()
    data = inputs(2, batch=2, size=(16, 16), paste=torch.tensor([False, True]))
    keys = ("lr", "guide", "guide_features", "ref", "ref_features", "ref_box", "paste")
    with torch.no_grad():
        fused, skip = net.encode(*(data[k] for k in keys), generator=torch.Generator().manual_seed(3))
        stepwise = net.decode(fused, skip, net.modulation(fused, data["lr_box"], data["ref"]))
        whole = net(**data, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(stepwise, whole, rtol=0, atol=0)


def test_decode_is_local_so_tiles_with_a_halo_match_the_whole_image():
    net = small_net(2).eval()
    torch.manual_seed(0)
    fused, skip, code = torch.randn(1, 16, 24, 24), torch.randn(1, 16, 24, 24), torch.randn(1, 16, 1, 1)
    with torch.no_grad():
        whole = net.decode(fused, skip, code)
        tile = net.decode(fused[..., 2:22, 2:22], skip[..., 2:22, 2:22], code)
    # Receptive radius: 5 convs at LR size + the upsampling conv + the tail (½ LR px) < 7 LR px; the tile's LR
    # rows / cols 8–11 are 8 px from its borders and are the whole image's rows / cols 10–13.
    torch.testing.assert_close(tile[..., 16:24, 16:24], whole[..., 20:28, 20:28], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(tile[..., :2, :2], whole[..., 4:6, 4:6], rtol=1e-5, atol=1e-5)  # borders do differ


def test_gradients_reach_the_trainable_parts():
    net = small_net(4, adastn_dropout=0.0).train()
    data = inputs(4, batch=1, size=(16, 16), paste=torch.tensor([True]))
    net(**data, generator=torch.Generator().manual_seed(0)).mean().backward()
    names = ("head.1.weight", "ada1.transform_matrix_conv.weight", "ref_head.2.weight", "deform_conv.weight",
             "ref_ada.translation_conv.weight", "predictor.head.0.0.weight", "block1.mlp.1.bias", "tail.0.weight")
    for name in names:
        grad = net.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------- guards
def test_rejects_bad_configurations_and_inputs():
    with pytest.raises(ValueError, match="×3 is not supported"):
        SelfDZSRNet(scale=3)
    with pytest.raises(ValueError, match="×3 is not supported"):
        AuxLRGenerator(scale=3)
    net = small_net(4).eval()
    good = inputs(4, batch=2, size=(16, 16))
    cases = {
        "multiples of 4": dict(lr=torch.rand(2, 3, 18, 16), guide=torch.rand(2, 3, 18, 16)),
        "guide of the LR's shape": dict(guide=torch.rand(2, 3, 16, 12)),
        "expected ref": dict(ref=torch.rand(2, 3, 20, 16)),
        "ref_features at 1/4": dict(ref_features=torch.rand(2, 8, 3, 4)),
        "paste as a bool": dict(paste=torch.ones(2)),
        "int64 tensor": dict(ref_box=good["ref_box"].int()),
        "size // scale, 4×4": dict(ref_box=torch.tensor([[0, 0, 4, 4], [13, 0, 4, 4]])),
    }
    for message, change in cases.items():
        with pytest.raises(ValueError, match=message):
            net(**{**good, **change})
