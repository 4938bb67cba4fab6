"""Best validation values as W&B run summaries, so that the runs table compares runs by their best epoch.

W&B keeps the last logged value of a metric as its summary by default. This callback declares, once per
run, the summary of every metric in the module's :meth:`~lightning_modules.base.ZoomModule.metric_goals`
(e.g. the maximum of ``val/psnr``, the minimum of ``val/lpips``). The names are declared one by one: a
W&B glob pattern loses against the catch-all ``*`` that Lightning's WandbLogger declares first.
"""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

__all__ = ["WandbBestSummaries"]


class WandbBestSummaries(Callback):
    """``define_metric(name, summary=goal)`` for each of ``pl_module.metric_goals()`` on every W&B logger (rank 0).

    Modules without ``metric_goals`` are left alone. The step axis stays Lightning's ``trainer/global_step``.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        goals = getattr(pl_module, "metric_goals", None)
        if not trainer.is_global_zero or goals is None:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for name, goal in goals().items():
                    logger.experiment.define_metric(
                        name, summary=goal, step_metric="trainer/global_step", step_sync=True
                    )
