"""Official weight files → a Lightning checkpoint for ``lightning validate|test|predict --ckpt_path``.

    uv run python -m lightning_modules.convert selfdzsr --refsr RefSR_model_400.pth \\
        [--student Student_model_400.pth] [--kernelgen KernelGen_model_400.pth] --out selfdzsr_nikon.ckpt
    uv run lightning test --config configs/selfdzsr.yaml --ckpt_path selfdzsr_nikon.ckpt
    uv run python -m lightning_modules.convert rawtosrgb --net LiteISPNet_model_1.pth --gcm GCMModel_model_1.pth \\
        --out rawtosrgb_zrr.ckpt
    uv run lightning test --config configs/rawtosrgb_zrr.yaml --ckpt_path rawtosrgb_zrr.ckpt

The scale (×4 Nikon, ×2 CameraFusion) is read from the RefSR file. Without ``--student`` the feature extractor
holds ImageNet VGG16 (``--pretrained``, default: the torch hub cache), as in a run without
``feature_extractor_weights``; without ``--kernelgen`` the auxiliary-LR generator (training and the aux-LR
panel only) keeps random weights. The frozen helpers (VGG19, LPIPS) are not stored, as in training checkpoints.

RAW-to-sRGB: the network file is a ``LiteISPNet_model_*.pth`` (its residual-group depth and coordinate channels are
read from the keys) or an ``SRResNet_model_*.pth`` (its scale read from the keys); ``--packing`` is the channel
order of the packed raws the checkpoint will see (the ZRR DataModule's ``packing``). Without ``--gcm`` the GCM keeps
random weights (it only aligns the GT for the "Align GT with raw" protocol). The checkpoint records the network's
``class_path`` and arguments, so ``--ckpt_path`` rebuilds that architecture whatever the config says.

The file is written atomically.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

import lightning
import torch

from datamodules.common.atomic import atomic_path
from lightning_modules.checkpoints import (
    OfficialCheckpointError,
    PackingOrder,
    _srresnet_scale,
    load_official_raw_to_srgb,
    load_official_selfdzsr,
    read_official_state,
)
from lightning_modules.networks import RAW_TO_SRGB_BACKBONE, LiteISPNet, ZoomLearnNet
from lightning_modules.pretrained import load_weights
from lightning_modules.raw_to_srgb import RawToSRGBJointModule
from lightning_modules.selfdzsr import SelfDZSRModule

__all__ = ["selfdzsr_checkpoint", "rawtosrgb_checkpoint", "official_raw_to_srgb_network", "main"]

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


def official_raw_to_srgb_network(net: str | os.PathLike) -> dict[str, Any]:
    """``{"class_path", "init_args"}`` of the network an official RAW-to-sRGB file holds: LiteISPNet (residual-group
    depth from the RCABs of ``down2``, coordinates from the 66 channels of ``down1.0``) or the SRResNet backbone (scale
    from its upsampling stages)."""
    if not Path(net).is_file():
        raise FileNotFoundError(f"official RAW-to-sRGB network file '{net}' not found")
    state = read_official_state(net)
    if "input_stage.0.weight" in state:
        zoom = _srresnet_scale(state, r"deconv_stage(\d+)\.", lambda stage: stage, str(net))
        return {
            "class_path": f"{ZoomLearnNet.__module__}.{ZoomLearnNet.__name__}",
            "init_args": {"zoom": zoom, **RAW_TO_SRGB_BACKBONE},
        }
    if "head.weight" in state and "down2.1.rg.0.res.0.weight" in state:
        blocks = len({match.group(1) for key in state if (match := re.match(r"down2\.1\.rg\.(\d+)\.res\.0\.weight$", key))})
        coord = "down1.0.weight" in state and tuple(state["down1.0.weight"].shape[:2]) == (66, 66)
        return {
            "class_path": f"{LiteISPNet.__module__}.{LiteISPNet.__name__}",
            "init_args": {"num_blocks": blocks, "coord": coord},
        }
    raise OfficialCheckpointError(
        f"{net}: neither an official LiteISPNet nor an SRResNet state dict (keys {sorted(state)[:4]} …)"
    )


def rawtosrgb_checkpoint(
    net: str | os.PathLike, gcm: str | os.PathLike | None = None, packing: PackingOrder = "official"
) -> dict[str, Any]:
    """The Lightning checkpoint dict of a :class:`RawToSRGBJointModule` holding the official network (and GCM)."""
    network = official_raw_to_srgb_network(net)
    network_class = {"LiteISPNet": LiteISPNet, "ZoomLearnNet": ZoomLearnNet}[network["class_path"].rsplit(".", 1)[1]]
    gcm_coord = True
    if gcm is not None:
        if not Path(gcm).is_file():
            raise FileNotFoundError(f"official GCMModel file '{gcm}' not found")
        guide = read_official_state(gcm).get("guide_net.0.0.weight")
        if guide is None:
            raise OfficialCheckpointError(f"{gcm}: not an official GCMModel state dict (no guide_net.0.0.weight)")
        gcm_coord = guide.shape[1] == 8
    module = RawToSRGBJointModule(  # zoom: ZRR 1, SR-RAW 4 (the data's, linked in every run)
        zoom=4 if network_class is ZoomLearnNet else 1, net=network_class(**network["init_args"]), gcm_coord=gcm_coord,
        flow="classical", w_vgg=0.0, pretrained=False,
    )
    load_official_raw_to_srgb(module, net=net, gcm=gcm, packing=packing)
    checkpoint: dict[str, Any] = {
        "state_dict": module.state_dict(),
        # LightningCLI merges these into the run's config: only the architecture
        "hyper_parameters": {
            "_class_path": f"{RawToSRGBJointModule.__module__}.{RawToSRGBJointModule.__name__}",
            "net": network,
            "gcm_coord": gcm_coord,
        },
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": lightning.__version__,
        "converted_from": {"net": str(net), "gcm": gcm and str(gcm), "packing": packing},
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
    rawtosrgb = methods.add_parser("rawtosrgb", help="RAW-to-sRGB: LiteISPNet or SRResNet (+ GCMModel) files")
    rawtosrgb.add_argument("--net", required=True, help="official LiteISPNet_model_*.pth or SRResNet_model_*.pth")
    rawtosrgb.add_argument("--gcm", help="official GCMModel_model_*.pth (aligns the GT for 'Align GT with raw')")
    rawtosrgb.add_argument(
        "--packing", choices=("official", "rggb"), default="official",
        help="packed channel order of the data (the ZRR DataModule's packing; SR-RAW: official)",
    )
    rawtosrgb.add_argument("--out", required=True, help="Lightning checkpoint to write (.ckpt)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.method == "rawtosrgb":
        checkpoint = rawtosrgb_checkpoint(args.net, args.gcm, args.packing)
        what = f"RAW-to-sRGB {checkpoint['hyper_parameters']['net']['class_path'].rsplit('.', 1)[1]}"
    else:
        pretrained = {"true": True, "false": False}.get(args.pretrained.lower(), args.pretrained)
        checkpoint = selfdzsr_checkpoint(args.refsr, args.student, args.kernelgen, pretrained)
        what = f"SelfDZSR ×{checkpoint['zoom']}"
    out = Path(args.out)
    with atomic_path(out) as tmp:
        torch.save(checkpoint, tmp)
    print(f"wrote {out}: {what}; use it with `lightning test --config <its config> --ckpt_path {out}`")


if __name__ == "__main__":
    main()
