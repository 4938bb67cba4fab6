"""Deformable convolution (one offset group) and SelfDZSR's AdaSTN.

Deformable convolution (Dai et al., "Deformable Convolutional Networks", ICCV 2017), stride 1, dilation 1,
for input x (B, C_in, H, W), weight w (C_out, C_in/g, kh, kw) (g groups, inferred from the shapes as
torchvision does), offset Δ (B, 2·kh·kw, H_out, W_out) and padding (p_h, p_w):

    y[b, o, i, j] = bias[o] + Σ_{c ∈ group(o)} Σ_k w[o, c, k]·x̃_{b,c}(i − p_h + k_y + Δy_k, j − p_w + k_x + Δx_k)

with H_out = H + 2p_h − kh + 1 (W_out likewise), taps k = (k_y, k_x) in row-major order, offset channels
interleaved exactly as ``torchvision.ops.deform_conv2d``: Δ[:, 2k] = Δy_k, Δ[:, 2k + 1] = Δx_k (one offset
group), and x̃ the bilinear interpolation of x with zeros outside the image (a sample partly outside
keeps the bilinear weights of its corners inside; one a full pixel or more outside is 0, as torchvision).

AdaSTN (Zhang et al., "Self-Supervised Learning for Real-World Super-Resolution from Dual Zoomed
Observations", ECCV 2022, §3.3 and Eq. 7; the official ``AdaptBlock``, reference ``selfdzsr.md`` §1.5)
estimates a per-pixel 2×2 matrix A and translation b and deforms x with a depthwise 3×3 deformable
convolution sampling at A·G + b, G the regular 3×3 grid.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d as _torchvision_deform_conv2d

__all__ = ["deform_conv2d", "DeformConv2d", "AdaSTN"]

Backend = Literal["auto", "torchvision", "grid_sample"]
_BACKENDS = ("auto", "torchvision", "grid_sample")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------------------- guards
def _check_padding(padding: int | tuple[int, int]) -> tuple[int, int]:
    pair = (padding, padding) if isinstance(padding, int) else padding
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in pair)
    ):
        raise ValueError(f"expected padding to be an int >= 0 or a pair of them, got {padding!r}")
    return tuple(pair)


def _check_inputs(
    input: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int], backend: str
) -> None:
    if backend not in _BACKENDS:
        raise ValueError(f"expected backend in {_BACKENDS}, got {backend!r}")
    for name, tensor, layout in (
        ("input", input, "(B, C_in, H, W)"),
        ("offset", offset, "(B, 2·kh·kw, H_out, W_out)"),
        ("weight", weight, "(C_out, C_in/groups, kh, kw)"),
    ):
        if not isinstance(tensor, Tensor):
            raise ValueError(f"expected {name} to be a Tensor, got {type(tensor).__name__}")
        if tensor.dim() != 4:
            raise ValueError(f"expected {name} of shape {layout}, got shape {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise ValueError(f"expected {name} to be floating point, got dtype {tensor.dtype}")
    batch, c_in, height, width = input.shape
    c_out, c_in_group, kh, kw = weight.shape
    if c_in_group == 0 or c_in % c_in_group or c_out % (c_in // c_in_group):
        raise ValueError(
            f"expected weight (C_out, C_in/groups, kh, kw) with groups = C_in / weight.shape[1] dividing C_out, "
            f"got weight {tuple(weight.shape)} for input {tuple(input.shape)}"
        )
    h_out, w_out = height + 2 * padding[0] - kh + 1, width + 2 * padding[1] - kw + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(
            f"expected a {kh}×{kw} kernel to fit the padded input, "
            f"got input {tuple(input.shape)} with padding {padding}"
        )
    expected = (batch, 2 * kh * kw, h_out, w_out)
    if tuple(offset.shape) != expected:
        raise ValueError(
            f"expected offset of shape (B, 2·kh·kw, H_out, W_out) = {expected} (one offset group), "
            f"got {tuple(offset.shape)}"
        )
    if bias is not None and (not isinstance(bias, Tensor) or tuple(bias.shape) != (c_out,)):
        shape = tuple(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__
        raise ValueError(f"expected bias of shape (C_out,) = ({c_out},), got {shape}")


def _check_same_dtype_and_device(*tensors: Tensor | None) -> None:
    present = [t for t in tensors if t is not None]
    dtypes, devices = {t.dtype for t in present}, {t.device for t in present}
    if len(dtypes) > 1 or len(devices) > 1:
        raise ValueError(
            "expected input, offset, weight and bias of one dtype on one device, got "
            f"{[t.dtype for t in present]} on {[str(t.device) for t in present]}"
        )


# -------------------------------------------------------------------------------------- backends
def _grid_sample_backend(input: Tensor, offset: Tensor, weight: Tensor, padding: tuple[int, int]) -> Tensor:
    """Pure PyTorch: one ``grid_sample`` call samples all taps, then a grouped tap sum (no bias)."""
    batch, c_in, height, width = input.shape
    c_out, c_in_group, kh, kw = weight.shape
    groups, taps = c_in // c_in_group, kh * kw
    h_out, w_out = offset.shape[-2:]
    options = dict(dtype=input.dtype, device=input.device)
    # Sampling grid in grid_sample's normalised units (align_corners=False: pixel p ↦ (2p + 1)/size − 1).
    tap_rows = torch.arange(kh, **options).repeat_interleave(kw)[:, None, None]  # (K, 1, 1) k_y, row-major
    tap_cols = torch.arange(kw, **options).repeat(kh)[:, None, None]  # (K, 1, 1) k_x
    rows = tap_rows + torch.arange(h_out, **options)[:, None] - padding[0]  # (K, H_out, 1)
    cols = tap_cols + torch.arange(w_out, **options) - padding[1]  # (K, 1, W_out)
    base = torch.stack(torch.broadcast_tensors((2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1), dim=-1)
    scale = torch.stack((base.new_full((), 2.0 / width), base.new_full((), 2.0 / height)))  # (x, y) per pixel
    delta_xy = offset.reshape(batch, taps, 2, h_out, w_out).flip(2).permute(0, 1, 3, 4, 2)  # (B, K, H_out, W_out, 2)
    grid = torch.addcmul(base, delta_xy, scale).reshape(batch, taps * h_out, w_out, 2)
    sampled = F.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # (B, g, C_in/g·K, H_out·W_out); for depthwise weights a per-channel weighted sum of the K taps.
    sampled = sampled.view(batch, groups, c_in_group * taps, h_out * w_out)
    out = torch.matmul(weight.reshape(groups, c_out // groups, c_in_group * taps), sampled)
    return out.view(batch, c_out, h_out, w_out)


def _resolve_backend(backend: str, input: Tensor, weight: Tensor) -> str:
    if backend != "auto":
        return backend
    depthwise = weight.shape[1] == 1 and weight.shape[0] == input.shape[1]
    return "grid_sample" if depthwise and input.device.type == "cpu" else "torchvision"


# ------------------------------------------------------------------------------------- functions
def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    padding: int | tuple[int, int] = 1,
    backend: Backend = "auto",
) -> Tensor:
    """Deformable convolution, stride 1, dilation 1, one offset group (formula in the module docstring).

    Args:
        input: (B, C_in, H, W).
        offset: (B, 2·kh·kw, H_out, W_out), channels (Δy_k, Δx_k) interleaved for row-major taps k, in pixels
            (torchvision's layout); H_out = H + 2·padding − kh + 1.
        weight: (C_out, C_in/groups, kh, kw); groups = C_in / weight.shape[1].
        bias: (C_out,) or None.
        padding: zero padding (int or (p_h, p_w)).
        backend: ``"torchvision"`` calls ``torchvision.ops.deform_conv2d``; ``"grid_sample"`` is pure PyTorch
            (one bilinear ``F.grid_sample`` over all taps, zero padding, then a grouped tap sum: for depthwise
            weights a per-channel weighted sum of the taps). ``"auto"`` picks ``"grid_sample"`` for depthwise
            weights (groups = C_in = C_out) on CPU, where it is 5–10× faster than torchvision's kernel
            (``python -m bench.deform``), and ``"torchvision"`` otherwise.

    Returns:
        (B, C_out, H_out, W_out). Under autocast, float16/bfloat16 tensors are cast to float32 and the result
        is float32; otherwise all tensors must share one dtype and device.
    """
    padding = _check_padding(padding)
    _check_inputs(input, offset, weight, bias, padding, backend)
    device_type = input.device.type
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        input, offset, weight, bias = (
            t.float() if t is not None and t.dtype in _LOW_PRECISION else t for t in (input, offset, weight, bias)
        )
        with torch.autocast(device_type, enabled=False):
            return deform_conv2d(input, offset, weight, bias, padding=padding, backend=backend)
    _check_same_dtype_and_device(input, offset, weight, bias)
    if _resolve_backend(backend, input, weight) == "torchvision":
        return _torchvision_deform_conv2d(input, offset, weight, bias, padding=padding)
    out = _grid_sample_backend(input, offset, weight, padding)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


class DeformConv2d(nn.Module):
    """Module form of :func:`deform_conv2d`: holds ``weight`` (C_out, C_in/groups, k, k) and ``bias`` (C_out,).

    Initialised as ``nn.Conv2d`` (and ``torchvision.ops.DeformConv2d``), so parameter counts match torchvision's.
    ``forward(x, offset)``: x (B, C_in, H, W), offset (B, 2·k², H_out, W_out) → (B, C_out, H_out, W_out).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int = 1,
        groups: int = 1,
        bias: bool = True,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        for name, value, least in (
            ("in_channels", in_channels, 1),
            ("out_channels", out_channels, 1),
            ("kernel_size", kernel_size, 1),
            ("groups", groups, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"expected {name} to be an int >= {least}, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"expected groups to divide in_channels and out_channels, got groups={groups} for "
                f"{in_channels} → {out_channels} channels"
            )
        _check_padding(padding)
        if backend not in _BACKENDS:
            raise ValueError(f"expected backend in {_BACKENDS}, got {backend!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding, self.groups, self.backend = kernel_size, padding, groups, backend
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weight (a = √5), bias uniform in ±1/√fan_in: ``nn.Conv2d``'s default."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, offset: Tensor) -> Tensor:
        return deform_conv2d(x, offset, self.weight, self.bias, padding=self.padding, backend=self.backend)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, padding={self.padding}, "
            f"groups={self.groups}, bias={self.bias is not None}, backend={self.backend!r}"
        )


class AdaSTN(nn.Module):
    """Adaptive spatial-transformer block of SelfDZSR (the official ``AdaptBlock``, reference §1.5).

    For features x and guide features g, both (B, C, H, W):

        f = LReLU(conv3×3_{C groups}(LReLU(conv3×3_{2C groups}([x, g]))))           (concat, concat2)
        A = conv5×5(f) (B, 4, H, W), per pixel [a00, a01; a10, a11];  b = conv5×5(f) (B, 2, H, W)
        Δ_k = A·G_k − G_k + b,  G_k = (k_y − 1, k_x − 1) the regular 3×3 grid (buffer ``regular_matrix``, 2×9)
        y = LReLU(deform_conv3×3_depthwise(x, Δ))                                  (adapt_conv, no bias)

    so tap k samples at p + A·G_k + b (paper Eq. 7); LReLU has slope 0.2. Offsets Δ use the interleaved
    (Δy_k, Δx_k) layout of :func:`deform_conv2d`.

    Training with ``dropout`` p > 0: independently per sample, with probability p (drawn from ``generator``,
    a torch generator on the features' device), Δ is replaced by −G, so every tap samples the centre pixel.
    Evaluation with ``collapse_at_test`` (the official ada1–3 at test time, the paper's "AdaSTN simplified
    to a convolution layer"): the estimator is skipped and y = LReLU(x ⊙ Σ_k w_k), the depthwise 1×1
    convolution with the summed 3×3 kernel, which equals the deformable convolution with Δ = −G. The
    official Ref-branch block (``ref_ada``) is ``AdaSTN(dropout=0, collapse_at_test=False)``.
    """

    def __init__(
        self, channels: int = 64, dropout: float = 0.0, collapse_at_test: bool = True, backend: Backend = "auto"
    ) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"expected channels to be an int >= 1, got {channels!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"expected dropout to be a probability in [0, 1], got {dropout!r}")
        self.channels, self.dropout, self.collapse_at_test = channels, float(dropout), collapse_at_test
        c = channels
        self.concat = nn.Sequential(nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c), nn.LeakyReLU(0.2))
        self.concat2 = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1, groups=c), nn.LeakyReLU(0.2))
        self.transform_matrix_conv = nn.Conv2d(c, 4, 5, padding=2)
        self.translation_conv = nn.Conv2d(c, 2, 5, padding=2)
        self.adapt_conv = DeformConv2d(c, c, 3, padding=1, groups=c, bias=False, backend=backend)
        taps_y, taps_x = torch.meshgrid(torch.arange(-1.0, 2.0), torch.arange(-1.0, 2.0), indexing="ij")
        self.register_buffer("regular_matrix", torch.stack((taps_y.flatten(), taps_x.flatten())))  # (2, 9)

    def _check_features(self, x: Tensor, guide: Tensor) -> None:
        for name, tensor in (("x", x), ("guide", guide)):
            if not isinstance(tensor, Tensor) or tensor.dim() != 4 or tensor.shape[1] != self.channels:
                shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
                raise ValueError(f"expected {name} of shape (B, {self.channels}, H, W), got {shape}")
        if x.shape != guide.shape:
            raise ValueError(f"expected x and guide of the same shape, got {tuple(x.shape)} and {tuple(guide.shape)}")

    def offsets(self, x: Tensor, guide: Tensor) -> Tensor:
        """Estimated offsets Δ = A·G − G + b (B, 18, H, W), (Δy_k, Δx_k) interleaved; no dropout."""
        self._check_features(x, guide)
        batch, _, height, width = x.shape
        features = self.concat2(self.concat(torch.cat((x, guide), dim=1)))
        matrix = self.transform_matrix_conv(features).view(batch, 2, 2, height, width)
        translation = self.translation_conv(features).view(batch, 1, 2, height, width)
        grid = self.regular_matrix.to(matrix.dtype)  # (2, K)
        positions = torch.einsum("bijhw,jk->bkihw", matrix, grid) + translation  # (B, K, 2, H, W): A·G_k + b
        return (positions - grid.t()[None, :, :, None, None]).flatten(1, 2)

    def centre_offsets(self) -> Tensor:
        """Offsets −G (1, 18, 1, 1) that make every tap sample the centre pixel."""
        return -self.regular_matrix.t().reshape(1, -1, 1, 1)

    def forward(self, x: Tensor, guide: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x, guide (B, C, H, W) → (B, C, H, W); ``generator`` drives the training-time offset dropout."""
        self._check_features(x, guide)
        if not self.training and self.collapse_at_test:
            kernel = self.adapt_conv.weight.sum(dim=(2, 3), keepdim=True)  # (C, 1, 1, 1)
            return F.leaky_relu(F.conv2d(x, kernel, groups=self.channels), 0.2)
        offset = self.offsets(x, guide)
        if self.training and self.dropout > 0:
            if generator is not None and generator.device.type != x.device.type:
                raise ValueError(
                    f"expected a generator on the features' device {x.device}, got one on {generator.device}"
                )
            drop = torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device) < self.dropout
            offset = torch.where(drop, self.centre_offsets().to(offset.dtype), offset)
        return F.leaky_relu(self.adapt_conv(x, offset), 0.2)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, dropout={self.dropout}, collapse_at_test={self.collapse_at_test}"
