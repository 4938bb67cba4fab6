"""Integer translation search (reference §1.13) against a brute-force reference."""

import pytest
import torch

from ops import TranslationSearch, translation_search


def brute_force(pred, target, metric="l1"):
    """Reference: every shift, every sample, plain loops."""
    h, w = pred.shape[-2:]
    crops, shifts = [], []
    for b in range(pred.shape[0]):
        best = None
        for dy in range(target.shape[-2] - h + 1):
            for dx in range(target.shape[-1] - w + 1):
                diff = pred[b] - target[b, :, dy : dy + h, dx : dx + w]
                cost = (diff.abs() if metric == "l1" else diff**2).mean().item()
                if best is None or cost < best[0]:
                    best = (cost, dy, dx)
        crops.append(target[b, :, best[1] : best[1] + h, best[2] : best[2] + w])
        shifts.append((best[1], best[2]))
    return torch.stack(crops), torch.tensor(shifts)


@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_recovers_known_shifts_per_sample(metric):
    torch.manual_seed(0)
    target = torch.rand(3, 3, 20, 22)
    true_shifts = [(0, 6), (3, 2), (6, 0)]
    pred = torch.stack([target[b, :, dy : dy + 14, dx : dx + 16] for b, (dy, dx) in enumerate(true_shifts)])
    aligned, shifts = translation_search(pred, target, metric=metric)
    assert shifts.tolist() == [list(s) for s in true_shifts]
    torch.testing.assert_close(aligned, pred)


def test_matches_brute_force_on_noisy_data():
    torch.manual_seed(1)
    target = torch.rand(2, 3, 18, 18)
    pred = target[:, :, 2:14, 3:15] + 0.3 * torch.randn(2, 3, 12, 12)
    aligned, shifts = translation_search(pred, target)
    ref_aligned, ref_shifts = brute_force(pred, target)
    assert torch.equal(shifts, ref_shifts)
    torch.testing.assert_close(aligned, ref_aligned)


def test_stride_keeps_the_centre_and_gradients_reach_the_target():
    target = torch.rand(1, 1, 11, 11, requires_grad=True)
    pred = target.detach()[:, :, 2:9, 2:9]  # the centred crop (margin 2) is not on the stride-3 grid…
    aligned, shifts = TranslationSearch(stride=3)(pred, target)
    assert shifts.tolist() == [[2, 2]]  # …but is always a candidate
    aligned.sum().backward()
    assert target.grad.sum() == 49


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="even margin"):
        translation_search(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 11, 11))
    with pytest.raises(ValueError, match="expected pred"):
        translation_search(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 12, 12))
