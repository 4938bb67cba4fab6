"""Converters between the official SelfDZSR checkpoints and this project's networks.

The official files (reference ``selfdzsr.md`` §2.2) are ``torch.save({'state_dict': OrderedDict})`` without a
``module.`` prefix: ``RefSR_model_*.pth`` (``SelfRefSR`` → :class:`SelfDZSRNet`), ``KernelGen_model_*.pth``
(→ :class:`AuxLRGenerator`) and ``Student_model_*.pth`` (``ContrasExtractorSep`` → :class:`DZSRFeatureExtractor`).
Our networks keep the official key names, except:

* **MeanShift**: officially a frozen grouped 1×1 conv (``weight`` (3,1,1,1) = 1, ``bias`` = ∓(0.4488, 0.4371,
  0.4040)); ours is a constant, non-persistent buffer. ``*_from_official`` checks that the official values are
  these constants and drops them; ``*_to_official`` writes them back. Likewise the Student's ImageNet ``mean`` /
  ``std`` buffers, and the AdaSTN ``regular_matrix`` buffers (kept: ours hold the same buffer) are checked.
* **Space-to-depth channel order**: the official DownBlock puts channel (dy·s + dx)·3 + c, ``nn.PixelUnshuffle``
  c·s² + dy·s + dx, so the input channels of the convolution that follows are permuted: ``ref_head.2.weight``
  (RefSR), ``head.0.weight`` and the first 3s² input channels of ``guide_net.0.0.weight`` (KernelGen; its last 3
  channels are the LR and stay).
* **Student branches**: ``feature_extraction_image1`` / ``…2`` are our ``lr_branch`` / ``ref_branch``.

RAW-to-sRGB (reference ``raw_to_srgb.md`` §1, §5.1): ``LiteISPNet_model_*.pth`` (→ :class:`LiteISPNet`),
``GCMModel_model_*.pth`` (→ :class:`GlobalColorMapping`) and ``SRResNet_model_*.pth`` (→ :class:`ZoomLearnNet`
with :data:`RAW_TO_SRGB_BACKBONE`), same file format. The official key names are derived from the official
module structure (``N.seq`` returns a lone module unwrapped and keeps nested Sequentials, so e.g. the head is
``head.weight``, an RCAB conv ``down1.1.rg.0.res.0.weight``, GuideNet's first conv ``guide_net.0.0.weight``);
LiteISPNet and GCM keep them, except:

* **Haar filters**: officially frozen parameters (``down1.3``, ``down2.2``, ``down3.2``, ``up3.0``, ``up2.0``,
  ``up1.0`` ``.weight``, (4C, 1, 2, 2) each, 8,192 values), ours are non-persistent buffers: checked and dropped,
  written back by ``*_to_official``.
* **Packed channel order** (``packing``): the official ZRR loader packs (B, G1, R, G2) (``"official"``, the ZRR
  DataModule's default: weights unchanged); for raws packed in the project's (R, G1, B, G2) (``"rggb"``) the
  input channels of ``head.weight`` are swapped (0 ↔ 2). SR-RAW's official packing is (R, G1, B, G2) already.
* **SRResNet names**: ``input_stage`` ↔ ``head``, ``resblock_{i}`` (``conv_1``, ``BatchNorm``, ``Prelu``,
  ``conv_2``, ``BatchNorm_1``) ↔ ``trunk.{i−1}.body.{0…4}``, ``resblock_output.{0,1}`` ↔ ``trunk.{16,17}``,
  ``deconv_stage{k}.{j}`` ↔ ``upsample.{3(k−1)+j}``, ``deconv_output_stage`` ↔ ``tail``.

Conversions are strict: a missing or unexpected key, a wrong shape or a wrong constant raises
:class:`OfficialCheckpointError` listing them (and naming the file when loading from a path).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from lightning_modules.networks.aux_lr_generator import AuxLRGenerator
from lightning_modules.networks.dzsr_feature_extractor import IMAGENET_MEAN, IMAGENET_STD, DZSRFeatureExtractor
from lightning_modules.networks.gcm import GlobalColorMapping
from lightning_modules.networks.liteispnet import DWT, IWT, LiteISPNet
from lightning_modules.networks.selfdzsr_net import DIV2K_RGB_MEAN, SelfDZSRNet
from lightning_modules.networks.zoom_learn_net import RAW_TO_SRGB_BACKBONE, ZoomLearnNet
from ops.wavelet import haar_filters

__all__ = [
    "OfficialCheckpointError",
    "selfdzsr_net_state_from_official",
    "selfdzsr_net_state_to_official",
    "aux_lr_generator_state_from_official",
    "aux_lr_generator_state_to_official",
    "feature_extractor_state_from_official",
    "feature_extractor_state_to_official",
    "read_official_state",
    "load_official_selfdzsr",
    "liteispnet_state_from_official",
    "liteispnet_state_to_official",
    "gcm_state_from_official",
    "gcm_state_to_official",
    "srresnet_state_from_official",
    "srresnet_state_to_official",
    "load_official_raw_to_srgb",
]

State = Mapping[str, Tensor]

_REGULAR_MATRIX = torch.tensor([[-1.0, -1, -1, 0, 0, 0, 1, 1, 1], [-1.0, 0, 1, -1, 0, 1, -1, 0, 1]])
_STUDENT_BRANCHES = {"lr_branch": "feature_extraction_image1", "ref_branch": "feature_extraction_image2"}


class OfficialCheckpointError(ValueError):
    """An official checkpoint (or a state dict for one) does not have the expected layout or constants."""


# ------------------------------------------------------------------------------ channel order
def down_block_to_pixel_unshuffle(weight: Tensor, scale: int, colours: int = 3) -> Tensor:
    """Permute the first colours·s² input channels of a conv weight (O, I, kh, kw) from DownBlock order
    (dy·s + dx)·colours + c to PixelUnshuffle order c·s² + dy·s + dx; the remaining channels are kept."""
    n = colours * scale**2
    out, _, kh, kw = weight.shape
    head = weight[:, :n].reshape(out, scale**2, colours, kh, kw).transpose(1, 2).reshape(out, n, kh, kw)
    return torch.cat((head, weight[:, n:]), dim=1)


def pixel_unshuffle_to_down_block(weight: Tensor, scale: int, colours: int = 3) -> Tensor:
    """Inverse of :func:`down_block_to_pixel_unshuffle`."""
    n = colours * scale**2
    out, _, kh, kw = weight.shape
    head = weight[:, :n].reshape(out, colours, scale**2, kh, kw).transpose(1, 2).reshape(out, n, kh, kw)
    return torch.cat((head, weight[:, n:]), dim=1)


# --------------------------------------------------------------------------------- layouts
@dataclass(frozen=True)
class _Layout:
    """How one official network's state dict maps onto ours."""

    name: str
    build: Callable[[], nn.Module]
    mean_shifts: dict[str, int]  # official prefix → sign of the MeanShift stored there
    reordered: dict[str, int]  # our key → scale of its space-to-depth input channels
    constants: dict[str, Tensor] = field(default_factory=dict)  # official key → fixed buffer not in our state
    to_official_key: Callable[[str], str] = lambda key: key  # noqa: E731 (identity for RefSR and KernelGen)

    def expected_official(self, ours: State) -> dict[str, tuple[int, ...]]:
        shapes = {self.to_official_key(key): tuple(value.shape) for key, value in ours.items()}
        for prefix in self.mean_shifts:
            shapes[f"{prefix}.weight"], shapes[f"{prefix}.bias"] = (3, 1, 1, 1), (3,)
        shapes.update({key: tuple(value.shape) for key, value in self.constants.items()})
        return shapes

    def official_constants(self, ours: State) -> dict[str, Tensor]:
        """Every official key whose value is fixed: MeanShifts, regular matrices, the Student's mean / std."""
        fixed = dict(self.constants)
        for prefix, sign in self.mean_shifts.items():
            fixed[f"{prefix}.weight"] = torch.ones(3, 1, 1, 1)
            fixed[f"{prefix}.bias"] = sign * torch.tensor(DIV2K_RGB_MEAN)
        fixed.update({key: _REGULAR_MATRIX for key in ours if key.endswith("regular_matrix")})
        return fixed


def _module_state(build: Callable[[], nn.Module]) -> dict[str, Tensor]:
    """The state dict (keys and shapes only: on the meta device) of a freshly built network."""
    with torch.device("meta"):
        return build().state_dict()


def _refsr_layout(scale: int) -> _Layout:
    return _Layout(
        name=f"SelfRefSR (scale {scale})",
        build=lambda: SelfDZSRNet(scale=scale),
        mean_shifts={"ref_extractor.0": -1, "ref_head.0": -1, "head.0": -1, "predictor.mean": -1, "tail.1": 1},
        reordered={"ref_head.2.weight": scale},
    )


def _kernelgen_layout(scale: int) -> _Layout:
    return _Layout(
        name=f"KernelGen (scale {scale})",
        build=lambda: AuxLRGenerator(scale=scale),
        mean_shifts={"head_mean": -1, "tail_mean": 1},
        reordered={"head.0.weight": scale, "guide_net.0.0.weight": scale},
    )


def _student_official_key(key: str) -> str:
    branch, rest = key.split(".", 1)
    return f"{_STUDENT_BRANCHES[branch]}.{rest}"


def _student_layout() -> _Layout:
    constants = {
        f"{official}.{name}": torch.tensor(values).view(1, 3, 1, 1)
        for official in _STUDENT_BRANCHES.values()
        for name, values in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD))
    }
    return _Layout(
        name="ContrasExtractorSep (Student)",
        build=DZSRFeatureExtractor,
        mean_shifts={},
        reordered={},
        constants=constants,
        to_official_key=_student_official_key,
    )


# ------------------------------------------------------------------------------- conversion
def _check_layout(state: State, expected: Mapping[str, tuple[int, ...]], what: str) -> None:
    if not isinstance(state, Mapping):
        raise OfficialCheckpointError(
            f"{what}: expected a state dict (a mapping of tensors), got {type(state).__name__}"
        )
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise OfficialCheckpointError(f"{what}: missing keys {missing}; unexpected keys {unexpected}")
    wrong = [
        f"{key}: expected {shape}, got {tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__}"
        for key, shape in expected.items()
        if not isinstance(value := state[key], Tensor) or tuple(value.shape) != shape
    ]
    if wrong:
        raise OfficialCheckpointError(f"{what}: wrong shapes: {'; '.join(wrong)}")


def _from_official(state: State, layout: _Layout) -> dict[str, Tensor]:
    ours = _module_state(layout.build)
    what = f"official {layout.name} state dict"
    _check_layout(state, layout.expected_official(ours), what)
    wrong = [
        f"{key} = {state[key].flatten().tolist()} (expected {value.flatten().tolist()})"
        for key, value in layout.official_constants(ours).items()
        if not torch.allclose(state[key].detach().float().cpu(), value, rtol=0.0, atol=1e-6)
    ]
    if wrong:
        raise OfficialCheckpointError(f"{what}: unexpected constant values: {'; '.join(wrong)}")
    converted = {}
    for key in ours:
        value = state[layout.to_official_key(key)]
        if key in layout.reordered:
            value = down_block_to_pixel_unshuffle(value, layout.reordered[key])
        converted[key] = value
    return converted


def _to_official(state: State, layout: _Layout) -> dict[str, Tensor]:
    ours = _module_state(layout.build)
    _check_layout(state, {key: tuple(value.shape) for key, value in ours.items()}, f"our {layout.name} state dict")
    official = {}
    for key in ours:
        value = state[key]
        if key in layout.reordered:
            value = pixel_unshuffle_to_down_block(value, layout.reordered[key])
        official[layout.to_official_key(key)] = value
    reference = next(iter(state.values()))
    for key, value in layout.official_constants(ours).items():
        official.setdefault(key, value.to(dtype=reference.dtype, device=reference.device))
    return official


def selfdzsr_net_state_from_official(state: State, scale: int) -> dict[str, Tensor]:
    """Official ``SelfRefSR`` state dict (216 keys at ×4) → :class:`SelfDZSRNet` state dict (206 keys)."""
    return _from_official(state, _refsr_layout(scale))


def selfdzsr_net_state_to_official(state: State, scale: int) -> dict[str, Tensor]:
    """:class:`SelfDZSRNet` state dict → official ``SelfRefSR`` layout (with MeanShift constants)."""
    return _to_official(state, _refsr_layout(scale))


def aux_lr_generator_state_from_official(state: State, scale: int) -> dict[str, Tensor]:
    """Official ``KernelGen`` state dict (30 keys) → :class:`AuxLRGenerator` state dict (26 keys)."""
    return _from_official(state, _kernelgen_layout(scale))


def aux_lr_generator_state_to_official(state: State, scale: int) -> dict[str, Tensor]:
    """:class:`AuxLRGenerator` state dict → official ``KernelGen`` layout (with MeanShift constants)."""
    return _to_official(state, _kernelgen_layout(scale))


def feature_extractor_state_from_official(state: State) -> dict[str, Tensor]:
    """Official Student (``ContrasExtractorSep``, 24 keys) → :class:`DZSRFeatureExtractor` state dict (20 keys)."""
    return _from_official(state, _student_layout())


def feature_extractor_state_to_official(state: State) -> dict[str, Tensor]:
    """:class:`DZSRFeatureExtractor` state dict → official Student layout (with the ImageNet mean / std)."""
    return _to_official(state, _student_layout())


# ------------------------------------------------------------------------------------ files
def read_official_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict of an official checkpoint file: ``{'state_dict': ...}`` (or a bare state dict), on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official SelfDZSR checkpoint '{path}' not found")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise OfficialCheckpointError(f"{path}: cannot read the checkpoint ({error})") from error
    state = content.get("state_dict", content) if isinstance(content, Mapping) else content
    if not isinstance(state, Mapping) or not all(isinstance(value, Tensor) for value in state.values()):
        raise OfficialCheckpointError(
            f"{path}: expected {{'state_dict': {{name: tensor}}}}, got {type(content).__name__}"
        )
    return dict(state)


def load_official_selfdzsr(
    module: object,
    refsr: str | os.PathLike | None = None,
    kernelgen: str | os.PathLike | None = None,
    student: str | os.PathLike | None = None,
) -> None:
    """Load official files into ``module.net`` (RefSR), ``module.aux_lr_generator`` (KernelGen) and
    ``module.feature_extractor`` (Student); each path is optional, the scale is read from the target network."""
    jobs = (
        ("net", refsr, lambda state, net: selfdzsr_net_state_from_official(state, net.scale)),
        ("aux_lr_generator", kernelgen, lambda state, net: aux_lr_generator_state_from_official(state, net.scale)),
        ("feature_extractor", student, lambda state, net: feature_extractor_state_from_official(state)),
    )
    for attribute, path, convert in jobs:
        if path is None:
            continue
        target = getattr(module, attribute, None)
        if not isinstance(target, nn.Module):
            raise AttributeError(f"{type(module).__name__} has no network '{attribute}' to load '{path}' into")
        state = read_official_state(path)
        try:
            converted = convert(state, target)
        except OfficialCheckpointError as error:
            raise OfficialCheckpointError(f"{path}: {error}") from error
        target.load_state_dict(converted, strict=True)


# ------------------------------------------------------------------------------ RAW-to-sRGB
PackingOrder = Literal["official", "rggb"]  # packed raw (B, G1, R, G2) or (R, G1, B, G2), as the ZRR DataModule
_PACKED_ORDER_SWAP = [2, 1, 0, 3]  # (B, G1, R, G2) ↔ (R, G1, B, G2); its own inverse
_SRRESNET_BLOCK = ("conv_1", "BatchNorm", "Prelu", "conv_2", "BatchNorm_1")
_SRRESNET_BLOCKS = 16
_SRRESNET_SCALES = {1: 1, 2: 2, 3: 4}  # upsampling stages → official --scale


def _liteispnet_layout(num_blocks: int, coord: bool) -> _Layout:
    def build() -> LiteISPNet:
        return LiteISPNet(num_blocks=num_blocks, coord=coord)

    with torch.device("meta"):
        wavelets = {name: module.channels for name, module in build().named_modules() if isinstance(module, (DWT, IWT))}
    haar = {f"{name}.weight": haar_filters().repeat(channels, 1, 1, 1) for name, channels in wavelets.items()}
    return _Layout(
        name=f"LiteISPNet (num_blocks {num_blocks}, coord {coord})",
        build=build,
        mean_shifts={},
        reordered={},
        constants=haar,
    )


def _gcm_layout(coord: bool) -> _Layout:
    return _Layout(
        name=f"GCMModel (coord {coord})", build=lambda: GlobalColorMapping(coord=coord), mean_shifts={}, reordered={}
    )


def _srresnet_official_key(key: str) -> str:
    """Our :class:`ZoomLearnNet` key → the official ``SRResNet`` key (module docstring)."""
    parts = key.split(".")
    if parts[0] == "head":
        return f"input_stage.{parts[1]}.{parts[2]}"
    if parts[0] == "trunk":
        index = int(parts[1])
        if index < _SRRESNET_BLOCKS:
            return f"resblock_{index + 1}.{_SRRESNET_BLOCK[int(parts[3])]}.{parts[4]}"
        return f"resblock_output.{index - _SRRESNET_BLOCKS}.{parts[2]}"
    if parts[0] == "upsample":
        index = int(parts[1])
        return f"deconv_stage{index // 3 + 1}.{index % 3}.{parts[2]}"
    return f"deconv_output_stage.{parts[1]}"


def _srresnet_layout(scale: int) -> _Layout:
    if scale not in _SRRESNET_SCALES.values():
        raise OfficialCheckpointError(f"the official SRResNet has scale 1, 2 or 4, got {scale}")
    return _Layout(
        name=f"SRResNet (scale {scale})",
        build=lambda: ZoomLearnNet(zoom=scale, **RAW_TO_SRGB_BACKBONE),
        mean_shifts={},
        reordered={},
        to_official_key=_srresnet_official_key,
    )


def _srresnet_scale(state: State, pattern: str, stage_of: Callable[[int], int], what: str) -> int:
    """The official scale from the number of upsampling stages: ``stage_of`` the index in keys matching ``pattern``."""
    stages = len({stage_of(int(match.group(1))) for key in state if (match := re.match(pattern, key))})
    if stages not in _SRRESNET_SCALES:
        raise OfficialCheckpointError(f"{what}: {stages} upsampling stages; the official SRResNet has 1, 2 or 3")
    return _SRRESNET_SCALES[stages]


def _check_packing(packing: str) -> None:
    if packing not in ("official", "rggb"):
        raise ValueError(f"packing must be 'official' or 'rggb', got {packing!r}")


def liteispnet_state_from_official(
    state: State, num_blocks: int = 4, coord: bool = True, packing: PackingOrder = "official"
) -> dict[str, Tensor]:
    """Official ``LiteISPNet`` state dict (302 keys as released: 296 weights and biases + 6 Haar filters) →
    :class:`LiteISPNet` state dict for raws packed in ``packing`` order (``"rggb"`` permutes ``head.weight``)."""
    _check_packing(packing)
    converted = _from_official(state, _liteispnet_layout(num_blocks, coord))
    if packing == "rggb":
        converted["head.weight"] = converted["head.weight"][:, _PACKED_ORDER_SWAP]
    return converted


def liteispnet_state_to_official(
    state: State, num_blocks: int = 4, coord: bool = True, packing: PackingOrder = "official"
) -> dict[str, Tensor]:
    """:class:`LiteISPNet` state dict (for raws packed in ``packing`` order) → official layout (with the Haar
    filters, for the official packing)."""
    _check_packing(packing)
    official = _to_official(state, _liteispnet_layout(num_blocks, coord))
    if packing == "rggb":
        official["head.weight"] = official["head.weight"][:, _PACKED_ORDER_SWAP]
    return official


def gcm_state_from_official(state: State, coord: bool = True) -> dict[str, Tensor]:
    """Official ``GCMModel`` state dict (18 keys) → :class:`GlobalColorMapping` state dict (same keys)."""
    return _from_official(state, _gcm_layout(coord))


def gcm_state_to_official(state: State, coord: bool = True) -> dict[str, Tensor]:
    """:class:`GlobalColorMapping` state dict → official ``GCMModel`` layout (same keys, checked)."""
    return _to_official(state, _gcm_layout(coord))


def srresnet_state_from_official(state: State, scale: int | None = None) -> dict[str, Tensor]:
    """Official ``SRResNet`` state dict (×4: 135 keys) → :class:`ZoomLearnNet` (``zoom=scale``,
    :data:`RAW_TO_SRGB_BACKBONE`) state dict; ``scale`` (1, 2 or 4) is read from the keys when not given."""
    if scale is None:
        scale = _srresnet_scale(state, r"deconv_stage(\d+)\.", lambda k: k, "official SRResNet state dict")
    return _from_official(state, _srresnet_layout(scale))


def srresnet_state_to_official(state: State, scale: int | None = None) -> dict[str, Tensor]:
    """:class:`ZoomLearnNet` (:data:`RAW_TO_SRGB_BACKBONE`) state dict → official ``SRResNet`` layout."""
    if scale is None:
        scale = _srresnet_scale(state, r"upsample\.(\d+)\.", lambda i: i // 3, "our SRResNet state dict")
    return _to_official(state, _srresnet_layout(scale))


def load_official_raw_to_srgb(
    module: object,
    net: str | os.PathLike | None = None,
    gcm: str | os.PathLike | None = None,
    packing: PackingOrder = "official",
) -> None:
    """Load official RAW-to-sRGB files into ``module.net`` (``LiteISPNet_model_*.pth`` into a
    :class:`LiteISPNet`, ``SRResNet_model_*.pth`` into a :class:`ZoomLearnNet` built with
    :data:`RAW_TO_SRGB_BACKBONE`) and ``module.gcm`` (``GCMModel_model_*.pth``); each path is optional, the
    configuration (blocks, coordinates, scale) is read from the target network; ``packing`` is the channel
    order of the packed raws LiteISPNet will see (:func:`liteispnet_state_from_official`)."""
    _check_packing(packing)

    def convert_net(state: State, target: nn.Module) -> dict[str, Tensor]:
        if isinstance(target, LiteISPNet):
            return liteispnet_state_from_official(state, target.num_blocks, target.coord, packing)
        if isinstance(target, ZoomLearnNet):
            return srresnet_state_from_official(state, target.zoom)
        raise TypeError(f"module.net is a {type(target).__name__}; expected LiteISPNet or ZoomLearnNet")

    def convert_gcm(state: State, target: nn.Module) -> dict[str, Tensor]:
        if not isinstance(target, GlobalColorMapping):
            raise TypeError(f"module.gcm is a {type(target).__name__}; expected GlobalColorMapping")
        return gcm_state_from_official(state, target.coord)

    for attribute, path, convert in (("net", net, convert_net), ("gcm", gcm, convert_gcm)):
        if path is None:
            continue
        target = getattr(module, attribute, None)
        if not isinstance(target, nn.Module):
            raise AttributeError(f"{type(module).__name__} has no network '{attribute}' to load '{path}' into")
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"official RAW-to-sRGB checkpoint '{path}' not found (the authors' released weights, "
                "github.com/cszhilu1998/RAW-to-sRGB, README: pretrained models)"
            )
        state = read_official_state(path)
        try:
            converted = convert(state, target)
            target.load_state_dict(converted, strict=True)
        except OfficialCheckpointError as error:
            raise OfficialCheckpointError(f"{path}: {error}") from error
        except RuntimeError as error:  # our network was built with options the official one does not have
            raise OfficialCheckpointError(
                f"{path}: {type(target).__name__} is not built in the official layout ({error})"
            ) from error
