"""The metric protocols shared by rawzoom's LightningModules.

Every method is evaluated the same way: PSNR, SSIM and LPIPS of an image against a reference, both
(B, 3, H, W) in [0, 1], per image, averaged over the images of a stage, over the whole image or over a
region (a mask (B, 1, H, W), e.g. SelfDZSR's centre and corner regions):

* PSNR = 10·log10(1/MSE), the MSE over the region's pixels and channels (data range 1);
* SSIM: torchmetrics' SSIM map (Gaussian window 11×11, σ = 1.5, data range 1), averaged over the region;
* LPIPS-alex v0.1 (Zhang et al. 2018, the ``lpips`` package): the usual value for the whole image, the
  mean of its spatial map over a region. The lpips wheel ships the small linear calibration layers; the
  AlexNet backbone comes through ``pretrained`` (:mod:`lightning_modules.pretrained`). With
  ``pretrained=False`` the backbone is random, the value is *not* LPIPS, and it is logged as
  ``lpips_random_backbone`` (:func:`lpips_metric_name`).

A region's values are area-weighted: the official SelfDZSR protocol averages its corner SSIM and LPIPS
over four strips of very different sizes without weights (reference ``selfdzsr.md`` §5.3).

A *comparison* names what is compared, as the suffix of the logged key ``{stage}/{metric}{comparison}``:
e.g. ``""`` the model against the target as the data registered it, ``"_aligned"`` the model against the
target translation-searched to it (:func:`aligned_target`), ``"_bicubic"`` the bicubic baseline
(:func:`bicubic_baseline`) against the registered target.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import lpips
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.functional.image import structural_similarity_index_measure

from lightning_modules.pretrained import Pretrained, load_weights
from ops import translation_search

__all__ = [
    "build_lpips",
    "lpips_distance",
    "lpips_metric_name",
    "bicubic_baseline",
    "aligned_target",
    "center_crop",
    "psnr_per_image",
    "ssim_per_image",
    "ImageQualityMetrics",
]


def lpips_metric_name(pretrained: Pretrained) -> str:
    """``"lpips"`` with a real backbone, ``"lpips_random_backbone"`` otherwise."""
    return "lpips" if pretrained is not False else "lpips_random_backbone"


def build_lpips(pretrained: Pretrained) -> nn.Module:
    """Frozen LPIPS-alex in eval mode; the AlexNet backbone from ``pretrained`` (or random)."""
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    state = load_weights(pretrained, "alexnet")
    if state is not None:
        # lpips splits torchvision's `features` into slices that keep the original module indices.
        backbone = {}
        for slice_name, block in model.net.named_children():
            for index, _ in block.named_children():
                for param in ("weight", "bias"):
                    key = f"features.{index}.{param}"
                    if key in state:
                        backbone[f"{slice_name}.{index}.{param}"] = state[key]
        model.net.load_state_dict(backbone, strict=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _region_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Per-image mean (B,) of values (B, C, H, W), over a mask (B, 1, H, W) when given."""
    if mask is None:
        return values.flatten(1).mean(1)
    weights = mask.to(values.dtype).expand_as(values)
    return (values * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1)


def psnr_per_image(image: Tensor, reference: Tensor, mask: Tensor | None = None) -> Tensor:
    """10·log10(1/MSE) per image (B,), the MSE over the mask's pixels (and all channels)."""
    return -10 * torch.log10(_region_mean((image - reference).square(), mask).clamp_min(1e-12))


def ssim_per_image(image: Tensor, reference: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of the SSIM map per image (B,) (torchmetrics, Gaussian 11×11, σ 1.5, data range 1), over the mask."""
    _, ssim_map = structural_similarity_index_measure(image, reference, data_range=1.0, reduction="none", return_full_image=True)
    return _region_mean(ssim_map, mask)


def lpips_distance(model: nn.Module, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image LPIPS (B,) of images in [0, 1] (B, 3, H, W), computed in float32; over a mask, the mean of
    the spatial LPIPS map (lpips' ``spatial`` mode, its layers upsampled to the image size) there."""
    with torch.autocast(device_type=pred.device.type, enabled=False):
        if mask is None:
            return model(pred.float() * 2 - 1, target.float() * 2 - 1).flatten()
        model.spatial = True
        try:
            distance_map = model(pred.float() * 2 - 1, target.float() * 2 - 1)
        finally:
            model.spatial = False
        return _region_mean(distance_map, mask)


def bicubic_baseline(image: Tensor, scale: int) -> Tensor:
    """The bicubic baseline: ``image`` (B, 3, h, w) upsampled ``scale``× (pixel areas kept in place), clamped to [0, 1]."""
    return F.interpolate(image, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0.0, 1.0)


def center_crop(image: Tensor, size: Sequence[int]) -> Tensor:
    """Centre crop of (…, H, W) to ``size`` = (h, w)."""
    top = (image.shape[-2] - size[0]) // 2
    left = (image.shape[-1] - size[1]) // 2
    return image[..., top : top + size[0], left : left + size[1]]


def aligned_target(image: Tensor, target: Tensor) -> Tensor:
    """The window of ``target`` (B, 3, H + 2m, W + 2m) that best matches ``image`` (B, 3, H, W) in L1
    among all integer translations within the margin m (:func:`ops.translation_search`)."""
    return translation_search(image, target)[0]


class ImageQualityMetrics(nn.Module):
    """PSNR, SSIM and LPIPS accumulators for every (stage, comparison).

    Args:
        pretrained: Weights of LPIPS' AlexNet backbone (``False``: random, logged under another name).
        comparisons: The comparison suffixes this module logs (see the module docstring).
        stages: The stages that evaluate (``"val"``, ``"test"``).

    :meth:`build` creates the (frozen) LPIPS network, so that constructing the module reads no weights.
    """

    def __init__(
        self, pretrained: Pretrained, comparisons: Sequence[str], stages: Sequence[str] = ("val", "test")
    ) -> None:
        super().__init__()
        self.pretrained = pretrained
        self.lpips_name = lpips_metric_name(pretrained)
        self.names = ("psnr", "ssim", self.lpips_name)
        self.comparisons = tuple(comparisons)
        self.lpips_net: nn.Module | None = None
        self.accumulators = nn.ModuleDict()
        for stage in stages:
            for comparison in self.comparisons:
                for name in self.names:
                    self.accumulators[f"{stage}_{name}{comparison}"] = MeanMetric()

    def build(self) -> None:
        """Create the LPIPS network (once) on this module's device."""
        if self.lpips_net is None:
            device = next(iter(self.accumulators.values())).device
            self.lpips_net = build_lpips(self.pretrained).to(device)

    def goals(self, stage: str) -> dict[str, str]:
        """``{"{stage}/{metric}{comparison}": "max" | "min"}``: PSNR and SSIM are better higher, LPIPS lower."""
        return {
            f"{stage}/{name}{comparison}": "min" if name == self.lpips_name else "max"
            for name in self.names
            for comparison in self.comparisons
        }

    def measure(self, image: Tensor, reference: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """Per-image values {metric name: (B,)} of ``image`` against ``reference``, over ``mask`` when given."""
        if self.lpips_net is None:
            raise RuntimeError("LPIPS is created by build(): call it (the module's setup does) first")
        image, reference = image.float(), reference.float()
        return {
            "psnr": psnr_per_image(image, reference, mask),
            "ssim": ssim_per_image(image, reference, mask),
            self.lpips_name: lpips_distance(self.lpips_net, image, reference, mask),
        }

    def accumulate(self, stage: str, comparison: str, values: dict[str, Tensor]) -> dict[str, Metric]:
        """Add per-image values (from :meth:`measure`) to the accumulators; returns them by logged key, for
        ``LightningModule.log_dict``."""
        if comparison not in self.comparisons:
            raise ValueError(f"unknown comparison {comparison!r}; this module logs {self.comparisons}")
        logged: dict[str, Metric] = {}
        for name, per_image in values.items():
            metric = self.accumulators[f"{stage}_{name}{comparison}"]
            metric.update(per_image)
            logged[f"{stage}/{name}{comparison}"] = metric
        return logged

    def update(
        self, stage: str, comparison: str, image: Tensor, reference: Tensor, mask: Tensor | None = None
    ) -> dict[str, Metric]:
        """:meth:`measure` one batch (over ``mask`` (B, 1, H, W) when given) and :meth:`accumulate` it."""
        return self.accumulate(stage, comparison, self.measure(image, reference, mask))
