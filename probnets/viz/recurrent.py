"""Figures of recurrent networks: how much a HyperLSTM's weights change at each character."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, overload

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from probnets.viz.images import PathT, TensorOrArray, save_figure  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_weight_change"]

#: How whitespace is drawn as a tick label.
_VISIBLE = {"\n": "⏎", " ": "␣", "\t": "⇥"}


@overload
def plot_weight_change(
    change: TensorOrArray,
    characters: str | Sequence[str],
    path: None = None,
    per_row: int = 60,
    gate_names: str | Sequence[str] = "ifgo",
    title: str | None = None,
) -> Figure: ...


@overload
def plot_weight_change(
    change: TensorOrArray,
    characters: str | Sequence[str],
    path: PathT,
    per_row: int = 60,
    gate_names: str | Sequence[str] = "ifgo",
    title: str | None = None,
) -> PathT: ...


def plot_weight_change(
    change: TensorOrArray,
    characters: str | Sequence[str],
    path: PathT | None = None,
    per_row: int = 60,
    gate_names: str | Sequence[str] = "ifgo",
    title: str | None = None,
) -> Figure | PathT:
    """
    Heat map of the per-step change of a HyperLSTM's recurrent weights, one row per gate and
    one column per character read, wrapped into panels of ``per_row`` characters, with one
    colour scale (and colorbar) shared by every panel.

    :param change: ``(T, G)`` sizes :math:`\\|W_t - W_{t-1}\\|_F` per step and gate, e.g.
        one sequence and layer of :meth:`probnets.nn.HyperLSTMCell.modulation` or of
        ``HyperLSTM(..., return_modulation=True)``.
    :param characters: the ``T`` characters read (a string or a sequence of strings), drawn
        as tick labels (whitespace made visible).
    :param path: save the figure there (and close it) when given.
    :param int per_row: characters per panel.
    :param gate_names: ``G`` row labels (a string of one-letter names or a sequence).
    :returns: the figure, or ``path`` when saved.
    """
    values = torch.as_tensor(change).detach().cpu().double()
    if values.dim() != 2 or values.shape[1] != len(gate_names):
        raise ValueError(
            f"change: expected shape (T, {len(gate_names)}), got {tuple(values.shape)}"
        )
    characters = list(characters)
    if len(characters) != values.shape[0]:
        raise ValueError(
            f"characters: expected {values.shape[0]} (one per step), got {len(characters)}"
        )
    if not isinstance(per_row, int) or per_row < 1:
        raise ValueError(f"per_row: expected a positive int, got {per_row!r}")
    steps = values.shape[0]
    rows = max(1, math.ceil(steps / per_row))
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(max(6.0, 0.22 * min(steps, per_row) + 2.5), 1.5 * rows + 0.9),
        squeeze=False,
    )
    axes = axes[:, 0]
    top = float(values.max()) if steps else 1.0
    image = None
    for row, ax in enumerate(axes):
        part = values[row * per_row : (row + 1) * per_row]
        image = ax.imshow(
            part.t().numpy(),
            aspect="auto",
            cmap="magma",
            vmin=0.0,
            vmax=top or 1.0,
            interpolation="nearest",
        )
        ax.set_yticks(range(len(gate_names)), list(gate_names))
        ax.set_ylabel("gate")
        labels = characters[row * per_row : (row + 1) * per_row]
        ax.set_xticks(
            range(len(labels)), [_VISIBLE.get(c, c) for c in labels], fontsize=7, family="monospace"
        )
    assert image is not None  # there is at least one panel
    axes[-1].set_xlabel("character read at step t (test text)")
    fig.colorbar(
        image,
        ax=list(axes),
        fraction=0.03,
        pad=0.01,
        label=r"$\Vert W_t - W_{t-1} \Vert_F$ (Frobenius norm)",
    )
    fig.suptitle(title or "HyperLSTM: change of each gate's recurrent weights per character")
    if path is not None:
        return save_figure(fig, path)
    return fig
