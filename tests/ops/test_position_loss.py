"""Position-preserving loss (SelfDZSR Eq. 4 and the official FilterLoss) against a naive loop reference."""

import pytest
import torch

from ops.position_loss import PositionLoss, position_loss


def naive_position_loss(weight: torch.Tensor, form: str) -> float:
    """Loops over output, input channel, row and column, written from the formulas."""
    out_channels, in_channels, k, _ = weight.shape
    c = [i - (k - 1) / 2 for i in range(k)]
    w = weight.tolist()
    if form == "paper":
        total = 0.0
        for o in range(out_channels):
            for n in range(in_channels):
                row = sum(c[i] * w[o][n][i][j] for i in range(k) for j in range(k))
                col = sum(c[j] * w[o][n][i][j] for i in range(k) for j in range(k))
                total += abs(row) + abs(col)
        return total / (out_channels * in_channels)
    per_column = per_row = 0.0
    for o in range(out_channels):
        for n in range(in_channels):
            for j in range(k):
                per_column += abs(sum(c[i] * w[o][n][i][j] for i in range(k)) / k)
            for i in range(k):
                per_row += abs(sum(c[j] * w[o][n][i][j] for j in range(k)) / k)
    count = out_channels * in_channels * k
    return per_column / count + per_row / count


@pytest.mark.parametrize("form", ["paper", "code"])
@pytest.mark.parametrize("k", [3, 5, 7, 4])
def test_matches_the_naive_reference_in_float64(form, k):
    weight = torch.randn(3, 2, k, k, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    assert position_loss(weight, form).item() == pytest.approx(naive_position_loss(weight, form), rel=1e-12)


@pytest.mark.parametrize("form", ["paper", "code"])
@pytest.mark.parametrize("k", [3, 5, 7])
def test_zero_for_symmetric_kernels(form, k):
    w = torch.randn(4, 3, k, k, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    symmetric = w + w.flip(-1) + w.flip(-2) + w.flip(-1, -2)
    assert position_loss(symmetric, form).item() == pytest.approx(0.0, abs=1e-12)
    assert position_loss(w, form).item() > 1e-3  # an arbitrary kernel is penalised


def test_hand_values_for_off_centre_mass():
    corner = torch.zeros(1, 1, 3, 3)
    corner[0, 0, 0, 0] = 1.0  # centroid (−1, −1)
    assert position_loss(corner, "paper").item() == pytest.approx(2.0)
    # code: column 0 has |(1/3)·(−1)|, the others 0 → mean over 3 columns 1/9; rows likewise.
    assert position_loss(corner, "code").item() == pytest.approx(2 / 9)
    bottom = torch.zeros(2, 1, 5, 5)
    bottom[0, 0, 4, 2] = 1.0  # kernel 0: centroid (+2, 0); kernel 1 is empty (centred)
    assert position_loss(bottom, "paper").item() == pytest.approx(2.0 / 2)  # mean over the two kernels
    assert position_loss(bottom, "code").item() == pytest.approx((2 / 5) / (2 * 5))


def test_paper_form_sees_only_the_centroid_the_code_form_every_row_and_column():
    """Mass at (0, 0) and (2, 2): the centroid is centred (paper: 0), but columns 0 and 2 and rows 0 and 2 are not."""
    diagonal = torch.zeros(1, 1, 3, 3)
    diagonal[0, 0, 0, 0] = diagonal[0, 0, 2, 2] = 1.0
    assert position_loss(diagonal, "paper").item() == pytest.approx(0.0)
    assert position_loss(diagonal, "code").item() == pytest.approx(4 / 9)


@pytest.mark.parametrize("form", ["paper", "code"])
def test_gradcheck(form):
    weight = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    weight.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: position_loss(w, form), (weight,))


def test_module_equals_function_and_guards():
    weight = torch.randn(2, 3, 5, 5)
    for form in ("paper", "code"):
        torch.testing.assert_close(PositionLoss(form)(weight), position_loss(weight, form))
    assert PositionLoss().form == "paper"
    with pytest.raises(ValueError, match="form"):
        position_loss(weight, "kernelgan")
    with pytest.raises(ValueError, match="form"):
        PositionLoss("sum")
    with pytest.raises(ValueError, match=r"\(O, I, k, k\)"):
        position_loss(torch.randn(2, 3, 5, 4))
    with pytest.raises(ValueError, match=r"\(O, I, k, k\)"):
        position_loss(torch.randn(3, 5, 5))
    with pytest.raises(ValueError, match="floating-point"):
        position_loss(torch.ones(1, 1, 3, 3, dtype=torch.int64))
