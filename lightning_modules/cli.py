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
        self._print_summary("val")
        _finish_wandb_run()

    def after_validate(self) -> None:
        self._print_summary("val")
        _finish_wandb_run()

    def after_test(self) -> None:
        self._print_summary("test")
        _finish_wandb_run()

    def after_predict(self) -> None:
        _finish_wandb_run()

    def _print_summary(self, stage: str) -> None:
        """Each logged ``{stage}/{metric}{suffix}`` for the suffixes of the model's ``metric_labels``, next to
        ``{stage}/{metric}_bicubic{suffix}`` where the model logs that baseline."""
        if not self.trainer.is_global_zero:
            return
        labels = self.model.metric_labels
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith(f"{stage}/")}
        rows = []
        for order, name in enumerate(_METRICS):
            for position, (suffix, label) in enumerate(labels.items()):
                model = metrics.get(f"{stage}/{name}{suffix}")
                if model is not None:
                    rows.append((position, order, name + suffix, model, metrics.get(f"{stage}/{name}_bicubic{suffix}"), label))
        if not rows:
            return
        with_bicubic = any(bicubic is not None for *_, bicubic, _ in rows)
        heading = " (model vs bicubic upsampling of the input, same images):" if with_bicubic else ":"
        print(f"\nFinal {_STAGES[stage]} metrics{heading}")
        width = max(len(key) for _, _, key, *_ in rows) + 2
        for _, _, key, model, bicubic, label in sorted(rows):
            baseline = f"   bicubic {bicubic:8.4f}" if bicubic is not None else ""
            print(f"  {key:<{width}} model {model:8.4f}{baseline}   ({label})")


#: Metric names of the summary, in printing order.
_METRICS = ("psnr", "ssim", "lpips", "lpips_random_backbone", "gradient_energy")
_STAGES = {"val": "validation", "test": "test"}


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
