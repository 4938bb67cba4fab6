import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from ops.deform import AdaSTN, DeformConv2d, deform_conv2d

pytestmark = pytest.mark.usefixtures("one_thread")

BACKENDS = ("grid_sample", "torchvision")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


# ----------------------------------------------------------------------------- naive reference
def _bilinear(image: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """image (C, H, W) at the real position (y, x): Σ over the 4 corners of weight · pixel, 0 outside."""
    height, width = image.shape[-2:]
    y0, x0 = math.floor(float(y.detach())), math.floor(float(x.detach()))
    value = image.new_zeros(image.shape[0])
    for row, weight_y in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for col, weight_x in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= row < height and 0 <= col < width:
                value = value + weight_y * weight_x * image[:, row, col]
    return value


def _naive_deform_conv2d(input, offset, weight, bias=None, padding=(1, 1)):
    """Loops over batch, output pixels, output channels and taps; offset channels (dy_k, dx_k) interleaved."""
    batch, c_in, _, _ = input.shape
    c_out, c_in_group, kh, kw = weight.shape
    per_group = c_out // (c_in // c_in_group)
    h_out, w_out = offset.shape[-2:]
    out = [[[[None] * w_out for _ in range(h_out)] for _ in range(c_out)] for _ in range(batch)]
    for b in range(batch):
        for i in range(h_out):
            for j in range(w_out):
                samples = []  # (K, C_in)
                for ky in range(kh):
                    for kx in range(kw):
                        k = ky * kw + kx
                        y = i - padding[0] + ky + offset[b, 2 * k, i, j]
                        x = j - padding[1] + kx + offset[b, 2 * k + 1, i, j]
                        samples.append(_bilinear(input[b], y, x))
                for o in range(c_out):
                    first = (o // per_group) * c_in_group
                    value = bias[o] if bias is not None else 0.0
                    for k in range(kh * kw):
                        for c in range(c_in_group):
                            value = value + weight[o, c, k // kw, k % kw] * samples[k][first + c]
                    out[b][o][i][j] = value
    return torch.stack([torch.stack([torch.stack([torch.stack(row) for row in ch]) for ch in s]) for s in out])


def _sample_positions(offset: torch.Tensor, kh: int, kw: int, padding: tuple[int, int]) -> torch.Tensor:
    """(B, K, 2, H_out, W_out) sampling positions (y, x) of every tap."""
    batch, _, h_out, w_out = offset.shape
    rows = torch.arange(kh).repeat_interleave(kw)[:, None, None] + torch.arange(h_out)[:, None] - padding[0]
    cols = torch.arange(kw).repeat(kh)[:, None, None] + torch.arange(w_out) - padding[1]
    base = torch.stack(torch.broadcast_tensors(rows, cols), dim=1).to(offset.dtype)  # (K, 2, H_out, W_out)
    return base + offset.view(batch, kh * kw, 2, h_out, w_out)


def _case(c_in, c_out, groups, kernel=(3, 3), padding=(1, 1), size=(5, 6), batch=2, spread=2.5, seed=0):
    """Random float64 tensors whose samples fall inside, partly outside and fully outside the image."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    h_out, w_out = height + 2 * padding[0] - kernel[0] + 1, width + 2 * padding[1] - kernel[1] + 1
    input = torch.randn(batch, c_in, height, width, generator=generator, dtype=torch.float64)
    offset = (torch.rand(batch, 2 * kernel[0] * kernel[1], h_out, w_out, generator=generator, dtype=torch.float64)
              * 2 - 1) * spread
    weight = torch.randn(c_out, c_in // groups, *kernel, generator=generator, dtype=torch.float64)
    bias = torch.randn(c_out, generator=generator, dtype=torch.float64)
    positions = _sample_positions(offset, *kernel, padding)
    limits = torch.tensor([height, width], dtype=torch.float64).view(1, 1, 2, 1, 1)
    inside = ((positions >= 0) & (positions <= limits - 1)).all(dim=2)
    outside = ((positions <= -1) | (positions >= limits)).any(dim=2)
    assert inside.any() and outside.any() and (~inside & ~outside).any(), "the case must cover all three kinds"
    assert (positions != positions.round()).all(), "fractional positions: bilinear sampling is smooth there"
    return input, offset, weight, bias


CASES = {
    "groups=1": dict(c_in=3, c_out=4, groups=1),
    "groups=2": dict(c_in=4, c_out=2, groups=2),
    "depthwise": dict(c_in=3, c_out=3, groups=3),
    "depthwise-2x3-pad(0,2)": dict(c_in=2, c_out=2, groups=2, kernel=(2, 3), padding=(0, 2)),
}


@pytest.fixture(scope="module", params=list(CASES))
def reference(request):
    """A case, the naive output and its gradients w.r.t. (input, offset, weight, bias) for one cotangent."""
    spec = CASES[request.param]
    tensors = [t.requires_grad_() for t in _case(**spec)]
    out = _naive_deform_conv2d(*tensors, padding=spec.get("padding", (1, 1)))
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad((out * cotangent).sum(), tensors)
    return spec, [t.detach() for t in tensors], out.detach(), cotangent, grads


def _run(backend, tensors, cotangent, padding):
    tensors = [t.clone().requires_grad_() for t in tensors]
    out = deform_conv2d(*tensors, padding=padding, backend=backend)
    return out, torch.autograd.grad((out * cotangent.to(out.dtype)).sum(), tensors)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_naive_reference_values_and_gradients(reference, backend, dtype):
    spec, tensors, expected, cotangent, expected_grads = reference
    tolerance = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    out, grads = _run(backend, [t.to(dtype) for t in tensors], cotangent, spec.get("padding", 1))
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected, **tolerance)
    for name, grad, expected_grad in zip(("input", "offset", "weight", "bias"), grads, expected_grads):
        torch.testing.assert_close(grad.double(), expected_grad, **tolerance, msg=lambda m: f"d/d{name}: {m}")


@pytest.mark.parametrize("groups", [1, 2])
def test_grid_sample_gradcheck(groups):
    input, offset, weight, bias = (
        t.requires_grad_() for t in _case(c_in=2, c_out=2, groups=groups, size=(3, 4), batch=1, spread=1.8, seed=3)
    )
    assert torch.autograd.gradcheck(
        lambda *args: deform_conv2d(*args, backend="grid_sample"), (input, offset, weight, bias), eps=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_offsets_are_a_plain_convolution(backend):
    generator = torch.Generator().manual_seed(0)
    for groups, c_out in ((1, 5), (4, 4)):
        input = torch.randn(2, 4, 7, 6, generator=generator, dtype=torch.float64)
        weight = torch.randn(c_out, 4 // groups, 3, 3, generator=generator, dtype=torch.float64)
        offset = input.new_zeros(2, 18, 7, 6)
        expected = F.conv2d(input, weight, padding=1, groups=groups)
        torch.testing.assert_close(deform_conv2d(input, offset, weight, backend=backend), expected)


def test_backends_agree_in_float32_on_the_adastn_case():
    """64 depthwise channels, offsets of a few pixels, many samples partly outside a 16×16 map."""
    generator = torch.Generator().manual_seed(0)
    input = torch.randn(2, 64, 16, 16, generator=generator)
    offset = torch.randn(2, 18, 16, 16, generator=generator) * 3
    weight = torch.randn(64, 1, 3, 3, generator=generator)
    torch.testing.assert_close(
        deform_conv2d(input, offset, weight, backend="grid_sample"),
        deform_conv2d(input, offset, weight, backend="torchvision"),
        rtol=1e-5,
        atol=1e-5,
    )


def test_auto_picks_grid_sample_for_depthwise_on_cpu_and_torchvision_otherwise(monkeypatch):
    import ops.deform

    calls = []
    torchvision_backend = ops.deform._torchvision_deform_conv2d

    def spy(*args, **kwargs):
        calls.append(1)
        return torchvision_backend(*args, **kwargs)

    monkeypatch.setattr(ops.deform, "_torchvision_deform_conv2d", spy)
    input, offset, weight, bias = (t.float() for t in _case(c_in=3, c_out=3, groups=3))
    expected = deform_conv2d(input, offset, weight, bias, backend="grid_sample")
    assert torch.equal(deform_conv2d(input, offset, weight, bias), expected)
    assert calls == []
    input, offset, weight, bias = (t.float() for t in _case(c_in=3, c_out=4, groups=1))
    deform_conv2d(input, offset, weight, bias)
    assert calls == [1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_autocast_computes_in_float32(backend):
    input, offset, weight, bias = (t.float() for t in _case(c_in=3, c_out=3, groups=3))
    half = input.bfloat16()
    expected = deform_conv2d(half.float(), offset, weight, bias, backend=backend)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = deform_conv2d(half, offset, weight, bias, backend=backend)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_non_contiguous_offsets():
    input, offset, weight, bias = _case(c_in=3, c_out=3, groups=3)
    strided = offset.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    assert not strided.is_contiguous()
    torch.testing.assert_close(
        deform_conv2d(input, strided, weight, bias, backend="grid_sample"),
        deform_conv2d(input, offset, weight, bias, backend="grid_sample"),
        rtol=0,
        atol=0,
    )


def test_module_equals_function():
    module = DeformConv2d(4, 6, kernel_size=3, padding=1, groups=2, backend="grid_sample")
    input, offset, _, _ = (t.float() for t in _case(c_in=4, c_out=6, groups=2))
    expected = deform_conv2d(input, offset, module.weight, module.bias, padding=1, backend="grid_sample")
    assert torch.equal(module(input, offset), expected)
    assert module.weight.shape == (6, 2, 3, 3) and module.bias.shape == (6,)
    assert "groups=2" in repr(module) and "grid_sample" in repr(module)


@pytest.mark.parametrize(
    ("c_in", "c_out", "groups", "bias", "count"),
    [(64, 64, 64, True, 640), (64, 64, 64, False, 576), (8, 16, 2, True, 592)],
)
def test_parameters_and_initialisation_match_torchvision(c_in, c_out, groups, bias, count):
    torch.manual_seed(0)
    module = DeformConv2d(c_in, c_out, 3, padding=1, groups=groups, bias=bias)
    torch.manual_seed(0)
    theirs = torchvision.ops.DeformConv2d(c_in, c_out, 3, padding=1, groups=groups, bias=bias)
    assert sum(p.numel() for p in module.parameters()) == count == sum(p.numel() for p in theirs.parameters())
    assert torch.equal(module.weight, theirs.weight)
    if bias:
        assert torch.equal(module.bias, theirs.bias)
    bound = 1 / math.sqrt(c_in // groups * 9)  # nn.Conv2d's default: kaiming uniform (a = √5) gives ±1/√fan_in
    assert module.weight.abs().max() <= bound and module.weight.abs().max() > 0.9 * bound


def _guard_inputs(**changes):
    tensors = dict(
        input=torch.rand(2, 4, 6, 6),
        offset=torch.rand(2, 18, 6, 6),
        weight=torch.rand(4, 1, 3, 3),
        bias=torch.rand(4),
    )
    options = dict(padding=1, backend="grid_sample")
    for key, value in changes.items():
        (options if key in options else tensors)[key] = value
    return tensors, options


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(input=torch.rand(4, 6, 6)), r"input of shape \(B, C_in, H, W\)"),
        (dict(input=torch.ones(2, 4, 6, 6, dtype=torch.int64)), "input to be floating point"),
        (dict(weight=torch.rand(4, 3, 3, 3)), r"groups = C_in / weight.shape\[1\]"),
        (dict(weight=torch.rand(3, 2, 3, 3)), "dividing C_out"),
        (dict(offset=torch.rand(2, 36, 6, 6)), r"offset of shape .*\(2, 18, 6, 6\) \(one offset group\), got \(2, 36"),
        (dict(offset=torch.rand(2, 18, 5, 6)), r"offset of shape .* got \(2, 18, 5, 6\)"),
        (dict(offset=torch.rand(1, 18, 6, 6)), r"offset of shape .* got \(1, 18, 6, 6\)"),
        (dict(bias=torch.rand(5)), r"bias of shape \(C_out,\) = \(4,\), got \(5,\)"),
        (dict(padding=-1), "padding"),
        (dict(padding=1.0), "padding"),
        (dict(padding=(1, 1, 1)), "padding"),
        (dict(padding=0, input=torch.rand(2, 4, 2, 6)), "kernel to fit"),
        (dict(backend="cuda"), "backend"),
        (dict(offset=torch.rand(2, 18, 6, 6, dtype=torch.float64)), "one dtype"),
    ],
)
def test_guards(changes, message):
    tensors, options = _guard_inputs(**changes)
    with pytest.raises(ValueError, match=message):
        deform_conv2d(**tensors, **options)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(in_channels=4, out_channels=6, groups=4), "groups to divide"),
        (dict(in_channels=4, out_channels=4, kernel_size=0), "kernel_size"),
        (dict(in_channels=4, out_channels=4, padding=-2), "padding"),
        (dict(in_channels=4, out_channels=4, backend="fast"), "backend"),
    ],
)
def test_module_guards(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeformConv2d(**kwargs)


# ------------------------------------------------------------------------------------------ AdaSTN
def _features(batch=2, channels=8, size=(7, 9), seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, channels, *size, generator=generator, dtype=dtype) for _ in range(2))


def _fixed_transform(block: AdaSTN, matrix, translation) -> AdaSTN:
    """Make the estimator output the constant A (row-major) and b = (b_y, b_x) everywhere."""
    with torch.no_grad():
        block.transform_matrix_conv.weight.zero_()
        block.transform_matrix_conv.bias.copy_(torch.tensor(matrix, dtype=torch.float32))
        block.translation_conv.weight.zero_()
        block.translation_conv.bias.copy_(torch.tensor(translation, dtype=torch.float32))
    return block


def test_adastn_parameters_match_the_official_layout():
    block = AdaSTN(64)
    assert sum(p.numel() for p in block.parameters() if p.requires_grad) == 12_678
    shapes = {key: tuple(value.shape) for key, value in block.state_dict().items()}
    assert shapes == {
        "regular_matrix": (2, 9),
        "concat.0.weight": (128, 1, 3, 3),
        "concat.0.bias": (128,),
        "concat2.0.weight": (64, 2, 3, 3),
        "concat2.0.bias": (64,),
        "transform_matrix_conv.weight": (4, 64, 5, 5),
        "transform_matrix_conv.bias": (4,),
        "translation_conv.weight": (2, 64, 5, 5),
        "translation_conv.bias": (2,),
        "adapt_conv.weight": (64, 1, 3, 3),
    }
    expected_grid = [[-1, -1, -1, 0, 0, 0, 1, 1, 1], [-1, 0, 1, -1, 0, 1, -1, 0, 1]]
    assert torch.equal(block.regular_matrix, torch.tensor(expected_grid, dtype=torch.float32))


def test_adastn_offsets_are_a_g_minus_g_plus_b_interleaved():
    a00, a01, a10, a11, b_y, b_x = 1.5, -0.25, 0.5, 0.75, 0.3, -1.2
    block = _fixed_transform(AdaSTN(8), (a00, a01, a10, a11), (b_y, b_x))
    x, guide = _features()
    offsets = block.offsets(x, guide)
    assert offsets.shape == (2, 18, 7, 9)
    for ky in range(3):
        for kx in range(3):
            k, gy, gx = 3 * ky + kx, ky - 1, kx - 1
            dy, dx = a00 * gy + a01 * gx - gy + b_y, a10 * gy + a11 * gx - gx + b_x
            torch.testing.assert_close(offsets[:, 2 * k], torch.full_like(offsets[:, 0], dy))
            torch.testing.assert_close(offsets[:, 2 * k + 1], torch.full_like(offsets[:, 0], dx))


def _depthwise(x, weight, padding, dilation=1):
    return F.leaky_relu(F.conv2d(F.pad(x, padding), weight, dilation=dilation, groups=x.shape[1]), 0.2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("matrix", "translation", "padding", "dilation"),
    [
        ((1, 0, 0, 1), (0, 0), (1, 1, 1, 1), 1),  # A = I, b = 0: a plain depthwise 3×3 convolution
        ((2, 0, 0, 2), (0, 0), (2, 2, 2, 2), 2),  # A = 2I: dilation 2
        ((1, 0, 0, 1), (1, 0), (1, 1, 0, 2), 1),  # b_y = 1: every tap one row lower
        ((1, 0, 0, 1), (0, 1), (0, 2, 1, 1), 1),  # b_x = 1: every tap one column to the right
    ],
)
def test_adastn_with_a_fixed_transform_is_a_plain_convolution(backend, matrix, translation, padding, dilation):
    block = _fixed_transform(AdaSTN(8, backend=backend), matrix, translation)
    x, guide = _features()
    expected = _depthwise(x, block.adapt_conv.weight, padding, dilation)
    torch.testing.assert_close(block.train()(x, guide), expected, rtol=1e-5, atol=1e-5)
    block.collapse_at_test = False  # the official Ref-branch block runs the estimator at test time too
    torch.testing.assert_close(block.eval()(x, guide), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_adastn_collapse_equals_deformable_conv_sampling_the_centre(backend, dtype, atol):
    if backend == "grid_sample" and dtype == torch.float32:
        atol = 1e-5  # grid_sample's normalised float32 coordinates are off by up to ~1e-7·H/2 pixel
    block = AdaSTN(8, backend=backend).to(dtype).eval()
    x, guide = _features(dtype=dtype)
    collapsed = block(x, guide)
    centre = block.centre_offsets().expand(2, 18, 7, 9)
    expected = F.leaky_relu(deform_conv2d(x, centre, block.adapt_conv.weight, backend=backend), 0.2)
    torch.testing.assert_close(collapsed, expected, rtol=0, atol=atol)
    assert torch.equal(collapsed, block(x, guide + 1)), "the collapsed block ignores the guide"


def test_adastn_dropout_one_always_collapses_and_zero_never():
    x, guide = _features(batch=4, dtype=torch.float64)
    block = AdaSTN(8, dropout=1.0).double()
    collapsed = block.eval()(x, guide)
    torch.testing.assert_close(block.train()(x, guide), collapsed, rtol=0, atol=1e-12)
    block.dropout = 0.0
    differences = (block(x, guide) - collapsed).abs().amax(dim=(1, 2, 3))
    assert (differences > 1e-2).all()


def test_adastn_dropout_draws_per_sample_from_the_generator():
    x, guide = _features(batch=16, dtype=torch.float64)
    block = AdaSTN(8, dropout=0.5).double()
    collapsed = block.eval()(x, guide)
    block.train()

    def dropped(seed):
        out = block(x, guide, generator=torch.Generator().manual_seed(seed))
        return ((out - collapsed).abs().amax(dim=(1, 2, 3)) <= 1e-12), out

    first, out = dropped(0)
    again, out_again = dropped(0)
    other, _ = dropped(1)
    assert torch.equal(out, out_again) and torch.equal(first, again)
    assert 0 < first.sum() < 16, "some samples are dropped and others not"
    assert not torch.equal(first, other), "another seed, another draw"


def test_adastn_dropped_samples_give_no_gradient_to_the_estimator():
    x, guide = _features(batch=2)
    block = AdaSTN(8, dropout=1.0).train()
    block(x, guide).square().sum().backward()
    assert block.transform_matrix_conv.weight.grad.abs().max() == 0
    assert block.adapt_conv.weight.grad.abs().max() > 0
    block.zero_grad()
    block.dropout = 0.0
    block(x, guide).square().sum().backward()
    assert block.transform_matrix_conv.weight.grad.abs().max() > 0


def test_adastn_gradcheck():
    x, guide = (t.requires_grad_() for t in _features(batch=1, channels=2, size=(4, 3), dtype=torch.float64))
    block = AdaSTN(2, backend="grid_sample").double().train()
    with torch.no_grad():  # offsets of about a pixel, so the samples are well off the integer grid
        block.translation_conv.bias.copy_(torch.tensor([0.37, -0.61]))
    assert torch.autograd.gradcheck(block, (x, guide), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("training", [True, False])
def test_adastn_output_shapes(training):
    block = AdaSTN(8, dropout=0.3).train(training)
    x, guide = _features(batch=3, size=(5, 11))
    assert block(x, guide).shape == (3, 8, 5, 11)
    assert block.offsets(x, guide).shape == (3, 18, 5, 11)


@pytest.mark.parametrize(
    ("x", "guide", "message"),
    [
        (torch.rand(2, 4, 5, 5), torch.rand(2, 8, 5, 5), r"x of shape \(B, 8, H, W\), got \(2, 4, 5, 5\)"),
        (torch.rand(8, 5, 5), torch.rand(2, 8, 5, 5), r"x of shape \(B, 8, H, W\)"),
        (torch.rand(2, 8, 5, 5), torch.rand(2, 8, 5, 6), "x and guide of the same shape"),
    ],
)
def test_adastn_guards(x, guide, message):
    with pytest.raises(ValueError, match=message):
        AdaSTN(8)(x, guide)
    with pytest.raises(ValueError, match=message):
        AdaSTN(8).offsets(x, guide)


def test_adastn_constructor_guards():
    with pytest.raises(ValueError, match="dropout to be a probability"):
        AdaSTN(8, dropout=1.5)
    with pytest.raises(ValueError, match="channels"):
        AdaSTN(0)


@cuda
def test_cuda_backends_agree_and_generator_device_is_checked():
    input, offset, weight, bias = (t.float().cuda() for t in _case(c_in=3, c_out=3, groups=3))
    torch.testing.assert_close(
        deform_conv2d(input, offset, weight, bias, backend="grid_sample"),
        deform_conv2d(input, offset, weight, bias, backend="torchvision"),
        rtol=1e-5,
        atol=1e-5,
    )
    block = AdaSTN(8, dropout=0.5).cuda().train()
    x, guide = (t.cuda() for t in _features())
    assert block(x, guide, generator=torch.Generator("cuda").manual_seed(0)).device.type == "cuda"
    with pytest.raises(ValueError, match="generator on the features' device"):
        block(x, guide, generator=torch.Generator().manual_seed(0))
