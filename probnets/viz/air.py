"""Figures of AIR runs: scenes with the inferred boxes coloured by step, count confusion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.patches as patches
import matplotlib.pyplot as plt
import numpy as np

from probnets.viz.images import PathT, TensorOrArray, save_figure

STEP_COLOURS = ("tab:red", "tab:green", "tab:blue", "tab:orange", "tab:purple", "tab:cyan")


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)


def scenes_with_boxes(
    rows: Sequence[TensorOrArray],
    z_pres: TensorOrArray,
    boxes: TensorOrArray,
    path: PathT,
    titles: Sequence[str] | None = None,
    cell: float = 1.3,
) -> PathT:
    """Rows of (N, H, W) images (e.g. data and reconstruction), each image overlaid with the
    boxes ``(N, T, 4)`` (x_min, y_min, x_max, y_max, pixels) of the steps where ``z_pres``
    ``(N, T)`` is 1; step ``t``'s box has colour ``STEP_COLOURS[t]``."""
    z_pres, boxes = _numpy(z_pres), _numpy(boxes)
    num_rows, num_cols = len(rows), len(rows[0])
    fig, axes = plt.subplots(
        num_rows, num_cols, figsize=(cell * num_cols, cell * num_rows), squeeze=False
    )
    for r, row in enumerate(rows):
        images = _numpy(row)
        for c in range(num_cols):
            ax = axes[r][c]
            ax.axis("off")
            ax.imshow(np.clip(images[c], 0, 1), cmap="gray", vmin=0, vmax=1)
            for t in range(z_pres.shape[1]):
                if z_pres[c, t] > 0.5:
                    x0, y0, x1, y1 = boxes[c, t]
                    # pixel centres sit at integer coordinates in imshow; box edges at -0.5
                    ax.add_patch(
                        patches.Rectangle(
                            (x0 - 0.5, y0 - 0.5),
                            x1 - x0,
                            y1 - y0,
                            fill=False,
                            linewidth=1.2,
                            edgecolor=STEP_COLOURS[t % len(STEP_COLOURS)],
                        )
                    )
        if titles:
            axes[r][0].set_title(titles[r], fontsize=8, loc="left")
    return save_figure(fig, path)


def confusion_figure(matrix: TensorOrArray, path: PathT, title: str = "count confusion") -> PathT:
    """A count confusion matrix (rows: true count, columns: inferred count) as a heat map."""
    matrix = _numpy(matrix)
    fig, ax = plt.subplots(figsize=(0.8 * matrix.shape[1] + 1.5, 0.8 * matrix.shape[0] + 1.2))
    ax.imshow(matrix, cmap="Blues")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                str(int(matrix[i, j])),
                ha="center",
                va="center",
                fontsize=9,
                color="white" if matrix[i, j] > matrix.max() / 2 else "black",
            )
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_xlabel("inferred count")
    ax.set_ylabel("true count")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


__all__ = ["STEP_COLOURS", "confusion_figure", "scenes_with_boxes"]
