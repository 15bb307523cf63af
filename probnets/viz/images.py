"""Image grids and training curves, written atomically as PNG files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar, Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from probnets.files import atomic_path  # noqa: E402

if TYPE_CHECKING:
    import numpy as np
    import torch
    from matplotlib.figure import Figure

# What the figures draw: a tensor (detached and moved to the CPU first) or a NumPy array.
TensorOrArray = Union["torch.Tensor", "np.ndarray"]
# A figure's path, returned as given.
PathT = TypeVar("PathT", str, "os.PathLike[str]")


def save_figure(fig: Figure, path: PathT, dpi: float = 120) -> PathT:
    """Save ``fig`` to ``path`` atomically (temporary file, then rename) and close it; the
    format follows the extension (PNG without one)."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(
                tmp,
                dpi=dpi,
                bbox_inches="tight",
                format=None if os.path.splitext(path)[1] else "png",
            )
    finally:
        plt.close(fig)
    return path


def image_rows(
    rows: Sequence[TensorOrArray | Sequence[TensorOrArray]],
    path: PathT,
    titles: Sequence[str] | None = None,
    cell: float = 1.1,
) -> PathT:
    """Plot rows of grey images (each row a sequence of (H, W) arrays/tensors, or one
    (N, H, W) tensor or array) to ``path``, with an optional title per row; ``cell`` is the
    side of one image in inches."""
    num_rows, num_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(
        num_rows, num_cols, figsize=(cell * num_cols, cell * num_rows), squeeze=False
    )
    for r, row in enumerate(rows):
        for c in range(num_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                image = row[c]
                image = image.detach().cpu().numpy() if hasattr(image, "detach") else image
                ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        if titles:
            axes[r][0].set_title(titles[r], fontsize=8, loc="left")
    return save_figure(fig, path)


def curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: PathT,
    xlabel: str = "training step",
    ylabel: str = "",
    title: str = "",
) -> PathT:
    """Plot ``{label: (xs, ys)}`` line series to ``path``."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
