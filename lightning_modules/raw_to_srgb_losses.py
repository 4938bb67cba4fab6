"""Losses of RAW-to-sRGB joint learning (Zhang et al., ICCV 2021, §3.4; reference ``raw_to_srgb.md`` §3).

Every term compares an image (B, 3, H, W) with the target warped onto it, y^w (B, 3, H, W), under the
validity mask m (B, 1, H, W) ∈ {0, 1} of :func:`ops.warp.backward_warp` (y^w is already 0 where m = 0):

* :func:`masked_l1` (paper Eqs. 5 and 7, first term), ``reduction``:
  ``"mask"`` (default): Σ m·|x − y^w| / (C·Σ m), the mean over the valid pixels only;
  ``"official"``: mean(|m·x − m·y^w|) over *all* pixels (``nn.L1Loss`` on masked images), so masked-out
  pixels count as zero error and the value shrinks with the valid area (reference §3, §6.7).
* :class:`PerceptualLoss` (Eq. 7, second term), VGG-19 features φ_l (:class:`ops.VGG19Features`):
  ``"paper"``: Σ_l w_l · Σ m_l·|φ_l(m·x) − φ_l(y^w)| / (C_l·Σ m_l), the mask applied in feature space as
  Eq. 7 writes it, m_l = the min-pooled mask at layer l's stride (a feature pixel counts when its whole
  stride × stride block is valid);
  ``"official"``: Σ_l w_l · mean|φ_l(↓(m·x)) − φ_l(↓y^w)|, ↓ = bilinear ×0.5 (align_corners=False), the mask
  applied in image space only (``models/losses.py:L164-181``; the official layer is relu5_4 alone).
* :func:`ssim_loss` (official only, weight 0.15, not in the paper): 1 − mean SSIM map, Gaussian window
  11×11, σ = 1.5, zero padding 5, C₁ = 0.01², C₂ = 0.03² (``models/losses.py:L11-85``).
* :func:`lsgan_generator_loss` / :func:`lsgan_discriminator_loss` (Eqs. 8, 9, LSGAN):
  L_G = ½·mean((D(m·ŷ) − 1)²) (``form="paper"``) or mean((D(m·ŷ) − 1)²) (``"official"``, no ½);
  L_D = ½·[mean((D(y^w) − 1)²) + mean(D(m·ŷ)²)] in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ops import VGG19_STRIDES, VGG19Features

__all__ = [
    "LossReduction",
    "PerceptualVariant",
    "masked_l1",
    "ssim_loss",
    "PerceptualLoss",
    "lsgan_generator_loss",
    "lsgan_discriminator_loss",
]

LossReduction = Literal["mask", "official"]
PerceptualVariant = Literal["paper", "official"]

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2


def _check_masked_pair(image: Tensor, target: Tensor, mask: Tensor) -> None:
    if image.dim() != 4 or image.shape != target.shape:
        raise ValueError(
            f"expected image and target of one shape (B, C, H, W), got {tuple(image.shape)} and {tuple(target.shape)}"
        )
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != image.shape[0] or mask.shape[-2:] != image.shape[-2:]:
        expected = (image.shape[0], 1, *image.shape[-2:])
        raise ValueError(f"expected a mask (B, 1, H, W) = {expected}, got {tuple(mask.shape)}")


def masked_l1(image: Tensor, target: Tensor, mask: Tensor, reduction: LossReduction = "mask") -> Tensor:
    """Masked ℓ1 (module docstring): ``"mask"`` Σ m·|x − y|/(C·Σ m) (0 when no pixel is valid), ``"official"``
    mean(|m·x − m·y|). ``image``, ``target`` (B, C, H, W), ``mask`` (B, 1, H, W) → scalar."""
    _check_masked_pair(image, target, mask)
    mask = mask.to(image.dtype)
    difference = (image - target).abs() * mask
    if reduction == "official":
        return difference.mean()
    if reduction != "mask":
        raise ValueError(f"reduction must be 'mask' or 'official', got {reduction!r}")
    area = mask.sum() * image.shape[1]
    return difference.sum() / area.clamp_min(1.0)


@lru_cache(maxsize=16)
def _gaussian_window(channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The depthwise 11×11 Gaussian window (σ 1.5, sums to 1): (C, 1, 11, 11), built once per (C, dtype, device)
    (every training step would otherwise copy it to the device); read-only."""
    coords = torch.arange(_SSIM_WINDOW, dtype=torch.float64) - _SSIM_WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * _SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).to(dtype=dtype, device=device).expand(channels, 1, -1, -1).contiguous()


def ssim_loss(image: Tensor, target: Tensor) -> Tensor:
    """1 − mean SSIM of (B, C, H, W) images in [0, 1] (the official ``SSIMLoss``; module docstring):

    SSIM = (2μ_xμ_y + C₁)(2σ_xy + C₂) / ((μ_x² + μ_y² + C₁)(σ_x² + σ_y² + C₂)), μ, σ by the Gaussian window with
    zero padding, so the map has the image's size and its border sees the zeros.
    """
    if image.dim() != 4 or image.shape != target.shape:
        raise ValueError(f"expected two images of one shape (B, C, H, W), got {tuple(image.shape)} and {tuple(target.shape)}")
    channels = image.shape[1]
    window = _gaussian_window(channels, image.dtype, image.device)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, window, padding=_SSIM_WINDOW // 2, groups=channels)

    mu_x, mu_y = blur(image), blur(target)
    var_x = blur(image * image) - mu_x**2
    var_y = blur(target * target) - mu_y**2
    cov = blur(image * target) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    return 1.0 - ssim_map.mean()


class PerceptualLoss(nn.Module):
    """Masked VGG-19 perceptual loss (module docstring), a frozen network in eval mode.

    Args:
        layers: {VGG-19 layer name (post-ReLU, e.g. ``"conv5_4"`` = relu5_4): weight}.
        variant: ``"paper"`` (mask in feature space, full resolution) or ``"official"`` (mask in image space,
            inputs bilinearly halved).

    ``forward(image, target, mask)``: (B, 3, H, W), (B, 3, H, W) with zeros where ``mask`` (B, 1, H, W) is 0 →
    scalar; gradients reach ``image`` only (the target's features are computed without grad).
    """

    def __init__(self, layers: Mapping[str, float], variant: PerceptualVariant = "paper") -> None:
        super().__init__()
        if not layers:
            raise ValueError("the perceptual loss needs at least one VGG-19 layer")
        if variant not in ("paper", "official"):
            raise ValueError(f"variant must be 'paper' or 'official', got {variant!r}")
        self.weights = {name: float(weight) for name, weight in layers.items()}
        self.variant = variant
        self.vgg = VGG19Features(layers=tuple(self.weights))

    def load_torchvision_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """ImageNet weights: a torchvision VGG-19 state dict (``features.*``)."""
        self.vgg.load_torchvision_state_dict(state)

    def forward(self, image: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        _check_masked_pair(image, target, mask)
        mask = mask.to(image.dtype)
        image = image * mask
        if self.variant == "official":
            image = F.interpolate(image, scale_factor=0.5, mode="bilinear", align_corners=False)
            target = F.interpolate(target, scale_factor=0.5, mode="bilinear", align_corners=False)
        features = self.vgg(image)
        with torch.no_grad():
            target_features = self.vgg(target)
        total = image.new_zeros(())
        for name, weight in self.weights.items():
            difference = (features[name] - target_features[name]).abs()
            if self.variant == "official":
                total = total + weight * difference.mean()
                continue
            stride = VGG19_STRIDES[name]
            layer_mask = -F.max_pool2d(-mask, stride, stride) if stride > 1 else mask
            layer_mask = layer_mask[..., : difference.shape[-2], : difference.shape[-1]]
            area = layer_mask.sum() * difference.shape[1]
            total = total + weight * (difference * layer_mask).sum() / area.clamp_min(1.0)
        return total

    def train(self, mode: bool = True) -> PerceptualLoss:
        """A fixed loss network: always in eval mode."""
        return super().train(False)

    def extra_repr(self) -> str:
        return f"layers={self.weights}, variant={self.variant!r}"


def lsgan_generator_loss(fake_logits: Tensor, form: Literal["paper", "official"] = "paper") -> Tensor:
    """LSGAN generator term (Eq. 8): ½·mean((D(fake) − 1)²) (``"paper"``) or mean((D(fake) − 1)²) (``"official"``)."""
    if form not in ("paper", "official"):
        raise ValueError(f"form must be 'paper' or 'official', got {form!r}")
    loss = (fake_logits - 1.0).square().mean()
    return 0.5 * loss if form == "paper" else loss


def lsgan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """LSGAN discriminator loss (Eq. 9): ½·[mean((D(real) − 1)²) + mean(D(fake)²)]."""
    return 0.5 * ((real_logits - 1.0).square().mean() + fake_logits.square().mean())
