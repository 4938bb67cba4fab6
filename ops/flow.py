"""Dense optical flow behind one interface: PWC-Net, torchvision RAFT, and OpenCV DIS (weight-free).

Every backend is a :class:`FlowEstimator`: ``forward(first, second)`` takes two images (B, C, H, W)
and returns the flow (B, 2, H, W) in pixels of the inputs that maps pixels of ``first`` into ``second``:

    second(x + flow(x)) ≈ first(x),   flow[:, 0] = u (x / column displacement), flow[:, 1] = v (rows),

so ``ops.warp.backward_warp(second, flow)`` aligns ``second`` to ``first``. This is the convention of
RAW-to-sRGB (Zhang et al., ICCV 2021, Eqs. 3-4: Ψ = F(ỹ, y), y^w = W(y, Ψ)), of RAFT and of OpenCV.

Backends:

* :class:`PWCNet`: Sun et al., "PWC-Net", CVPR 2018, as ported by sniklaus (``pytorch-pwc``) and used
  by the official RAW-to-sRGB code (reference ``raw_to_srgb.md`` §1.5), with the pure-PyTorch cost
  volume of :mod:`ops.correlation`, so it runs on CPU too.
* :class:`RAFTFlow`: Teed & Deng, "RAFT", ECCV 2020, torchvision's ``raft_small`` / ``raft_large``.
* :class:`ClassicalFlow`: Kroeger et al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016,
  OpenCV's ``DISOpticalFlow`` on 8-bit grey images; no weights, not differentiable.

Weights come only from the caller, as a loaded state dict (files are resolved outside ``ops``, e.g. by
:mod:`lightning_modules.pretrained`); nothing is downloaded. The
learned backends are frozen by default (``requires_grad`` False, eval mode whatever ``train()`` asks);
gradients still flow to the input images through PWC-Net and RAFT. Run them under ``torch.no_grad()``
when only the flow is needed, as the official code does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.optical_flow import raft_large, raft_small

from ops.correlation import correlation
from ops.warp import Normalization, backward_warp

__all__ = [
    "FlowEstimator",
    "PWCNet",
    "RAFTFlow",
    "ClassicalFlow",
    "FlowKind",
    "build_flow_estimator",
    "pwcnet_state_dict_from_official",
]

log = logging.getLogger(__name__)

#: A weights argument: a loaded state dict, or None (random weights).
Weights = Mapping[str, Tensor] | None

FlowKind = Literal["classical", "pwcnet", "raft_small", "raft_large"]


def _check_state_dict(weights: object, what: str, source: str) -> Mapping[str, Tensor]:
    """``weights`` must be a loaded state dict (``ops`` reads no files)."""
    if not isinstance(weights, Mapping):
        raise ValueError(
            f"expected the {what} weights as a loaded state dict, got {type(weights).__name__}; load the file "
            f"(from {source}) with torch.load first"
        )
    return weights


class FlowEstimator(nn.Module):
    """Interface: ``forward(first, second)`` → flow (B, 2, H, W), ``second(x + flow(x)) ≈ first(x)``.

    ``first`` and ``second`` are float images of one shape (B, C, H, W), values in [0, 1], C in
    :attr:`channels`. Subclasses implement :meth:`estimate`; ``forward`` checks the inputs first.
    With ``frozen`` the parameters do not require grad and the module stays in eval mode.
    """

    #: Accepted channel counts.
    channels: tuple[int, ...] = (3,)
    #: Whether gradients flow from the flow back to the images.
    differentiable: bool = True

    def __init__(self, frozen: bool = True) -> None:
        super().__init__()
        self.frozen = frozen

    def _freeze_if_frozen(self) -> None:
        """Call at the end of a subclass constructor, once the parameters exist."""
        if self.frozen:
            self.requires_grad_(False)
            self.train(False)

    def train(self, mode: bool = True) -> FlowEstimator:
        """A frozen estimator stays in eval mode."""
        return super().train(mode and not self.frozen)

    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        if first.dim() != 4 or first.shape != second.shape:
            raise ValueError(
                f"expected two images of one shape (B, C, H, W), got {tuple(first.shape)} and {tuple(second.shape)}"
            )
        if first.shape[1] not in self.channels:
            raise ValueError(
                f"{type(self).__name__} expects {' or '.join(map(str, self.channels))} channels, got {first.shape[1]}"
            )
        if not first.is_floating_point() or first.dtype != second.dtype:
            raise ValueError(f"expected floating-point images of one dtype, got {first.dtype} and {second.dtype}")
        return self.estimate(first, second)

    def estimate(self, first: Tensor, second: Tensor) -> Tensor:
        """The flow (B, 2, H, W) for checked inputs."""
        raise NotImplementedError


# --------------------------------------------------------------------------------------------------
# PWC-Net
# --------------------------------------------------------------------------------------------------

#: Attribute names of sniklaus' port, one per pyramid level 1…6 (``network-default.pytorch`` keys).
_LEVEL_NAMES = ("netOne", "netTwo", "netThr", "netFou", "netFiv", "netSix")
_PYRAMID_WIDTHS = (16, 32, 64, 96, 128, 196)
_DENSE_WIDTHS = (128, 128, 96, 64, 32)
_COST_CHANNELS = 81  # (2·4 + 1)² displacements
_FLOW_SCALE = 20.0  # the network predicts flow / 20


def _conv(in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation)


def _leaky() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.1)


def _decoder_input_channels(level: int) -> int:
    """Channels entering a decoder: cost volume, plus features, up-sampled flow and features below 6."""
    return _COST_CHANNELS if level == 6 else _COST_CHANNELS + _PYRAMID_WIDTHS[level - 1] + 2 + 2


class _PWCExtractor(nn.Module):
    """Feature pyramid: per level a stride-2 conv and two convs (3×3, LeakyReLU 0.1); 1/2 … 1/64 size."""

    def __init__(self) -> None:
        super().__init__()
        for name, cin, cout in zip(_LEVEL_NAMES, (3, *_PYRAMID_WIDTHS[:-1]), _PYRAMID_WIDTHS):
            layers = [_conv(cin, cout, stride=2), _leaky(), _conv(cout, cout), _leaky(), _conv(cout, cout), _leaky()]
            setattr(self, name, nn.Sequential(*layers))

    def forward(self, image: Tensor) -> list[Tensor]:
        features = []
        for name in _LEVEL_NAMES:
            image = getattr(self, name)(image)
            features.append(image)
        return features


class _PWCDecoder(nn.Module):
    """Flow estimator of one level l (6 … 2): cost volume + DenseNet-style convs → flow at 1/2^l size.

    Below level 6 it first up-samples the coarser flow and features (4×4 transposed convs,
    ``netUpflow``/``netUpfeat``) and warps the second features by the flow in level-l pixels,
    20/2^l · up-sampled flow (sniklaus' ``fltBackwarp``), with :func:`ops.warp.backward_warp` and its mask.
    Dense convs ``netOne`` … ``netFiv`` (128, 128, 96, 64, 32 channels, each output concatenated in
    front of its input), ``netSix`` predicts the flow (no activation).
    """

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        current = _decoder_input_channels(level)
        if level < 6:
            below = _decoder_input_channels(level + 1) + sum(_DENSE_WIDTHS)
            self.netUpflow = nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1)
            self.netUpfeat = nn.ConvTranspose2d(below, 2, 4, stride=2, padding=1)
        for name, width in zip(_LEVEL_NAMES, _DENSE_WIDTHS):
            setattr(self, name, nn.Sequential(_conv(current, width), _leaky()))
            current += width
        self.netSix = nn.Sequential(_conv(current, 2))

    def forward(
        self, first: Tensor, second: Tensor, coarser: tuple[Tensor, Tensor] | None, normalization: Normalization
    ) -> tuple[Tensor, Tensor]:
        if coarser is None:
            features = F.leaky_relu(correlation(first, second), 0.1)
        else:
            flow = self.netUpflow(coarser[0])
            upsampled = self.netUpfeat(coarser[1])
            warped, _ = backward_warp(second, flow * (_FLOW_SCALE / 2**self.level), normalization=normalization)
            volume = F.leaky_relu(correlation(first, warped), 0.1)
            features = torch.cat((volume, first, flow, upsampled), dim=1)
        for name in _LEVEL_NAMES[:5]:
            features = torch.cat((getattr(self, name)(features), features), dim=1)
        return self.netSix(features), features


class _PWCRefiner(nn.Module):
    """Context network: 3×3 convs with dilations 1, 2, 4, 8, 16, 1, 1 (128, 128, 128, 96, 64, 32, 2 channels)."""

    def __init__(self) -> None:
        super().__init__()
        widths = (_decoder_input_channels(2) + sum(_DENSE_WIDTHS), 128, 128, 128, 96, 64, 32, 2)
        layers: list[nn.Module] = []
        for cin, cout, dilation in zip(widths[:-1], widths[1:], (1, 2, 4, 8, 16, 1, 1)):
            layers += [_conv(cin, cout, dilation=dilation), _leaky()]
        self.netMain = nn.Sequential(*layers[:-1])

    def forward(self, features: Tensor) -> Tensor:
        return self.netMain(features)


def pwcnet_state_dict_from_official(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Keys of sniklaus' ``network-default.pytorch`` → keys of :class:`PWCNet`.

    The file names its modules ``moduleExtractor.moduleOne.0.weight`` …; like the official RAW-to-sRGB
    code (``pwc/pwc_net.py``) every ``module`` becomes ``net`` (``netExtractor.netOne.0.weight``). A
    leading ``module.`` (a DataParallel wrapper) is dropped first. Keys already in ``net`` form pass.
    """
    mapped = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        mapped[key.replace("module", "net")] = value
    return mapped


class PWCNet(FlowEstimator):
    """PWC-Net as in sniklaus' port (9,374,274 parameters), with the RAW-to-sRGB ``estimate()`` protocol.

    Architecture: a 6-level feature pyramid (16/32/64/96/128/196 channels, three 3×3 convs per level,
    LeakyReLU 0.1); decoders at levels 6 … 2, each with the 81-channel cost volume (max displacement 4)
    of the first features against the warped second features and DenseNet-style convs; a dilated
    context refiner. Output: flow/20 at 1/4 of the input size.

    State-dict keys are those of sniklaus' ``network-default.pytorch`` after the official ``module`` →
    ``net`` renaming (``netExtractor.netOne…netSix``, decoders ``netTwo…netSix`` with ``netUpflow``,
    ``netUpfeat``, ``netOne…netSix``, ``netRefiner.netMain``), so that file loads strictly through
    :func:`pwcnet_state_dict_from_official`.

    ``forward`` (``models/base_model.py:L209-234``): resize both images (bilinear, align_corners=False)
    to H′×W′, the next multiples of 64; run the network; up-sample its output bilinearly to H×W;
    multiply by 20, u by W/W′ and v by H/H′.

    Args:
        weights: a loaded state dict in sniklaus' or this module's key format;
            None keeps random weights (tests only).
        channel_order: "rgb" feeds the images as given (what RAW-to-sRGB does, bit-compatible, the
            default); "bgr" flips the channels first (what the weights were trained with, sniklaus' run.py).
        warp_normalization: how the decoders warp the second features (:mod:`ops.warp`): "official"
            (the default, as sniklaus' current port and RAW-to-sRGB: f px move f·W/(W − 1) px) or "pixel"
            (exact).
        frozen: no gradients for the parameters, always in eval mode.
    """

    def __init__(
        self,
        weights: Weights = None,
        *,
        channel_order: Literal["rgb", "bgr"] = "rgb",
        warp_normalization: Normalization = "official",
        frozen: bool = True,
    ) -> None:
        super().__init__(frozen)
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"expected channel_order 'rgb' or 'bgr', got {channel_order!r}")
        if warp_normalization not in ("official", "pixel"):
            raise ValueError(f"expected warp_normalization 'official' or 'pixel', got {warp_normalization!r}")
        self.channel_order = channel_order
        self.warp_normalization = warp_normalization
        self.netExtractor = _PWCExtractor()
        for level in range(2, 7):
            setattr(self, _LEVEL_NAMES[level - 1], _PWCDecoder(level))
        self.netRefiner = _PWCRefiner()
        if weights is not None:
            state = _check_state_dict(
                weights, "PWC-Net", "http://content.sniklaus.com/github/pytorch-pwc/network-default.pytorch "
                "(the RAW-to-sRGB release ships it as ckpt/pwc-net.pth)",
            )
            self.load_state_dict(pwcnet_state_dict_from_official(state), strict=True)
        self._freeze_if_frozen()

    def network(self, first: Tensor, second: Tensor) -> Tensor:
        """The raw network: images (B, 3, H, W), H and W multiples of 64 → flow/20 (B, 2, H/4, W/4)."""
        pyramid_first, pyramid_second = self.netExtractor(first), self.netExtractor(second)
        estimate = None
        for level in range(6, 1, -1):
            decoder = getattr(self, _LEVEL_NAMES[level - 1])
            estimate = decoder(pyramid_first[level - 1], pyramid_second[level - 1], estimate, self.warp_normalization)
        flow, features = estimate
        return flow + self.netRefiner(features)

    def estimate(self, first: Tensor, second: Tensor) -> Tensor:
        if self.channel_order == "bgr":
            first, second = first.flip(1), second.flip(1)
        height, width = first.shape[-2:]
        size = (64 * math.ceil(height / 64), 64 * math.ceil(width / 64))
        if size != (height, width):
            first = F.interpolate(first, size=size, mode="bilinear", align_corners=False)
            second = F.interpolate(second, size=size, mode="bilinear", align_corners=False)
        flow = F.interpolate(self.network(first, second), size=(height, width), mode="bilinear", align_corners=False)
        scale = flow.new_tensor([width / size[1], height / size[0]]).view(1, 2, 1, 1)
        return flow * (_FLOW_SCALE * scale)

    def extra_repr(self) -> str:
        options = f"channel_order={self.channel_order!r}, warp_normalization={self.warp_normalization!r}"
        return f"{options}, frozen={self.frozen}"


# --------------------------------------------------------------------------------------------------
# RAFT (torchvision)
# --------------------------------------------------------------------------------------------------


class RAFTFlow(FlowEstimator):
    """torchvision RAFT (``raft_small``: 990,162 parameters, ``raft_large``: 5,257,536) as a :class:`FlowEstimator`.

    Images in [0, 1] are mapped to [−1, 1] (what torchvision's RAFT weights expect), padded by edge
    replication to multiples of 8 (split evenly between the sides) and the last of the
    ``num_flow_updates`` refinements is cropped back to H×W. Images need at least 128×128 pixels.

    Args:
        size: "small" or "large".
        weights: a loaded torchvision RAFT state dict (the file ``raft_small_C_T_V2-01064c6d.pth`` or
            ``raft_large_C_T_SKHT_V2-ff5fadd5.pth``); None keeps random weights (tests only). The constructors are called with
            ``weights=None``: nothing is downloaded.
        num_flow_updates: recurrent refinement steps (torchvision's default 12).
        frozen: no gradients for the parameters, always in eval mode.
    """

    def __init__(
        self, size: Literal["small", "large"] = "small", weights: Weights = None, *, num_flow_updates: int = 12,
        frozen: bool = True,
    ) -> None:
        super().__init__(frozen)
        if size not in ("small", "large"):
            raise ValueError(f"expected size 'small' or 'large', got {size!r}")
        if num_flow_updates < 1:
            raise ValueError(f"expected num_flow_updates ≥ 1, got {num_flow_updates}")
        self.size = size
        self.num_flow_updates = num_flow_updates
        self.net = raft_small(weights=None) if size == "small" else raft_large(weights=None)
        if weights is not None:
            name = "raft_small_C_T_V2-01064c6d.pth" if size == "small" else "raft_large_C_T_SKHT_V2-ff5fadd5.pth"
            state = _check_state_dict(weights, f"RAFT-{size}", f"https://download.pytorch.org/models/{name}")
            self.net.load_state_dict(state, strict=True)
        self._freeze_if_frozen()

    def estimate(self, first: Tensor, second: Tensor) -> Tensor:
        height, width = first.shape[-2:]
        pad_h, pad_w = -height % 8, -width % 8
        if min(height + pad_h, width + pad_w) < 128:
            raise ValueError(
                f"RAFT needs images of at least 128×128 (its correlation pyramid halves 1/8-size features "
                f"three times), got {height}×{width}"
            )
        padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        first, second = (F.pad(2 * image - 1, padding, mode="replicate") for image in (first, second))
        flow = self.net(first, second, num_flow_updates=self.num_flow_updates)[-1]
        return flow[:, :, padding[2] : padding[2] + height, padding[0] : padding[0] + width]

    def extra_repr(self) -> str:
        return f"size={self.size!r}, num_flow_updates={self.num_flow_updates}, frozen={self.frozen}"


# --------------------------------------------------------------------------------------------------
# Classical: OpenCV DIS
# --------------------------------------------------------------------------------------------------

_GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, RGB order
_DIS_MIN_SIDE = 16  # OpenCV 5.0's DIS segfaults on e.g. 12×40 or 14×40 images (measured); fine from 16 up


class ClassicalFlow(FlowEstimator):
    """OpenCV DIS optical flow on 8-bit grey images: weight-free, CPU, **not differentiable**.

    Per batch element: the images become grey (BT.601 luma of RGB, or the single channel), are
    stretched jointly from their common [min, max] to [0, 255] and rounded to uint8, moved to the CPU,
    and ``cv2.DISOpticalFlow`` computes the flow (its ``calc(first, second)`` has exactly this module's
    convention). The result returns to the input's device and dtype, detached.

    Args:
        preset: "medium" (OpenCV's ``DISOPTICAL_FLOW_PRESET_MEDIUM``: the finest level it computes is
            half resolution) or "fine" (the medium preset run down to full resolution, finest scale 0).
        scale: ≤ 1; below 1 the flow is computed on images resized by ``scale`` (area interpolation)
            and resized back (bilinear), u multiplied by W/w and v by H/h: faster and coarser.

    The size where DIS runs (H·scale × W·scale) must be at least 16×16.
    """

    channels = (1, 3)
    differentiable = False

    def __init__(self, preset: Literal["medium", "fine"] = "medium", scale: float = 1.0) -> None:
        super().__init__(frozen=True)
        if preset not in ("medium", "fine"):
            raise ValueError(f"expected preset 'medium' or 'fine', got {preset!r}")
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"expected 0 < scale ≤ 1, got {scale}")
        self.preset = preset
        self.scale = scale

    @staticmethod
    def _grey_pair(first: Tensor, second: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(C, H, W) float images → two (H, W) uint8 grey images on a common intensity scale."""
        if first.shape[0] == 3:
            weights = first.new_tensor(_GREY_WEIGHTS).view(3, 1, 1)
            first, second = (weights * first).sum(0), (weights * second).sum(0)
        else:
            first, second = first[0], second[0]
        low = torch.minimum(first.min(), second.min())
        span = torch.maximum(first.max(), second.max()) - low
        scale = 255 / torch.where(span > 0, span, torch.ones_like(span))
        first, second = (((image - low) * scale).round().clamp(0, 255).to(torch.uint8) for image in (first, second))
        return first.cpu().numpy(), second.cpu().numpy()

    def estimate(self, first: Tensor, second: Tensor) -> Tensor:
        height, width = first.shape[-2:]
        small = (round(width * self.scale), round(height * self.scale))  # cv2's (w, h)
        if min(small) < _DIS_MIN_SIDE:
            raise ValueError(
                f"DIS needs at least {_DIS_MIN_SIDE}×{_DIS_MIN_SIDE} pixels where it computes (OpenCV rejects or "
                f"crashes below), got {height}×{width} at scale {self.scale}: {small[1]}×{small[0]}"
            )
        import cv2  # OpenCV stays behind this backend (design.md)

        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        if self.preset == "fine":
            dis.setFinestScale(0)
        flows = []
        with torch.no_grad():
            for one, two in zip(first.detach().float(), second.detach().float()):
                grey_one, grey_two = self._grey_pair(one, two)
                if small != (width, height):
                    grey_one = cv2.resize(grey_one, small, interpolation=cv2.INTER_AREA)
                    grey_two = cv2.resize(grey_two, small, interpolation=cv2.INTER_AREA)
                flow = dis.calc(grey_one, grey_two, None)  # (h, w, 2) float32
                if small != (width, height):
                    flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
                    flow *= np.array([width / small[0], height / small[1]], dtype=np.float32)
                flows.append(torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1))
        return torch.stack(flows).to(device=first.device, dtype=first.dtype)

    def extra_repr(self) -> str:
        return f"preset={self.preset!r}, scale={self.scale}"


def build_flow_estimator(
    kind: FlowKind = "classical", weights: Weights = None, *, warn_random: bool = True, **options: Any
) -> FlowEstimator:
    """The estimator of ``kind``; learned backends frozen, with ``weights`` (a loaded state dict).

    ``options`` go to the backend's constructor (``preset``/``scale`` for "classical",
    ``channel_order``/``warp_normalization`` for "pwcnet", ``num_flow_updates`` for RAFT). "classical"
    takes no weights; a learned backend without weights runs with random weights, logged as a warning
    unless ``warn_random`` is False (for a caller that loads the weights later).
    """
    if kind == "classical":
        if weights is not None:
            raise ValueError("the classical (OpenCV DIS) flow takes no weights")
        return ClassicalFlow(**options)
    if kind not in ("pwcnet", "raft_small", "raft_large"):
        raise ValueError(f"expected kind 'classical', 'pwcnet', 'raft_small' or 'raft_large', got {kind!r}")
    if weights is None and warn_random:
        log.warning("%s optical flow runs with RANDOM weights: fine for tests, meaningless for alignment.", kind)
    if kind == "pwcnet":
        return PWCNet(weights, frozen=True, **options)
    return RAFTFlow(kind.removeprefix("raft_"), weights, frozen=True, **options)
