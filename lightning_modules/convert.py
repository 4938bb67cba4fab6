"""Official weight files → a Lightning checkpoint for ``lightning validate|test|predict --ckpt_path``.

    uv run python -m lightning_modules.convert selfdzsr --refsr RefSR_model_400.pth \\
        [--student Student_model_400.pth] [--kernelgen KernelGen_model_400.pth] --out selfdzsr_nikon.ckpt
    uv run lightning test --config configs/selfdzsr.yaml --ckpt_path selfdzsr_nikon.ckpt

The scale (×4 Nikon, ×2 CameraFusion) is read from the RefSR file. Without ``--student`` the feature extractor
holds ImageNet VGG16 (``--pretrained``, default: the torch hub cache), as in a run without
``feature_extractor_weights``; without ``--kernelgen`` the auxiliary-LR generator (training and the aux-LR
panel only) keeps random weights. The frozen helpers (VGG19, LPIPS) are not stored, as in training checkpoints.
The file is written atomically.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import lightning
import torch

from datamodules.common.atomic import atomic_path
from lightning_modules.checkpoints import OfficialCheckpointError, load_official_selfdzsr
from lightning_modules.pretrained import load_weights
from lightning_modules.selfdzsr import SelfDZSRModule

__all__ = ["selfdzsr_checkpoint", "main"]

SCALES = (4, 2)
#: The official network's size (the scale comes from the data config, linked as in training).
ARCHITECTURE = {"channels": 64, "num_blocks": 16}


def selfdzsr_checkpoint(
    refsr: str | os.PathLike,
    student: str | os.PathLike | None = None,
    kernelgen: str | os.PathLike | None = None,
    pretrained: bool | str = True,
) -> dict[str, Any]:
    """The Lightning checkpoint dict of a :class:`SelfDZSRModule` holding the official weights."""
    errors = []
    for scale in SCALES:
        module = SelfDZSRModule(zoom=scale, pretrained=False, **ARCHITECTURE)
        try:
            load_official_selfdzsr(module, refsr=refsr)
            break
        except OfficialCheckpointError as error:
            errors.append(f"×{scale}: {error}")
    else:
        raise OfficialCheckpointError(f"{refsr} is not an official RefSR file at ×4 or ×2:\n" + "\n".join(errors))
    load_official_selfdzsr(module, kernelgen=kernelgen, student=student)
    if student is None:
        state = load_weights(pretrained, "vgg16")
        if state is not None:
            module.feature_extractor.load_torchvision_vgg16(state)
    checkpoint: dict[str, Any] = {
        "state_dict": module.state_dict(),
        # LightningCLI merges these into the run's config: only the architecture, not e.g. `pretrained`
        "hyper_parameters": {"_class_path": f"{SelfDZSRModule.__module__}.{SelfDZSRModule.__name__}", **ARCHITECTURE},
        "zoom": module.zoom,
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": lightning.__version__,
        "converted_from": {"refsr": str(refsr), "student": student and str(student), "kernelgen": kernelgen and str(kernelgen)},
    }
    module.on_save_checkpoint(checkpoint)
    return checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lightning_modules.convert", description=__doc__.split("\n\n")[0])
    methods = parser.add_subparsers(dest="method", required=True)
    selfdzsr = methods.add_parser("selfdzsr", help="SelfDZSR: RefSR (+ Student, KernelGen) files")
    selfdzsr.add_argument("--refsr", required=True, help="official RefSR_model_*.pth")
    selfdzsr.add_argument("--student", help="official Student_model_*.pth (the matching features)")
    selfdzsr.add_argument("--kernelgen", help="official KernelGen_model_*.pth (the auxiliary-LR generator)")
    selfdzsr.add_argument(
        "--pretrained", default="true",
        help="ImageNet VGG16 for the feature extractor when no --student: true (torch hub cache), false (random) or a .pth",
    )
    selfdzsr.add_argument("--out", required=True, help="Lightning checkpoint to write (.ckpt)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    pretrained = {"true": True, "false": False}.get(args.pretrained.lower(), args.pretrained)
    checkpoint = selfdzsr_checkpoint(args.refsr, args.student, args.kernelgen, pretrained)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        torch.save(checkpoint, tmp)
    zoom = checkpoint["zoom"]
    print(f"wrote {out}: SelfDZSR ×{zoom}; use it with `lightning test --config <its config> --ckpt_path {out}`")


if __name__ == "__main__":
    main()
