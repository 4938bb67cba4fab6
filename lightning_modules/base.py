"""The base of rawzoom's LightningModules: the arguments every model shares with its DataModule.

The CLI links ``zoom`` and ``patch_size`` from the DataModule (parse time) and ``in_channels`` from
the instantiated DataModule, so a paper config never states them twice.
"""

from __future__ import annotations

from typing import Any, ClassVar

from lightning.pytorch import LightningModule

__all__ = ["ZoomModule"]


class ZoomModule(LightningModule):
    """Base class for the models selectable by ``model.class_path``.

    Args:
        zoom: Magnification from the input's pixel grid to the output's (linked from the data).
        in_channels: Channels of the network input, e.g. 4 for packed raw (linked from the data).
        patch_size: Side of a training input crop in input pixels (linked from the data).

    Frozen helpers that ``setup`` rebuilds from their own weights (a loss network, the LPIPS backbone) are named
    by :attr:`frozen_prefixes`: checkpoints leave them out, and loading keeps the ones built in ``setup``.
    """

    frozen_prefixes: ClassVar[tuple[str, ...]] = ()
    #: What each logged metric suffix measures (``val/psnr{suffix}``), for the summary the CLI prints.
    metric_labels: ClassVar[dict[str, str]] = {"": "whole image"}

    def __init__(self, zoom: int, in_channels: int, patch_size: int) -> None:
        super().__init__()
        if zoom < 1 or in_channels < 1 or patch_size < 1:
            raise ValueError(f"zoom, in_channels and patch_size must be positive, got {zoom}, {in_channels}, {patch_size}")
        self.zoom = zoom
        self.in_channels = in_channels
        self.patch_size = patch_size

    def metric_goals(self) -> dict[str, str]:
        """The direction of each validation metric this module logs, by name: ``"max"`` or ``"min"``
        (used for the best-value summaries of :class:`~lightning_modules.callbacks.WandbBestSummaries`)."""
        return {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(self.frozen_prefixes)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        own = self.state_dict()
        checkpoint["state_dict"].update({k: v for k, v in own.items() if k.startswith(self.frozen_prefixes)})
