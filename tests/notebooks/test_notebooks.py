"""The notebooks run top to bottom in a real Jupyter kernel (nbclient) and show sensible numbers."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lightning_modules.selfdzsr import DECODE_HALO
from ops.geometry import central_box

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _execute(name: str, workdir: Path, settings: dict[str, str] | None = None) -> tuple[str, int]:
    """Run ``notebooks/<name>`` from ``workdir/notebooks`` (its data goes to ``workdir/data``, its plotting
    helpers are copied along), each ``settings`` line of its code replaced first; return all stdout and the
    number of figures (PNG outputs). The executed notebook is written back there."""
    folder = workdir / "notebooks"
    folder.mkdir()
    for file in (name, "plotting.py"):
        shutil.copy(NOTEBOOKS / file, folder / file)
    notebook = nbformat.read(folder / name, as_version=4)
    for old, new in (settings or {}).items():
        cells = [cell for cell in notebook.cells if cell.cell_type == "code" and old in cell.source]
        assert len(cells) == 1, f"{name}: {old!r} is not a line of exactly one cell"
        cells[0].source = cells[0].source.replace(old, new)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    nbformat.write(notebook, folder / name)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    return "".join(output.get("text", "") for output in outputs), sum("image/png" in output.get("data", {}) for output in outputs)


@pytest.mark.parametrize("dataset", ["srraw", "zrr", "nikon", "camerafusion"])
def test_misalignment_notebook(tmp_path, dataset):
    text, figures = _execute("misalignment.ipynb", tmp_path, {'DATASET = "srraw"': f'DATASET = "{dataset}"'})
    assert figures == 3
    count = int(re.search(rf"{dataset}: (\d+) pairs in simulated data", text).group(1))
    # the DIS flow of one pair, averaged over 32-px tiles, against the simulator's true shift at their centres
    # (measured: SR-RAW 0.06 px for a true 0.04, ZRR 0.28 px for 0.87, Nikon 0.06 and CameraFusion 0.08 px for 0)
    error, true_mean = map(float, re.search(
        r"flow vs true shift over \d+ tiles: mean error ([\d.]+) px, .*true shifts: mean ([\d.]+) px\)", text
    ).groups())
    assert error < 0.5, error
    # every pair of the split in the table, its tile shifts against the truth (measured 0.07–0.36 px)
    rows = re.findall(r"^(\S+) +(\d+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)( +FLAGGED)?$", text, re.M)
    assert len(rows) == count >= 4, rows
    assert float(re.search(r"tile shifts vs truth over the split: mean error ([\d.]+) px", text).group(1)) < 0.5
    for _, _, median, p90, largest, _, pair_error, flagged in rows:
        assert float(median) <= float(p90) <= float(largest) and float(pair_error) < 1.0
        assert bool(flagged) == (float(p90) > 2.0)
    if dataset == "zrr":  # a misalignment of a few pixels that the measurement follows
        assert true_mean > 0.5 and max(float(row[5]) for row in rows) > 1.0
    if dataset == "srraw":  # 2 scenes × 7 shots: EXIF zoom against the registration's scale
        focal = re.findall(r"^\d{5}/\d{5} +(\d+)mm +([\d.]+) +([\d.]+) +([+-][\d.]+)%", text, re.M)
        assert len(focal) == 14 and all(abs(float(offset)) < 5.0 for *_, offset in focal), focal
    if dataset in ("nikon", "camerafusion"):  # prepare's report on two simulated capture pairs
        reports = re.findall(
            r"^IMG_\d{4} +written +([\d.]+) +\([\d, ]+\) +([\d.]+)% +([\d.]+) +([\d.]+)→ *([\d.]+) +([\d.]+)px", text, re.M
        )
        assert len(reports) == 2, text[-2000:]
        for zoom, kept, _, before, after, residual in reports:
            assert abs(float(zoom) - (4.0 if dataset == "nikon" else 2.0)) < 0.05
            assert float(kept) > 50.0 and float(after) < float(before) and float(residual) < 0.5


def test_cobi_matching_notebook(tmp_path):
    text, figures = _execute("cobi_matching.ipynb", tmp_path)
    assert figures == 4
    true_length = float(re.search(r"true displacement .* length ([\d.]+) px", text).group(1))
    # w_s → (one-to-one share, mean arrow length, mean distance to the true match), CoBi_RGB of a pair moved by (2, 1) px
    sweep = {
        float(w_spatial): tuple(map(float, values))
        for w_spatial, *values in re.findall(
            r"w_s=([\d.]+): unique-match share ([\d.]+), mean arrow length ([\d.]+) px, "
            r"mean distance to the true match ([\d.]+) px",
            text,
        )
    }
    assert len(sweep) == 11 and true_length == 2.24
    shares = [share for share, _, _ in sweep.values()]  # measured 0.86 (CX) rising to 1.00
    assert shares[0] < 0.9 and sweep[0.1][0] > shares[0] + 0.1 and sweep[1.0][0] > 0.99, shares
    assert sweep[0.0002][0] > shares[0] + 0.01, shares
    assert all(later > earlier - 0.03 for earlier, later in zip(shares, shares[1:])), shares
    # CX's far, random matches make its arrows too long (3.15 px); the configs' w_s = 2e-4 per pixel keeps the
    # true displacement (2.30 px, 0.91 px from the true matches); w_s = 0.1 pins every patch to its own position
    cx_length, cx_error = sweep[0.0][1:]
    config_length, config_error = sweep[0.0002][1:]
    assert cx_length > true_length + 0.5 and cx_error > 1.2
    assert abs(config_length - true_length) < 0.5 and config_error < cx_error - 0.5
    assert sweep[0.1][1] < 0.3 and abs(sweep[0.1][2] - true_length) < 0.3
    # controlled horizontal shifts: L1 and the pinned CoBi grow about 4× from 0 to 4 px, CX about 1.2×
    rows = re.findall(
        r"loss under shift ([\d.]+) px: L1 ([\d.]+), CX ([\d.]+), CoBi w_s=0.0002 ([\d.]+), CoBi w_s=0.1 ([\d.]+)", text
    )
    losses = {float(shift): list(map(float, values)) for shift, *values in rows}
    assert sorted(losses) == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
    (l1_0, cx_0, config_0, pinned_0), (l1_4, cx_4, config_4, pinned_4) = losses[0.0], losses[4.0]
    assert cx_0 < cx_4 < 1.5 * cx_0 and config_0 < config_4 < pinned_4
    assert l1_4 > 2.5 * l1_0 and pinned_4 > 2.5 * pinned_0 and l1_4 / l1_0 > 2 * cx_4 / cx_0


def test_selfdzsr_reference_notebook(tmp_path):
    text, figures = _execute("selfdzsr_reference.ipynb", tmp_path)
    assert figures == 5
    assert (tmp_path / "data" / "selfdzsr_notebook" / "simulation.json").exists()
    # the Ref box is the central box of the LR, the Ref s× the box (×4: LR 136×184 → box 34×46 at (51, 69))
    height, width = map(int, re.search(r"LR (\d+)x(\d+), GT", text).groups())
    top, left, box_h, box_w, ref_h, ref_w = map(int, re.search(
        r"Ref box: top (\d+), left (\d+), height (\d+), width (\d+) \(LR px\); Ref size (\d+)x(\d+)", text
    ).groups())
    assert (top, left, box_h, box_w) == central_box(height, width, 4) and (ref_h, ref_w) == (4 * box_h, 4 * box_w)
    assert re.search(r"matched displacement: mean [\d.]+ px, max [\d.]+ px", text)
    assert re.search(r"AdaSTN 1 offsets: mean \|Δ\| [\d.]+ px", text)
    # the tiled decoder equals one pass (measured 0) on an image where 16-px tiles with their halo do not each
    # cover it whole; the official 3 × 3 tiling is another graph (measured 5.9e-2 overall, 2.3e-4 more than
    # 8 LR px from the border)
    assert min(height, width) > 2 * (16 + DECODE_HALO)
    tiled = float(re.search(r"max \|tiled - untiled\|: (\S+)", text).group(1))
    official = float(re.search(r"max \|official - untiled\|: (\S+)", text).group(1))
    official_inner = float(re.search(r"max \|official - untiled\| away from the border: (\S+)", text).group(1))
    assert tiled < 1e-4 and official > 1e-4 and official_inner <= official
    psnr = re.search(
        r"PSNR full/centre/corner model: ([\d.-]+) / ([\d.-]+) / ([\d.-]+) dB, bicubic: ([\d.-]+) / ([\d.-]+) / ([\d.-]+) dB",
        text,
    ).groups()
    model, bicubic = list(map(float, psnr[:3])), list(map(float, psnr[3:]))
    assert all(math.isfinite(value) for value in model)
    assert all(15.0 < value < 40.0 for value in bicubic), bicubic


def test_rawtosrgb_alignment_notebook(tmp_path):
    text, figures = _execute("rawtosrgb_alignment.ipynb", tmp_path)
    assert figures == 5
    assert (tmp_path / "data" / "rawtosrgb_notebook" / "simulation.json").exists()
    # the GCM fitted on the image brings the raw to the target's colours
    before, after = map(float, re.search(r"GCM colour error before: ([\d.]+), after: ([\d.]+)", text).groups())
    assert after < 0.5 * before, (before, after)
    # the flow from the fitted GCM output follows the simulator's true flow
    epe, true_mean = map(float, re.search(r"flow EPE vs truth: mean ([\d.]+) px \(true flow mean ([\d.]+) px\)", text).groups())
    assert epe < 0.5 and epe < true_mean, (epe, true_mean)
    fraction = float(re.search(r"mask valid fraction: ([\d.]+)", text).group(1))
    assert 0.8 < fraction <= 1.0
    psnr = re.search(r"protocols PSNR: original ([\d.-]+) dB, align_raw ([\d.-]+) dB, align_result ([\d.-]+) dB", text)
    assert psnr and all(math.isfinite(float(value)) for value in psnr.groups())
    # for the GCM output (meaningful after the fit) removing the misalignment raises the PSNR
    original, aligned = map(float, re.search(r"GCM output PSNR: original ([\d.]+) dB, align_raw ([\d.]+) dB", text).groups())
    assert aligned >= original - 0.1 and aligned > 20.0, (original, aligned)
