"""The notebooks run top to bottom in a real Jupyter kernel (nbclient) and show sensible numbers."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _execute(name: str, workdir: Path) -> str:
    """Run ``notebooks/<name>`` from ``workdir/notebooks`` (its data goes to ``workdir/data``); all stdout."""
    folder = workdir / "notebooks"
    folder.mkdir()
    shutil.copy(NOTEBOOKS / name, folder / name)
    notebook = nbformat.read(folder / name, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    nbformat.write(notebook, folder / name)
    return "".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )


def test_srraw_misalignment_notebook(tmp_path):
    text = _execute("srraw_misalignment.ipynb", tmp_path)
    assert (tmp_path / "data" / "srraw_notebook" / "00002" / "rawzoom_alignment.json").exists()
    # the alignment against the simulator's truth (similarity + perspective + warp), in pixels of each shot
    largest, mean = map(float, re.search(r"largest error ([\d.]+) px, mean ([\d.]+) px", text).groups())
    assert largest <= 1.0 and mean <= 0.4
    assert len(re.findall(r"error [\d.]+ px  residual", text)) == 14  # 2 scenes × 7 shots
    residuals = [float(r) for r in re.findall(r"/00002 .* residual ([\d.]+) px", text)]
    assert len(residuals) == 2 and all(r < 1.0 for r in residuals)
    registered, aligned = map(float, re.search(r"PSNR registered ([\d.]+) dB, aligned ([\d.]+) dB", text).groups())
    assert 12.0 < registered <= aligned < 40.0
    # the local shifts measured by phase correlation agree with the true ones (the field follows the truth,
    # not the search window: a broken measurement reads shifts of many pixels here)
    true_largest = float(re.search(r"true local shifts: largest ([\d.]+) px", text).group(1))
    difference = float(re.search(r"measured − true: largest ([\d.]+) px", text).group(1))
    assert true_largest < 1.0 and difference < 1.0
    assert len(re.findall(r"tile at \(", text)) >= 4
