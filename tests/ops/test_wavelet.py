"""ops.wavelet: Haar DWT/IWT against per-block formulas, perfect reconstruction, energy, LiteISPNet layout."""

from __future__ import annotations

import pytest
import torch

from ops.wavelet import HAAR_BANDS, HaarDWT, HaarIWT, haar_dwt, haar_iwt

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive_dwt(x: torch.Tensor) -> torch.Tensor:
    """Block by block: channel 4c + j = band j of channel c, LL/LH/HL/HH = (a ± b ± c ± d)/2."""
    batch, channels, height, width = x.shape
    out = x.new_zeros(batch, 4 * channels, height // 2, width // 2)
    for b in range(batch):
        for c in range(channels):
            for i in range(height // 2):
                for j in range(width // 2):
                    tl, tr = x[b, c, 2 * i, 2 * j], x[b, c, 2 * i, 2 * j + 1]
                    bl, br = x[b, c, 2 * i + 1, 2 * j], x[b, c, 2 * i + 1, 2 * j + 1]
                    out[b, 4 * c + 0, i, j] = (tl + tr + bl + br) / 2
                    out[b, 4 * c + 1, i, j] = (tl + tr - bl - br) / 2  # top − bottom
                    out[b, 4 * c + 2, i, j] = (tl - tr + bl - br) / 2  # left − right
                    out[b, 4 * c + 3, i, j] = (tl - tr - bl + br) / 2
    return out


def _image(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_dwt_matches_the_block_formulas_in_the_interleaved_layout():
    x = _image(2, 3, 4, 6)
    y = haar_dwt(x)
    assert y.shape == (2, 12, 2, 3) and HAAR_BANDS == ("LL", "LH", "HL", "HH")
    torch.testing.assert_close(y, _naive_dwt(x), rtol=0, atol=1e-14)
    # reference §8.3: channel 4c holds ½·(sum of the 2×2 block) of input channel c
    torch.testing.assert_close(y[:, 4], 0.5 * x[:, 1].unfold(1, 2, 2).unfold(2, 2, 2).sum(dim=(-1, -2)))


def test_perfect_reconstruction():
    x = _image(2, 3, 8, 10)
    torch.testing.assert_close(haar_iwt(haar_dwt(x)), x, rtol=0, atol=1e-14)
    y = _image(1, 8, 3, 5, seed=1)
    torch.testing.assert_close(haar_dwt(haar_iwt(y)), y, rtol=0, atol=1e-14)
    # integer-valued inputs keep every intermediate exact: bit-identical reconstruction
    integers = torch.randint(-1000, 1000, (1, 2, 6, 6), generator=torch.Generator().manual_seed(2)).double()
    assert torch.equal(haar_iwt(haar_dwt(integers)), integers)


def test_constant_image_has_only_an_ll_band_and_energy_is_preserved():
    y = haar_dwt(torch.full((1, 2, 4, 4), 3.0, dtype=torch.float64))
    torch.testing.assert_close(y[:, 0::4], torch.full((1, 2, 2, 2), 6.0, dtype=torch.float64))
    assert torch.count_nonzero(y[:, 1::4]) == 0 and torch.count_nonzero(y[:, 2::4]) == 0
    assert torch.count_nonzero(y[:, 3::4]) == 0
    x = _image(2, 3, 6, 8, seed=3)
    torch.testing.assert_close(haar_dwt(x).square().sum(), x.square().sum(), rtol=1e-14, atol=0)


def test_iwt_is_the_adjoint_of_dwt_and_gradcheck():
    x, y = _image(1, 2, 4, 6, seed=4), _image(1, 8, 2, 3, seed=5)
    torch.testing.assert_close((haar_dwt(x) * y).sum(), (x * haar_iwt(y)).sum(), rtol=1e-14, atol=1e-14)
    assert torch.autograd.gradcheck(haar_dwt, (x.requires_grad_(),))
    assert torch.autograd.gradcheck(haar_iwt, (y.requires_grad_(),))


def test_modules_hold_filters_as_buffers_and_equal_the_functions():
    dwt, iwt = HaarDWT(), HaarIWT()
    for module in (dwt, iwt):
        assert list(module.parameters()) == [] and module.state_dict() == {}
        assert module.filters.shape == (4, 1, 2, 2) and set(module.filters.abs().flatten().tolist()) == {0.5}
    x = _image(2, 3, 6, 4, seed=6)
    torch.testing.assert_close(dwt(x), haar_dwt(x), rtol=0, atol=0)
    torch.testing.assert_close(iwt.double()(dwt(x)), x, rtol=0, atol=1e-14)
    assert iwt.filters.dtype == torch.float64


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="even height and width, got 5×6"):
        haar_dwt(torch.zeros(1, 1, 5, 6))
    with pytest.raises(ValueError, match="even height and width, got 4×7"):
        HaarDWT()(torch.zeros(1, 1, 4, 7))
    with pytest.raises(ValueError, match="multiple of 4 channels, got 6"):
        haar_iwt(torch.zeros(1, 6, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\), got torch.int64 \(1, 4, 4\)"):
        haar_dwt(torch.zeros(1, 4, 4, dtype=torch.long))
