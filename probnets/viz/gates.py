"""
Figures for gated connectivity: gate probabilities over training, the
posterior adjacency as a heat map, and accuracy against the fraction of active connections.

Every function draws on a given ``ax`` (or a new figure) and returns the figure; nothing is
shown or saved here (use :func:`save_figure`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, cast

import matplotlib.pyplot as plt
import torch

from probnets.viz.images import TensorOrArray
from probnets.viz.images import save_figure  # noqa: F401  (the figures' writer, re-exported)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    # The axes' figure (a SubFigure's axes give the SubFigure; typed as the usual case).
    return cast("Figure", ax.figure), ax


def plot_gate_trajectories(
    steps: Iterable[float],
    gate_probs: TensorOrArray,
    true_mask: TensorOrArray | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """
    Inclusion probability of every gate against the training step.

    :param steps: ``(T,)`` steps at which ``gate_probs`` were recorded.
    :param torch.Tensor gate_probs: ``(T, E)``.
    :param torch.Tensor true_mask: optional bool ``(E,)``: true edges drawn in colour, the rest
        in grey. Without it, the edges kept at the end (final probability above 0.5) are drawn
        in colour and the pruned ones in grey, so hundreds of gates stay readable.
    :param ax: the axes to draw on (default: a new figure).
    :returns: the figure.
    """
    fig, ax = _axes(ax, (7.8, 3.5))
    probs = torch.as_tensor(gate_probs).detach().cpu().double()
    steps = list(steps)
    if true_mask is None:
        highlight = probs[-1] > 0.5
        labels = (
            f"kept edges, final p > 0.5 ({int(highlight.sum())})",
            f"pruned edges ({int((~highlight).sum())})",
        )
    else:
        highlight = torch.as_tensor(true_mask).bool().cpu()
        labels = ("true edges", "other candidate edges")
    ax.plot(steps, probs[:, ~highlight].numpy(), color="0.6", lw=0.5, alpha=0.5)
    ax.plot(steps, probs[:, highlight].numpy(), color="C3", lw=1.2)
    ax.plot([], [], color="C3", label=labels[0])
    ax.plot([], [], color="0.6", label=labels[1])
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    ax.set_xlabel("training step")
    ax.set_ylabel("posterior inclusion probability")
    ax.set_ylim(-0.02, 1.02)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_adjacency(
    edge_probs: TensorOrArray,
    groups: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """
    Heat map of an ``(n, n)`` edge-probability matrix (row = target, column = source).

    :param groups: optional sizes of consecutive node groups (e.g. ``(I, H, O)``), drawn as
        separator lines.
    :param labels: optional ``n`` tick labels.
    :param ax: the axes to draw on (default: a new figure).
    :returns: the figure.
    """
    probs = torch.as_tensor(edge_probs).detach().cpu().double()
    n = probs.shape[0]
    fig, ax = _axes(ax, (5, 4.5))
    im = ax.imshow(probs.numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="inclusion probability")
    if groups is not None:
        edge = -0.5
        for size in list(groups)[:-1]:
            edge += size
            ax.axhline(edge, color="w", lw=0.8)
            ax.axvline(edge, color="w", lw=0.8)
    if labels is not None:
        ax.set_xticks(range(n), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(n), labels, fontsize=6)
    ax.set_xlabel("source node j")
    ax.set_ylabel("target node i")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_connections(
    curves: Mapping[str, Iterable[tuple[float, float]]],
    ax: Axes | None = None,
    title: str | None = None,
    ylabel: str = "test accuracy",
    xlabel: str = "fraction of active connections",
    lines: bool = True,
) -> Figure:
    """
    Accuracy against the fraction of active connections (log scale), one curve per name.

    :param dict curves: ``name -> list of (fraction_active, accuracy)`` points.
    :param bool lines: join a curve's points (off for points pooled over seeds).
    :param ax: the axes to draw on (default: a new figure).
    :returns: the figure.
    """
    fig, ax = _axes(ax, (5, 3.5))
    for i, (name, points) in enumerate(curves.items()):
        points = sorted(points)
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        ax.plot(xs, ys, "o-" if lines and len(points) > 1 else "o", color=f"C{i}", label=name)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
