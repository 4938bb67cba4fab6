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

Conversions are strict: a missing or unexpected key, a wrong shape or a wrong constant raises
:class:`OfficialCheckpointError` listing them (and naming the file when loading from a path).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from lightning_modules.networks.aux_lr_generator import AuxLRGenerator
from lightning_modules.networks.dzsr_feature_extractor import IMAGENET_MEAN, IMAGENET_STD, DZSRFeatureExtractor
from lightning_modules.networks.selfdzsr_net import DIV2K_RGB_MEAN, SelfDZSRNet

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
