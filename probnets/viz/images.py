"""Image grids and training curves, written atomically as PNG files."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from probnets.files import atomic_path  # noqa: E402


def save_figure(fig, path, dpi=120):
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


def image_rows(rows, path, titles=None, cell=1.1):
    """Plot rows of grey images (each row a sequence of (H, W) arrays/tensors) to ``path``."""
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


def curves(series, path, xlabel="training step", ylabel="", title=""):
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
