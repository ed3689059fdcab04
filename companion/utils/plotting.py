"""Figures for the book: training curves, image grids, confusion matrices, decision regions.

Every figure has an opaque white background and dark text, so it reads the same in the book's
light and dark themes (a transparent figure would put black labels on a black page). Functions
return the matplotlib ``Figure``; notebooks display it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import torch

BOOK_STYLE: dict[str, Any] = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.transparent": False,
    "text.color": "#222222",
    "axes.labelcolor": "#222222",
    "axes.edgecolor": "#444444",
    "xtick.color": "#222222",
    "ytick.color": "#222222",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
    "font.size": 10,
    "axes.prop_cycle": matplotlib.cycler(color=["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]),
}


def use_book_style() -> None:
    """Apply the book's matplotlib style globally (notebooks call this once)."""
    plt.rcParams.update(BOOK_STYLE)


def _figure(figsize: tuple[float, float], ncols: int = 1, nrows: int = 1):
    with plt.rc_context(BOOK_STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    fig.patch.set_facecolor("white")
    return fig, axes


def plot_history(history: Any, metrics: Sequence[str] = ("loss", "accuracy"),
                 figsize: tuple[float, float] = (9, 3.2), val_label: str = "validation"):
    """Training curves: one panel per metric, train and validation lines.

    Args:
        history: a ``companion.engine.History`` (or anything with ``history[key]`` lists, keys
            ``"epoch"``, ``"train_<metric>"``, ``"val_<metric>"``).
        metrics: metric names to plot.
        figsize: figure size in inches.
        val_label: legend label of the ``val_*`` curves (e.g. "test" when the held-out set
            passed to ``fit`` is the test split).

    Returns:
        The matplotlib Figure.
    """
    fig, axes = _figure(figsize, ncols=len(metrics))
    epochs = list(history["epoch"])
    for ax, metric in zip(axes[0], metrics):
        for split, style in (("train", "-o"), ("val", "-s")):
            key = f"{split}_{metric}"
            try:
                values = list(history[key])
            except KeyError:
                continue
            if values and all(v is not None for v in values):
                ax.plot(epochs, values, style, markersize=3, label=val_label if split == "val" else split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
    fig.tight_layout()
    return fig


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
                scale: float = 1.3, cmap: str = "gray"):
    """A grid of images.

    Args:
        images: ``(N, C, H, W)`` or ``(N, H, W)`` tensor, values in ``[0, 1]`` (or uint8).
        titles: optional title per image.
        ncols: images per row.
        scale: inches per image.
        cmap: colour map for single-channel images.

    Returns:
        The matplotlib Figure.
    """
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        images = images.float() / 255
    if images.dim() == 3:
        images = images.unsqueeze(1)  # (N, 1, H, W)
    count = images.shape[0]
    ncols = min(ncols, count)
    nrows = (count + ncols - 1) // ncols
    fig, axes = _figure((scale * ncols, scale * nrows * (1.25 if titles else 1.0)), ncols=ncols, nrows=nrows)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= count:
            continue
        image = images[index].permute(1, 2, 0).clamp(0, 1).numpy()  # (H, W, C)
        if image.shape[2] == 1:
            ax.imshow(image[:, :, 0], cmap=cmap, vmin=0, vmax=1)
        else:
            ax.imshow(image)
        if titles is not None:
            ax.set_title(titles[index], fontsize=8)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix: torch.Tensor, class_names: Sequence[str], normalize: bool = True,
                          figsize: tuple[float, float] = (6.5, 5.5)):
    """A confusion matrix as a heat map; rows are true classes, columns predicted classes.

    Args:
        matrix: ``(K, K)`` counts, ``matrix[i, j]`` = examples of class i predicted as j.
        class_names: K names.
        normalize: show each row as fractions of that class (the diagonal is per-class recall).
        figsize: figure size in inches.

    Returns:
        The matplotlib Figure.
    """
    counts = matrix.detach().cpu().double()
    values = counts / counts.sum(dim=1, keepdim=True).clamp(min=1) if normalize else counts
    fig, axes = _figure(figsize)
    ax = axes[0, 0]
    ax.grid(False)
    image = ax.imshow(values.numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "count")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    threshold = 0.5 * float(values.max())
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            value = float(values[i, j])
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if value > threshold else "#222222")
    fig.tight_layout()
    return fig


def plot_decision_regions(predict: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor,
                          labels: torch.Tensor, ax: Any = None, resolution: int = 200, margin: float = 0.5,
                          title: str | None = None):
    """Colour the plane by a classifier's prediction and scatter the labelled points on top.

    Args:
        predict: maps ``(M, 2)`` float points to ``(M,)`` integer class predictions.
        points: ``(N, 2)`` points.
        labels: ``(N,)`` integer labels.
        ax: matplotlib Axes to draw into (a new figure when None).
        resolution: grid points per axis.
        margin: extra space around the data, in data units.
        title: the panel title.

    Returns:
        The matplotlib Figure.
    """
    if ax is None:
        fig, axes = _figure((4, 4))
        ax = axes[0, 0]
    else:
        fig = ax.figure
    points, labels = points.detach().cpu(), labels.detach().cpu()
    low, high = points.min(dim=0).values - margin, points.max(dim=0).values + margin
    xs = torch.linspace(float(low[0]), float(high[0]), resolution)
    ys = torch.linspace(float(low[1]), float(high[1]), resolution)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")  # (R, R) each
    grid = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)  # (R*R, 2)
    with torch.no_grad():
        regions = predict(grid).reshape(resolution, resolution).cpu()  # (R, R)
    num_classes = int(max(int(labels.max()), int(regions.max())) + 1)
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"][:max(num_classes, 2)]
    cmap = matplotlib.colors.ListedColormap(colours)
    ax.contourf(grid_x.numpy(), grid_y.numpy(), regions.numpy(), levels=np.arange(-0.5, num_classes),
                cmap=cmap, alpha=0.25)
    ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), c=labels.numpy(), cmap=cmap,
               vmin=-0.5, vmax=num_classes - 0.5, edgecolors="#222222", linewidths=0.5, s=18)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.grid(False)
    if title:
        ax.set_title(title)
    return fig
