"""A run stopped at a checkpoint and resumed ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import torch

from lightning_modules.cli import cli_main
from tests.conftest import tiny_run_args


def weights(cli) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in cli.model.net.state_dict().items()}


def test_resumed_run_ends_with_the_same_weights(srraw_root, tmp_path):
    uninterrupted = cli_main(["fit", *tiny_run_args(srraw_root, tmp_path / "a", logger="csv"), "--trainer.max_epochs", "3"])

    stopped = cli_main(["fit", *tiny_run_args(srraw_root, tmp_path / "b", logger="csv"), "--trainer.max_epochs", "1"])
    checkpoint = stopped.trainer.checkpoint_callback.last_model_path
    assert stopped.trainer.global_step == uninterrupted.trainer.global_step // 3 > 0
    resumed = cli_main(
        ["fit", *tiny_run_args(srraw_root, tmp_path / "c", logger="csv"), "--trainer.max_epochs", "3", "--ckpt_path", checkpoint]
    )
    assert resumed.trainer.global_step == uninterrupted.trainer.global_step

    expected, actual = weights(uninterrupted), weights(resumed)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
    # …and training really moved the weights (the comparison is not between two untouched models)
    assert any(not torch.equal(weights(stopped)[k], expected[k]) for k in expected if expected[k].is_floating_point())
