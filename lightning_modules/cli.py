"""The ``lightning`` command: rawzoom's LightningCLI.

    lightning fit --config configs/zoomlearn_4x.yaml --config configs/demo/zoomlearn.yaml
    lightning validate|test|predict --config … --ckpt_path …

Models are subclasses of :class:`~lightning_modules.base.ZoomModule` and data modules subclasses of
:class:`~datamodules.base.ZoomDataModule`, both chosen by ``class_path``. The arguments that must agree
are linked, never repeated: ``data.zoom`` → ``model.zoom``, ``data.patch_size`` → ``model.patch_size``
(at parse time) and the instantiated data's ``in_channels`` → ``model.in_channels``.
"""

from __future__ import annotations

import wandb
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from datamodules.base import ZoomDataModule
from lightning_modules.base import ZoomModule
from lightning_modules.callbacks.run_config import RunConfigSaver

__all__ = ["RawZoomCLI", "cli_main", "main"]


class RawZoomCLI(LightningCLI):
    """LightningCLI with the data ↔ model links and a summary printed after ``fit``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.init_args.zoom", "model.init_args.zoom")
        parser.link_arguments("data.init_args.patch_size", "model.init_args.patch_size")
        parser.link_arguments(
            "data", "model.init_args.in_channels", compute_fn=lambda data: data.in_channels, apply_on="instantiate"
        )

    def after_fit(self) -> None:
        """Print the last validation metrics, the model next to bicubic upsampling; close the W&B run."""
        self._print_validation_summary()
        _finish_wandb_run()

    def after_validate(self) -> None:
        _finish_wandb_run()

    def after_test(self) -> None:
        _finish_wandb_run()

    def after_predict(self) -> None:
        _finish_wandb_run()

    def _print_validation_summary(self) -> None:
        if not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        if not metrics:
            return
        print("\nFinal validation metrics (model vs bicubic upsampling of the input, same images):")
        for name in ("psnr", "ssim", "lpips", "lpips_random_backbone"):
            for suffix, label in (("", "registered GT"), ("_aligned", "GT aligned to each output")):
                model, bicubic = metrics.get(f"val/{name}{suffix}"), metrics.get(f"val/{name}_bicubic{suffix}")
                if model is not None and bicubic is not None:
                    print(f"  {name + suffix:<28} model {model:8.4f}   bicubic {bicubic:8.4f}   ({label})")


def _finish_wandb_run() -> None:
    """A CLI command is one W&B run: close it, so the next command (e.g. from Python) starts a new one."""
    if wandb.run is not None:
        wandb.finish()


def cli_main(args: list[str] | dict | None = None, run: bool = True) -> RawZoomCLI:
    """Build (and with ``run=True`` execute) the CLI; returns it (Lightning's run-from-Python pattern).

    With ``run=False`` only the model, data and trainer are instantiated; no data, weights or network
    are read (all I/O happens in ``prepare_data``/``setup``).
    """
    return RawZoomCLI(
        ZoomModule,
        ZoomDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunConfigSaver,
        save_config_kwargs={"save_to_log_dir": False},
        args=args,
        run=run,
    )


def main() -> None:
    """Console-script entry point ``lightning``."""
    cli_main()
