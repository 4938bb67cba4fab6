"""Small matplotlib helpers shared by the notebooks (imported from the notebooks' own folder).

Images are torch tensors: RGB (3, H, W) in [0, 1] or a single channel (H, W), shown with a colour bar.
Positions are (P, 2) arrays of (x, y) = (column, row) pixel coordinates.

:func:`save_figure` writes a notebook's figure as SVG into the folder named by ``RAWZOOM_FIGURES`` (the
README's figures: ``RAWZOOM_FIGURES=docs/figures``), and does nothing when it is not set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.quiver import Quiver


def show_images(images: Sequence[torch.Tensor], titles: Sequence[str], suptitle: str, colorbar_label: str = "") -> Figure:
    """One row of images with pixel axes; each (H, W) map gets a colour bar labelled ``colorbar_label``."""
    figure, axes = plt.subplots(1, len(images), figsize=(4.2 * len(images), 4.2), squeeze=False, layout="constrained")
    for ax, image, title in zip(axes[0], images, titles):
        if image.dim() == 3:
            ax.imshow(image.clamp(0, 1).permute(1, 2, 0).numpy())
        else:
            shown = ax.imshow(image.numpy(), cmap="magma")
            figure.colorbar(shown, ax=ax, shrink=0.8, label=colorbar_label)
        ax.set(title=title, xlabel="x (px)", ylabel="y (px)")
    figure.suptitle(suptitle)
    return figure


def draw_matches(
    ax: Axes,
    image: torch.Tensor,
    sources: np.ndarray,
    targets: np.ndarray,
    colours: np.ndarray,
    step: int,
    vmax: float,
    title: str,
) -> Quiver:
    """Arrows from ``sources`` to their matched ``targets`` over ``image`` (grey), every ``step``-th pixel
    of each axis of an H×W raster of sources, coloured by ``colours`` (P,) on [0, vmax]; returns the
    arrows for a colour bar."""
    height, width = image.shape[-2:]
    grid = np.arange(height * width).reshape(height, width)[step // 2 :: step, step // 2 :: step].ravel()
    ax.imshow(image.mean(0).numpy(), cmap="gray", vmin=0, vmax=1)
    start, move = sources[grid], targets[grid] - sources[grid]
    arrows = ax.quiver(
        start[:, 0], start[:, 1], move[:, 0], move[:, 1], colours[grid], cmap="viridis", clim=(0, vmax),
        angles="xy", scale_units="xy", scale=1, width=0.006,
    )
    ax.set(title=title, xlabel="x (px)", ylabel="y (px)", xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5))
    return arrows


def plot_curves(
    ax: Axes, x: Sequence[float], curves: Mapping[str, Sequence[float]], title: str, xlabel: str, ylabel: str
) -> None:
    """One line with markers per entry of ``curves`` (label → values at ``x``), with a legend."""
    for label, values in curves.items():
        ax.plot(x, values, marker="o", label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()


def draw_box(ax: Axes, top: float, left: float, height: float, width: float, label: str, colour: str = "cyan") -> None:
    """Outline of the pixel box rows [top, top + height), columns [left, left + width) on an image axis, in the legend."""
    ax.add_patch(
        plt.Rectangle((left - 0.5, top - 0.5), width, height, fill=False, edgecolor=colour, linewidth=1.5, label=label)
    )
    ax.legend(loc="lower right", fontsize="small")


def checkerboard(first: torch.Tensor, second: torch.Tensor, square: int) -> torch.Tensor:
    """``first`` (C, H, W) in the even squares of side ``square`` pixels, ``second`` in the odd ones."""
    height, width = first.shape[-2:]
    rows = torch.arange(height).div(square, rounding_mode="floor")[:, None]
    cols = torch.arange(width).div(square, rounding_mode="floor")[None, :]
    return torch.where((rows + cols) % 2 == 0, first, second)


def draw_flow(ax: Axes, image: torch.Tensor, flow: torch.Tensor, step: int, gain: float, title: str) -> Quiver:
    """Arrows of a flow (2, H, W) (u, v in pixels, drawn ``gain`` times their length) every ``step`` pixels
    over ``image`` (grey), coloured by their true length; returns the arrows for a colour bar."""
    height, width = flow.shape[-2:]
    ys, xs = np.mgrid[step // 2 : height : step, step // 2 : width : step]
    u, v = flow[0, ys, xs].numpy(), flow[1, ys, xs].numpy()
    ax.imshow(image.mean(0).numpy(), cmap="gray", vmin=0, vmax=1)
    arrows = ax.quiver(
        xs, ys, u, v, np.hypot(u, v), cmap="viridis", angles="xy", scale_units="xy", scale=1 / gain, width=0.005
    )
    ax.set(title=title, xlabel="x (px)", ylabel="y (px)", xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5))
    return arrows


def save_figure(figure: Figure, name: str) -> Path | None:
    """``figure`` as ``$RAWZOOM_FIGURES/<name>.svg`` (no date, fixed ids: the same figure gives the same file);
    None when ``RAWZOOM_FIGURES`` is not set."""
    folder = os.environ.get("RAWZOOM_FIGURES")
    if not folder:
        return None
    path = Path(folder) / f"{name}.svg"
    path.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context({"svg.hashsalt": name}):
        figure.savefig(path, format="svg", metadata={"Date": None})
    return path
