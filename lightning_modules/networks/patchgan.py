"""PatchGAN discriminator of LiteISPGAN ("Learning RAW-to-sRGB Mappings with Inaccurately Aligned
Supervision", Zhang et al., ICCV 2021; reference ``raw_to_srgb.md`` §1.3): the pix2pix / CycleGAN
``NLayerDiscriminator`` with 3 layers, 64 base channels and BatchNorm.

    conv4×4 s2 (3→64, bias) → LReLU(0.2)
    num_layers − 1 × [conv4×4 s2 (no bias) → BN → LReLU(0.2)]       64→128→256
    conv4×4 s1 (256→512, no bias) → BN → LReLU(0.2)
    conv4×4 s1 (512→1, bias)                                          logit map, no BN, no activation

Every conv has padding 1, so each stride-2 conv maps H → H/2 and each stride-1 conv H → H − 1: a 448²
image gives a 54 × 54 map of logits, each seeing a 70 × 70 patch. 2,765,633 parameters. Initialisation:
PyTorch's defaults (the official code does not apply CycleGAN's N(0, 0.02)). The official Table C lists BN
and LReLU after the last conv; the code has neither.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PatchGANDiscriminator"]


class PatchGANDiscriminator(nn.Module):
    """N-layer PatchGAN discriminator (module docstring).

    Args:
        in_channels: Image channels (3).
        width: Channels of the first conv, doubled per layer up to 8 × width (64).
        num_layers: Stride-2 convs (3).

    Shapes: (B, in_channels, H, W) → logits (B, 1, H/2^num_layers − 2, W/2^num_layers − 2) for H, W
    multiples of 2^num_layers (54 × 54 for 448², num_layers = 3).
    """

    def __init__(self, in_channels: int = 3, width: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = width
        for layer in range(1, num_layers + 1):
            out = width * min(2**layer, 8)
            stride = 2 if layer < num_layers else 1
            layers += [
                nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, image: Tensor) -> Tensor:
        if image.dim() != 4 or not image.is_floating_point():
            raise ValueError(f"expected a floating-point image (B, C, H, W), got {image.dtype} {tuple(image.shape)}")
        return self.model(image)
