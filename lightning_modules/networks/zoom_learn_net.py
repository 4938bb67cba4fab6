"""The zoom network of "Zoom to Learn, Learn to Zoom" (Zhang et al., CVPR 2019), reference §2.1.

Packed raw (B, 4, h, w) → RGB (B, 3, 2N·h, 2N·w) for zoom N:

    9×9 conv (4→64) + PReLU ─┬─ 16 × [4×4 conv → norm → PReLU → 3×3 conv → norm, + skip]
                             └──────────── 3×3 conv → norm ──────────────── + (global skip)
    → (log2 N + 1) × [3×3 conv (→256) → 3×3 transposed conv, stride 2 (256→256) → PReLU]
    → 9×9 conv (256→3), linear output

Details that make it match the official TensorFlow graph: the 4×4 stride-1 "SAME" conv pads 1 before
and 2 after; the stride-2 transposed conv is TF "SAME" (full transposed conv, keep output indices
0…2H−1); normalisation has no scale γ (only a shift β) and ε = 1e-3; PReLU slopes start at 0; weights
are Xavier-uniform and biases zero. With these defaults the network has exactly 3,679,939 / 4,860,355 /
6,040,771 trainable parameters for zoom 2 / 4 / 8.

Options outside the paper, for CPU-sized demos and ablations (the defaults are the paper's network):
``norm="none"`` keeps only the shift β; ``head_kernel`` sets the head's kernel size (9 in the paper: on
16×16 demo crops a 9×9 head sees zero padding over half the crop); ``upsampler="pixel_shuffle"``
replaces the transposed-conv stages and the 9×9 tail, which run at output resolution and take most
of the FLOPs, by one 3×3 conv to 3·(2N)² channels and a sub-pixel shuffle (Shi et al. 2016);
``raw_skip=True`` adds the bilinear, gamma-encoded RGB preview of the packed raw
(:func:`~ops.bayer.packed_to_rgb_preview`) to the output, so the network learns a residual.

Normalisation (``norm``): ``"batch"`` is BatchNorm (batch statistics in training, running statistics
in evaluation, so tiled inference is tile-invariant). The official code always used batch statistics,
also at inference, which makes outputs depend on the tile; we do not reproduce that. ``"instance"``
normalises each image on its own; it has the same parameter count. ``"instance_affine"`` is PyTorch's
``InstanceNorm2d(affine=True)`` (scale γ and shift β, ε = 1e-5): 64 more parameters per norm layer.

The SR-RAW backbone ("SRResNet") of RAW-to-sRGB (Zhang et al., ICCV 2021; ``raw_to_srgb.md`` §1.4) is
this network with ``norm="instance_affine", deconv_padding="torch", init="torch"`` (see
:data:`RAW_TO_SRGB_BACKBONE`): its transposed convs use ``padding=1, output_padding=1`` (output indices
1…2H of the full transposed conv, one pixel off TF's 0…2H−1), and it keeps PyTorch's default
initialisation (PReLU slopes 0.25). Its ``--scale`` 1 / 2 / 4 is ``zoom`` 1 / 2 / 4 (1 / 2 / 3 upsampling
stages, output 2 / 4 / 8 × the packed input), with 2,501,635 / 3,682,051 / 4,862,467 parameters.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ops.bayer import packed_to_rgb_preview

__all__ = ["RAW_TO_SRGB_BACKBONE", "ZoomLearnNet"]

Norm = Literal["batch", "instance", "instance_affine", "none"]
Upsampler = Literal["deconv", "pixel_shuffle"]
DeconvPadding = Literal["tf", "torch"]
Init = Literal["tf_slim", "torch"]

#: Options that make :class:`ZoomLearnNet` the official RAW-to-sRGB SR-RAW backbone (``SRResNet``).
RAW_TO_SRGB_BACKBONE = MappingProxyType({"norm": "instance_affine", "deconv_padding": "torch", "init": "torch"})


class ShiftOnlyNorm(nn.Module):
    """Normalisation without a learnable scale: norm(x) + β (TF's ``batch_norm(scale=False)``); with
    ``kind="none"`` only the shift x + β."""

    def __init__(self, channels: int, kind: Norm, eps: float = 1e-3, momentum: float = 0.1) -> None:
        super().__init__()
        if kind == "batch":
            self.norm: nn.Module = nn.BatchNorm2d(channels, eps=eps, momentum=momentum, affine=False)
        elif kind == "instance":
            self.norm = nn.InstanceNorm2d(channels, eps=eps, affine=False)
        elif kind == "none":
            self.norm = nn.Identity()
        else:
            raise ValueError(f"norm must be 'batch', 'instance', 'instance_affine' or 'none', got {kind!r}")
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x) + self.beta.view(1, -1, 1, 1)


def make_norm(channels: int, kind: Norm) -> nn.Module:
    """``InstanceNorm2d(affine=True)`` for ``"instance_affine"``, else :class:`ShiftOnlyNorm`."""
    if kind == "instance_affine":
        return nn.InstanceNorm2d(channels, affine=True)
    return ShiftOnlyNorm(channels, kind)


def make_deconv(channels: int, padding: DeconvPadding) -> nn.ConvTranspose2d:
    """3×3 stride-2 transposed conv (H, W) → (2H, 2W): TF "SAME" indices 0…2H−1 (``"tf"``) or PyTorch's
    ``padding=1, output_padding=1``, indices 1…2H of the full transposed conv (``"torch"``)."""
    if padding == "tf":
        return SameTransposedConv2x(channels)
    if padding == "torch":
        return nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1)
    raise ValueError(f"deconv_padding must be 'tf' or 'torch', got {padding!r}")


class SamePadConv4x4(nn.Conv2d):
    """4×4 stride-1 convolution with TF "SAME" padding: 1 pixel before, 2 after (no bias)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, kernel_size=4, padding=0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (1, 2, 1, 2)))


class SameTransposedConv2x(nn.ConvTranspose2d):
    """3×3 stride-2 transposed convolution with TF "SAME" output: (H, W) → (2H, 2W).

    PyTorch's full transposed conv gives 2H+1 rows; TF keeps indices 0…2H−1, so the last row and
    column are dropped (``padding=1, output_padding=1`` would keep 1…2H instead: a 1-px shift).
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        h, w = x.shape[-2:]
        return super().forward(x)[..., : 2 * h, : 2 * w]


class ResidualBlock(nn.Module):
    """x + norm(conv3×3(PReLU(norm(conv4×4(x)))))."""

    def __init__(self, channels: int, norm: Norm, prelu_init: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            SamePadConv4x4(channels),
            make_norm(channels, norm),
            nn.PReLU(channels, init=prelu_init),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            make_norm(channels, norm),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ZoomLearnNet(nn.Module):
    """SRResNet-style zoom network (reference §2.1).

    Args:
        zoom: Zoom factor N (a power of two); the output is 2N × the packed input size.
        in_channels: Input channels (4 for packed raw, 12 for space-to-depth RGB).
        out_channels: Output channels (3, RGB).
        width: Channels of the residual trunk (64).
        num_blocks: Residual blocks (16).
        up_width: Channels of the transposed-conv upsampling stages (256).
        norm: ``"batch"`` (default, paper), ``"instance"``, ``"instance_affine"`` (RAW-to-sRGB) or ``"none"``.
        head_kernel: Kernel size of the head conv (9, paper).
        upsampler: ``"deconv"`` (paper) or ``"pixel_shuffle"`` (module docstring).
        raw_skip: Add the packed raw's RGB preview to the output (needs packed raw, ``in_channels=4``).
        deconv_padding: ``"tf"`` (paper, TF "SAME") or ``"torch"`` (RAW-to-sRGB); see :func:`make_deconv`.
        init: ``"tf_slim"`` (paper: Xavier-uniform, zero biases, PReLU slopes 0) or ``"torch"`` (PyTorch's
            defaults, PReLU slopes 0.25: RAW-to-sRGB).

    Shapes: (B, in_channels, h, w) → (B, out_channels, 2N·h, 2N·w).
    """

    def __init__(
        self,
        zoom: int = 4,
        in_channels: int = 4,
        out_channels: int = 3,
        width: int = 64,
        num_blocks: int = 16,
        up_width: int = 256,
        norm: Norm = "batch",
        head_kernel: int = 9,
        upsampler: Upsampler = "deconv",
        raw_skip: bool = False,
        deconv_padding: DeconvPadding = "tf",
        init: Init = "tf_slim",
    ) -> None:
        super().__init__()
        if init not in ("tf_slim", "torch"):
            raise ValueError(f"init must be 'tf_slim' or 'torch', got {init!r}")
        if deconv_padding not in ("tf", "torch"):
            raise ValueError(f"deconv_padding must be 'tf' or 'torch', got {deconv_padding!r}")
        prelu_init = 0.0 if init == "tf_slim" else 0.25
        if zoom < 1 or zoom & (zoom - 1):
            raise ValueError(f"zoom must be a power of two, got {zoom}")
        if head_kernel < 1 or head_kernel % 2 == 0:
            raise ValueError(f"head_kernel must be a positive odd number, got {head_kernel}")
        if raw_skip and in_channels != 4:
            raise ValueError(f"raw_skip needs packed raw input (in_channels=4), got in_channels={in_channels}")
        self.zoom = zoom
        self.in_channels = in_channels
        self.raw_skip = raw_skip
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, width, head_kernel, padding=head_kernel // 2), nn.PReLU(width, init=prelu_init)
        )
        self.trunk = nn.Sequential(
            *(ResidualBlock(width, norm, prelu_init) for _ in range(num_blocks)),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            make_norm(width, norm),
        )
        if upsampler == "deconv":
            stages = []
            channels = width
            for _ in range(int(math.log2(zoom)) + 1):
                stages += [
                    nn.Conv2d(channels, up_width, 3, padding=1),
                    make_deconv(up_width, deconv_padding),
                    nn.PReLU(up_width, init=prelu_init),
                ]
                channels = up_width
            self.upsample = nn.Sequential(*stages)
            self.tail: nn.Module = nn.Conv2d(up_width, out_channels, 9, padding=4)
        elif upsampler == "pixel_shuffle":
            self.upsample = nn.Sequential(
                nn.Conv2d(width, out_channels * (2 * zoom) ** 2, 3, padding=1), nn.PixelShuffle(2 * zoom)
            )
            self.tail = nn.Identity()
        else:
            raise ValueError(f"upsampler must be 'deconv' or 'pixel_shuffle', got {upsampler!r}")
        if init == "tf_slim":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases (TF-slim's defaults)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, h, w), got {tuple(x.shape)}")
        features = self.head(x)
        features = features + self.trunk(features)
        out = self.tail(self.upsample(features))
        if self.raw_skip:
            out = out + packed_to_rgb_preview(x, scale=2 * self.zoom).to(out.dtype)
        return out
