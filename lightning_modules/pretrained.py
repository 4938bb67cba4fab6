"""Resolution of pretrained weights: ``pretrained: false | true | <path>``.

* ``False``: no file is read; the caller builds the network with random weights and we say so once
  in the log. Meant for the demo and the tests, never for reported numbers.
* ``True``: the file is looked up under its canonical name in torch hub's cache,
  ``$TORCH_HOME/hub/checkpoints/`` (where torchvision and lpips would have downloaded it).
* a path: either the weights file itself or a folder that holds it under its canonical name.

Nothing is ever downloaded: a missing file raises :class:`PretrainedWeightsNotFoundError`, naming the
file, the folder searched and where to get it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "WeightsFile",
    "KNOWN_WEIGHTS",
    "PretrainedWeightsNotFoundError",
    "Pretrained",
    "resolve_weights",
    "load_weights",
    "note_random_weights",
]

log = logging.getLogger(__name__)

#: What a ``pretrained`` argument accepts.
Pretrained = bool | str


@dataclass(frozen=True)
class WeightsFile:
    """A weights file known by its canonical file name and its official download address."""

    filename: str
    url: str
    description: str


KNOWN_WEIGHTS: dict[str, WeightsFile] = {
    "vgg19": WeightsFile(
        "vgg19-dcbb9e9d.pth",
        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        "torchvision VGG19 (ImageNet), used by the CoBi_VGG and sliced Wasserstein losses",
    ),
    "vgg16": WeightsFile(
        "vgg16-397923af.pth",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "torchvision VGG16 (ImageNet), the starting point of SelfDZSR's feature extractor",
    ),
    "alexnet": WeightsFile(
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "torchvision AlexNet (ImageNet), the backbone of LPIPS-alex",
    ),
}

_announced_random: set[str] = set()


class PretrainedWeightsNotFoundError(FileNotFoundError):
    """A pretrained weights file that the configuration asks for is not on disk."""


def hub_checkpoint_dir() -> Path:
    """The folder torch hub downloads into: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(pretrained: Pretrained, name: str) -> Path | None:
    """Return the weights file for ``name`` (a key of :data:`KNOWN_WEIGHTS`), or None for random weights."""
    if name not in KNOWN_WEIGHTS:
        raise KeyError(f"unknown weights {name!r}; known: {sorted(KNOWN_WEIGHTS)}")
    known = KNOWN_WEIGHTS[name]
    if pretrained is False:
        return None
    if pretrained is True:
        folder = hub_checkpoint_dir()
        candidate = folder / known.filename
    else:
        given = Path(os.path.expanduser(str(pretrained)))
        if given.is_file():
            return given
        folder = given if given.suffix == "" or given.is_dir() else given.parent
        candidate = given if given.suffix else folder / known.filename
    if candidate.is_file():
        return candidate
    raise PretrainedWeightsNotFoundError(
        f"{known.description}: weights file '{candidate.name}' not found in '{folder}'. "
        f"Download it from {known.url} and put it there (or set `pretrained` to its path); "
        "nothing is downloaded automatically. Use `pretrained: false` for random weights "
        "(tests and demos only; metrics from random backbones are not comparable)."
    )


def load_weights(pretrained: Pretrained, name: str) -> dict[str, torch.Tensor] | None:
    """Resolve and load a state dict on the CPU; None (and a one-time log line) for random weights."""
    path = resolve_weights(pretrained, name)
    if path is None:
        note_random_weights(name)
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise RuntimeError(f"{path}: cannot load {KNOWN_WEIGHTS[name].description} weights ({error})") from error


def note_random_weights(name: str) -> None:
    """Say once per process that ``name`` runs with random weights."""
    if name not in _announced_random:
        _announced_random.add(name)
        log.warning(
            "%s runs with RANDOM weights (pretrained: false); fine for tests and demos, not for reported numbers.",
            KNOWN_WEIGHTS[name].description,
        )
