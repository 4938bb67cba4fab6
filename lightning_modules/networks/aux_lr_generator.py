"""SelfDZSR's auxiliary-LR generator (Zhang et al., ECCV 2022, §3.2, Fig. 3; the official ``KernelGen``).

Reference ``selfdzsr.md`` §1.2. From the GT / HR patch t (B, 3, s·h, s·w) and the real LR s_c (B, 3, h, w), both
in [0, 1], it produces an LR-sized image with the LR's content at the GT's positions:

    t' = PixelUnshuffle_s(MeanShift(−)(t))                                  (B, 3s², h, w)
    g = conv1×1(avgpool(conv3×3(ReLU(conv3×3(ReLU(conv3×3(
            ReLU(conv7×7_stride2_pad0([t', MeanShift(−)(s_c)]))))))))        (B, C, 1, 1), guide_net
    h0 = ReLU(conv1×1(t'));  x = h0·g + h0                                  global modulation
    x = ReLU(conv3×3(ReLU(conv5×5(ReLU(conv7×7(x))))))                     position-penalised kernels
    aux = MeanShift(+)(conv1×1(3 × [ReLU(conv1×1)](x) + h0))                (B, 3, h, w)

The spatial support on the LR grid is 13×13 LR pixels (7 + 5 + 3 − 2); only the 7/5/3 kernels move content
spatially, and they are what the position-preserving loss (:mod:`ops.position_loss`) constrains
(:meth:`AuxLRGenerator.position_kernels`). The noise n of the paper's Eq. 5 is added by the caller.

Differences from the official code: MeanShift constants are buffers (trainable parameters 630,915 at ×4, 515,715
at ×2; the official count 630,927 / 515,727 includes 12 frozen ones); the space-to-depth is ``nn.PixelUnshuffle``
(channel c·s² + dy·s + dx) where the official DownBlock uses (dy·s + dx)·3 + c — converted by
:mod:`lightning_modules.checkpoints`. The guide_net needs h, w ≥ 7 (its first conv is 7×7, stride 2, no padding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_modules.networks.selfdzsr_net import MeanShift, check_scale

__all__ = ["AuxLRGenerator"]


class AuxLRGenerator(nn.Module):
    """``forward(hr, lr)``: (B, 3, s·h, s·w), (B, 3, h, w) → aux-LR (B, 3, h, w); formula in the module docstring.

    Args:
        scale: 4 (DRealSR-Nikon) or 2 (CameraFusion).
        channels: feature channels C (64).

    Submodules carry the official key names (head, conv_7x7, conv_5x5, conv_3x3, conv_1x1, tail, guide_net).
    """

    def __init__(self, scale: int = 4, channels: int = 64) -> None:
        super().__init__()
        check_scale(scale)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"expected channels to be an int >= 1, got {channels!r}")
        self.scale, self.channels = scale, channels
        c, down_channels = channels, 3 * scale**2
        self.head_mean = MeanShift(-1)
        self.down = nn.PixelUnshuffle(scale)
        self.head = nn.Sequential(nn.Conv2d(down_channels, c, 1), nn.ReLU())
        self.conv_7x7 = nn.Sequential(nn.Conv2d(c, c, 7, padding=3), nn.ReLU())
        self.conv_5x5 = nn.Sequential(nn.Conv2d(c, c, 5, padding=2), nn.ReLU())
        self.conv_3x3 = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.conv_1x1 = nn.Sequential(*(layer for _ in range(3) for layer in (nn.Conv2d(c, c, 1), nn.ReLU())))
        self.tail = nn.Conv2d(c, 3, 1)
        self.guide_net = nn.Sequential(
            nn.Sequential(nn.Conv2d(down_channels + 3, c, 7, stride=2, padding=0), nn.ReLU()),
            nn.Sequential(
                nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                nn.Conv2d(c, c, 3, padding=1),
            ),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(c, c, 1),
        )
        self.tail_mean = MeanShift(1)

    def position_kernels(self) -> list[Tensor]:
        """The weights of conv_7x7, conv_5x5 and conv_3x3, (C, C, k, k) each: the position-preserving loss' input."""
        return [self.conv_7x7[0].weight, self.conv_5x5[0].weight, self.conv_3x3[0].weight]

    def forward(self, hr: Tensor, lr: Tensor) -> Tensor:
        for name, image in (("hr", hr), ("lr", lr)):
            if not isinstance(image, Tensor) or image.dim() != 4 or image.shape[1] != 3:
                shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise ValueError(f"expected {name} of shape (B, 3, H, W), got {shape}")
        batch, _, h, w = lr.shape
        if tuple(hr.shape) != (batch, 3, self.scale * h, self.scale * w) or min(h, w) < 7:
            raise ValueError(
                f"expected hr of shape (B, 3, {self.scale}·h, {self.scale}·w) for lr (B, 3, h, w) with h, w >= 7, "
                f"got hr {tuple(hr.shape)} and lr {tuple(lr.shape)}"
            )
        hr_down = self.down(self.head_mean(hr))
        guide = self.guide_net(torch.cat((hr_down, self.head_mean(lr)), dim=1))
        h0 = self.head(hr_down)
        x = self.conv_3x3(self.conv_5x5(self.conv_7x7(h0 * guide + h0)))
        return self.tail_mean(self.tail(self.conv_1x1(x) + h0))

    def extra_repr(self) -> str:
        return f"scale={self.scale}, channels={self.channels}"
