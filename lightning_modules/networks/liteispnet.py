"""LiteISPNet of "Learning RAW-to-sRGB Mappings with Inaccurately Aligned Supervision" (Zhang et al., ICCV
2021, Table B; reference ``raw_to_srgb.md`` §1.2), in the configuration of the released code and weights.

A packed raw (B, 4, h, w) → sRGB (B, 3, 2h, 2w); a U-Net whose down / up sampling is a Haar DWT / IWT:

    x  = packed^(1/2.2)                                        gamma inside the network (official)
    h  = conv(x)                                               64 × h × w
    hc = [h, τ]                                                66: τ the [−1, 1] coordinate map of (h, w)
    d1 = DWT(conv(RG(conv(hc))))                               66→66, RG(66), 66→64:  256 × h/2
    d2 = DWT(RG(conv(d1)))                                     256→64, RG(64):        256 × h/4
    d3 = DWT(RG(conv(d2)))                                     256→128, RG(128):      512 × h/8
    m  = conv(RG(RG(conv(d3)))) + d3                           512→128, 2 RG(128), 128→512
    u3 = conv(RG(IWT(m))) + d2;  u2 = conv(RG(IWT(u3))) + d1;  u1 = conv(RG(IWT(u2))) + h
    y  = conv(PixelShuffle₂(conv(u1)))                         64→256, ×2, 64→3; no activation, no clamp

All convs are 3×3 with padding 1 and a bias. RG (residual group) = x + conv(RCAB^nb(x)); RCAB = x +
CA(conv(ReLU(conv(x)))); CA (channel attention) = x · σ(conv1×1(ReLU(conv1×1(avgpool(x))))) with a
C → C/16 → C bottleneck. The DWT / IWT are :class:`ops.wavelet.HaarDWT` / :class:`~ops.wavelet.HaarIWT`:
their sub-band order (LL, top − bottom, left − right, diagonal; interleaved per input channel) and ±½
orthonormal filters are exactly the official ``DWTForward`` / ``DWTInverse``, but the filters are
buffers, not frozen parameters, so they are in neither ``parameters()`` nor state dicts (the official
count carries 8,192 frozen filter values on top of ours).

Trainable parameters: 9,039,623 with the released ``nb = 4`` (official total 9,047,815 incl. the
filters); nb = 2 / 8 / 20 give 6,055,915 / 15,007,039 / 32,909,287 (official 6,064,107 / 15,015,231 /
32,917,479). The released scripts pass ``--pre_ispnet_coord False``: τ is the fixed [−1, 1] grid, not
PreCoord's regressed offset (the paper's 11.9 M count includes PreCoord, which is not implemented).
``coord=False`` gives the paper's Table B layout: no τ, the head conv feeds the first RG directly
(d1 = DWT(RG(h))), 8,941,123 parameters; no weights were released for it.

Packed channel order: the network is agnostic, its weights are not. The official ZRR loader (and the ZRR
DataModule by default) packs (B, G1, R, G2), :mod:`ops.bayer` packs (R, G1, B, G2); the checkpoint converter's
``packing`` option permutes the head conv's input channels for the latter. Module names are the official
ones (``head``, ``down1`` … ``tail``, ``rg``, ``res``, ``ca.conv_du``), so the official keys map one to one
(:func:`lightning_modules.checkpoints.liteispnet_state_from_official`). Initialisation: PyTorch's defaults,
as the official code (it never calls its ``init_weights``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_modules.networks.gcm import coordinate_map
from ops.bayer import gamma_compress
from ops.wavelet import HaarDWT, HaarIWT

__all__ = ["ChannelAttention", "DWT", "IWT", "LiteISPNet", "RCAB", "ResidualGroup"]


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class ChannelAttention(nn.Module):
    """x · σ(W₂ ReLU(W₁ avgpool(x))), W₁: C → C/reduction, W₂: C/reduction → C (1×1 convs with bias)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    """Residual channel-attention block: x + CA(conv3×3(ReLU(conv3×3(x)))), no residual scaling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.res = nn.Sequential(conv3x3(channels, channels), nn.ReLU(inplace=True), conv3x3(channels, channels))
        self.ca = ChannelAttention(channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.ca(self.res(x))


class ResidualGroup(nn.Module):
    """x + conv3×3(RCAB^num_blocks(x))."""

    def __init__(self, channels: int, num_blocks: int) -> None:
        super().__init__()
        self.rg = nn.Sequential(*(RCAB(channels) for _ in range(num_blocks)), conv3x3(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.rg(x)


class DWT(HaarDWT):
    """Haar DWT of ``channels`` channels: (B, C, H, W) → (B, 4C, H/2, W/2); the filters are a buffer."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class IWT(HaarIWT):
    """Inverse Haar DWT to ``channels`` channels: (B, 4C, H/2, W/2) → (B, C, H, W); the filters are a buffer."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class LiteISPNet(nn.Module):
    """LiteISPNet as released (module docstring).

    Args:
        num_blocks: RCABs per residual group (4 released; the paper's Table 5 ablates 2 / 8 / 20).
        coord: Concatenate the [−1, 1] coordinate map after the head conv (released: True; False: Table B).

    Shapes: packed raw (B, 4, h, w), linear in [0, 1], h and w multiples of 8 → sRGB (B, 3, 2h, 2w).
    """

    def __init__(self, num_blocks: int = 4, coord: bool = True) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be at least 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self.coord = coord
        ch1, ch2, ch3 = 64, 128, 128
        self.head = conv3x3(4, ch1)
        if coord:
            self.down1 = nn.Sequential(
                conv3x3(ch1 + 2, ch1 + 2), ResidualGroup(ch1 + 2, num_blocks), conv3x3(ch1 + 2, ch1), DWT(ch1)
            )
        else:
            self.down1 = nn.Sequential(ResidualGroup(ch1, num_blocks), DWT(ch1))
        self.down2 = nn.Sequential(conv3x3(4 * ch1, ch1), ResidualGroup(ch1, num_blocks), DWT(ch1))
        self.down3 = nn.Sequential(conv3x3(4 * ch1, ch2), ResidualGroup(ch2, num_blocks), DWT(ch2))
        self.middle = nn.Sequential(
            conv3x3(4 * ch2, ch3),
            ResidualGroup(ch3, num_blocks),
            ResidualGroup(ch3, num_blocks),
            conv3x3(ch3, 4 * ch2),
        )
        self.up3 = nn.Sequential(IWT(ch2), ResidualGroup(ch2, num_blocks), conv3x3(ch2, 4 * ch1))
        self.up2 = nn.Sequential(IWT(ch1), ResidualGroup(ch1, num_blocks), conv3x3(ch1, 4 * ch1))
        self.up1 = nn.Sequential(IWT(ch1), ResidualGroup(ch1, num_blocks), conv3x3(ch1, ch1))
        self.tail = nn.Sequential(conv3x3(ch1, 4 * ch1), nn.PixelShuffle(2), conv3x3(ch1, 3))

    def forward(self, packed: Tensor) -> Tensor:
        if packed.dim() != 4 or packed.shape[1] != 4 or not packed.is_floating_point():
            raise ValueError(f"expected a float packed raw (B, 4, h, w), got {packed.dtype} {tuple(packed.shape)}")
        batch, _, height, width = packed.shape
        if height % 8 or width % 8:
            raise ValueError(f"LiteISPNet needs h and w divisible by 8 (three DWTs), got {height}×{width}")
        h = self.head(gamma_compress(packed))
        if self.coord:
            tau = coordinate_map(height, width, h.dtype, h.device).expand(batch, -1, -1, -1)
            d1 = self.down1(torch.cat((h, tau), dim=1))
        else:
            d1 = self.down1(h)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        m = self.middle(d3) + d3
        u3 = self.up3(m) + d2
        u2 = self.up2(u3) + d1
        u1 = self.up1(u2) + h
        return self.tail(u1)
