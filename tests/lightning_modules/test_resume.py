"""A run stopped at a checkpoint and resumed ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.cli import cli_main
from tests.conftest import tiny_run_args


def weights(cli) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in cli.model.net.state_dict().items()}


@pytest.mark.parametrize(
    "options",
    [[], ["--model.init_args.norm", "batch", "--model.init_args.cobi_max_positions", "64"]],
    ids=["demo", "batchnorm-cobi-sampling"],
)
def test_resumed_run_ends_with_the_same_weights(srraw_root, tmp_path, options):
    """Also with BatchNorm (its running statistics are weights of the checkpoint) and CoBi drawing positions."""
    def run(folder: str, epochs: int, *extra: str):
        return cli_main(["fit", *tiny_run_args(srraw_root, tmp_path / folder, logger="csv"), *options, "--trainer.max_epochs", str(epochs), *extra])

    uninterrupted = run("a", 3)
    stopped = run("b", 1)
    checkpoint = stopped.trainer.checkpoint_callback.last_model_path
    assert stopped.trainer.global_step == uninterrupted.trainer.global_step // 3 > 0
    resumed = run("c", 3, "--ckpt_path", checkpoint)
    assert resumed.trainer.global_step == uninterrupted.trainer.global_step

    expected, actual = weights(uninterrupted), weights(resumed)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
    # …and training really moved the weights (the comparison is not between two untouched models)
    assert any(not torch.equal(weights(stopped)[k], expected[k]) for k in expected if expected[k].is_floating_point())
