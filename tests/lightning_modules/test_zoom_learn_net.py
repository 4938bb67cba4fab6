"""ZoomLearnNet: parameter counts, shapes, TF-SAME padding details, normalisation options."""

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.networks import ZoomLearnNet
from lightning_modules.networks.zoom_learn_net import SamePadConv4x4, SameTransposedConv2x


def trainable(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize(("zoom", "expected"), [(2, 3_679_939), (4, 4_860_355), (8, 6_040_771)])
def test_parameter_counts_match_the_paper(zoom, expected):
    assert trainable(ZoomLearnNet(zoom=zoom)) == expected


def test_instance_norm_keeps_the_parameter_count():
    assert trainable(ZoomLearnNet(zoom=4, norm="instance")) == 4_860_355


@pytest.mark.parametrize(("zoom", "in_channels"), [(2, 4), (4, 4), (4, 12), (8, 4)])
def test_output_is_2n_times_the_packed_input(zoom, in_channels):
    net = ZoomLearnNet(zoom=zoom, in_channels=in_channels, num_blocks=2).eval()
    out = net(torch.rand(2, in_channels, 5, 7))
    assert out.shape == (2, 3, 5 * 2 * zoom, 7 * 2 * zoom)


def test_same_pad_4x4_pads_one_before_two_after():
    conv = SamePadConv4x4(1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the input at offset (−1, −1) of each output pixel
    x = torch.arange(1.0, 26.0).reshape(1, 1, 5, 5)
    out = conv(x)
    assert out.shape == x.shape
    assert out[0, 0, 0, 0] == 0.0  # padded row/column before
    assert torch.equal(out[0, 0, 1:, 1:], x[0, 0, :-1, :-1])


def test_transposed_conv_matches_tf_same_indices():
    conv = SameTransposedConv2x(1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # full transposed conv puts x[i] at output 2i
    x = torch.rand(1, 1, 3, 4)
    out = conv(x)
    assert out.shape == (1, 1, 6, 8)
    assert torch.equal(out[0, 0, ::2, ::2], x[0, 0])  # TF keeps indices 0…2H−1 (no 1-px shift)
    full = F.conv_transpose2d(x, conv.weight, stride=2)
    assert torch.equal(out, full[..., :6, :8])


def test_initialisation_follows_tf_slim_defaults():
    net = ZoomLearnNet(zoom=2)
    prelu_slopes = [m.weight for m in net.modules() if isinstance(m, torch.nn.PReLU)]
    assert prelu_slopes and all(torch.equal(w, torch.zeros_like(w)) for w in prelu_slopes)
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert all(m.bias is None or torch.equal(m.bias, torch.zeros_like(m.bias)) for m in convs)
    head = net.head[0].weight
    fan_in, fan_out = head.shape[1] * 81, head.shape[0] * 81
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    assert head.abs().max() <= bound and head.abs().max() > 0.9 * bound


def test_batch_norm_has_no_scale_and_eps_1e3():
    net = ZoomLearnNet(zoom=2)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 2 * 16 + 1
    assert all(not m.affine and m.eps == 1e-3 for m in norms)


def test_eval_mode_is_tile_invariant_with_batch_norm():
    """Running statistics in eval: a sample's output does not depend on the rest of the batch."""
    torch.manual_seed(0)
    net = ZoomLearnNet(zoom=2, num_blocks=2)
    net.train()
    net(torch.rand(4, 4, 8, 8))  # updates running statistics
    net.eval()
    x = torch.rand(3, 4, 8, 8)
    torch.testing.assert_close(net(x)[:1], net(x[:1]))


def test_rejects_non_power_of_two_and_wrong_channels():
    with pytest.raises(ValueError, match="power of two"):
        ZoomLearnNet(zoom=3)
    with pytest.raises(ValueError, match=r"expected input \(B, 4"):
        ZoomLearnNet(zoom=2, num_blocks=1)(torch.rand(1, 3, 4, 4))


# ------------------------------------------------------------------ options outside the paper (demo)


def test_smaller_head_and_pixel_shuffle_change_exactly_those_parameters():
    paper = trainable(ZoomLearnNet(zoom=4, width=32, num_blocks=2, up_width=32))
    head3 = trainable(ZoomLearnNet(zoom=4, width=32, num_blocks=2, up_width=32, head_kernel=3))
    assert paper - head3 == 4 * 32 * (81 - 9)
    shuffle = trainable(ZoomLearnNet(zoom=4, width=32, num_blocks=2, up_width=32, upsampler="pixel_shuffle"))
    deconv_stage = 2 * (32 * 32 * 9 + 32) + 32  # 3×3 conv, 3×3 transposed conv (weights + biases), PReLU
    tail = 32 * 3 * 81 + 3
    sub_pixel_conv = 32 * (3 * 8**2) * 9 + 3 * 8**2  # 3×3 conv to 3·(2N)² channels, N = 4
    assert paper - shuffle == 3 * deconv_stage + tail - sub_pixel_conv


@pytest.mark.parametrize("zoom", [2, 4, 8])
def test_pixel_shuffle_upsampler_gives_the_same_output_size(zoom):
    net = ZoomLearnNet(zoom=zoom, num_blocks=1, width=16, upsampler="pixel_shuffle").eval()
    assert net(torch.rand(2, 4, 5, 7)).shape == (2, 3, 5 * 2 * zoom, 7 * 2 * zoom)


def test_raw_skip_adds_the_packed_raw_preview():
    """With the learned part silenced the output is the bilinear, gamma-encoded preview of the raw."""
    net = ZoomLearnNet(zoom=2, num_blocks=1, width=8, upsampler="pixel_shuffle", raw_skip=True)
    torch.nn.init.zeros_(net.upsample[0].weight)
    flat = torch.full((1, 4, 3, 3), 0.25)
    flat[:, 0], flat[:, 2] = 0.5, 0.125  # R, (G1 + G2)/2 = 0.25, B
    expected = torch.stack([torch.full((12, 12), v ** (1 / 2.2)) for v in (0.5, 0.25, 0.125)])[None]
    torch.testing.assert_close(net(flat), expected)
    with pytest.raises(ValueError, match="raw_skip needs packed raw"):
        ZoomLearnNet(zoom=2, in_channels=12, raw_skip=True)


def test_norm_none_keeps_samples_independent_in_training():
    """Without normalisation a sample's training-mode output does not depend on the rest of the batch."""
    torch.manual_seed(0)
    net = ZoomLearnNet(zoom=2, num_blocks=2, width=8, up_width=8, norm="none").train()
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) for m in net.modules())
    x = torch.rand(3, 4, 6, 6)
    torch.testing.assert_close(net(x)[:1], net(x[:1]))
    batch_norm = ZoomLearnNet(zoom=2, num_blocks=2, width=8, up_width=8).train()
    assert not torch.allclose(batch_norm(x)[:1], batch_norm(x[:1]))


def test_rejects_bad_options():
    with pytest.raises(ValueError, match="head_kernel"):
        ZoomLearnNet(zoom=2, head_kernel=4)
    with pytest.raises(ValueError, match="upsampler"):
        ZoomLearnNet(zoom=2, upsampler="nearest")
    with pytest.raises(ValueError, match="norm must be"):
        ZoomLearnNet(zoom=2, norm="group")
