"""ops.local_shifts: tile-wise sub-pixel phase correlation against known translations and shift fields."""

from __future__ import annotations

import math

import pytest
import torch

from ops.local_shifts import local_shifts
from tests.ops.test_registration import _texture

pytestmark = pytest.mark.usefixtures("one_thread")


def _grid(height: int = 192, width: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij")
    return xs, ys


@pytest.mark.parametrize("shift", [(0.0, 0.0), (2.3, -1.4), (0.45, 0.2), (-7.7, 3.05)])
def test_recovers_a_known_translation(shift):
    xs, ys = _grid()
    fixed = _texture(xs, ys)
    moving = _texture(xs - shift[0], ys - shift[1])  # fixed(x) = moving(x + d)
    centres, shifts = local_shifts(fixed, moving, tile=64)
    assert centres.shape == shifts.shape == (12, 2)
    assert centres[0].tolist() == [31.5, 31.5] and centres[-1].tolist() == [223.5, 159.5]
    assert (shifts - torch.tensor(shift, dtype=torch.float64)).abs().max() <= 0.06


def test_measures_a_shift_that_varies_over_the_image():
    xs, ys = _grid()
    fixed = _texture(xs, ys)
    field = 1.5 * torch.sin(2 * math.pi * xs / 512)  # a smooth horizontal displacement, 0 … 1.5 px
    moving = _texture(xs - field, ys)
    centres, shifts = local_shifts(fixed, moving, tile=32, step=32)
    expected = 1.5 * torch.sin(2 * math.pi * centres[:, 0] / 512)
    assert (shifts[:, 0] - expected).abs().max() < 0.1
    assert shifts[:, 1].abs().max() < 0.1


def test_flat_tiles_have_no_shift():
    xs, ys = _grid(128, 192)
    fixed = torch.where(xs < 64, _texture(xs, ys), torch.zeros_like(xs))
    _, shifts = local_shifts(fixed, fixed.clone(), tile=64)  # tiles in raster order, 2 rows × 3 columns
    assert torch.isnan(shifts[[2, 5]]).all()  # the right third is flat
    assert (shifts[[0, 3]] == 0).all()


def test_guards():
    with pytest.raises(ValueError, match="same size"):
        local_shifts(torch.zeros(64, 64), torch.zeros(64, 65))
    with pytest.raises(ValueError, match="tile"):
        local_shifts(torch.zeros(32, 32), torch.zeros(32, 32), tile=64)
