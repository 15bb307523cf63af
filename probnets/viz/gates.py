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


def _group_spans(groups: Sequence[int] | None, names: Sequence[str] | None, shown: range) -> str:
    """``": pixels 0–783, hidden 784–815"``: the named groups that ``shown`` covers."""
    if groups is None or names is None:
        return ""
    parts, start = [], 0
    for size, name in zip(groups, names):
        low, high = max(start, shown.start), min(start + size, shown.stop)
        if low < high:
            parts.append(f"{name} {low}" if high - low == 1 else f"{name} {low}–{high - 1}")
        start += size
    return ": " + ", ".join(parts)


def plot_adjacency(
    edge_probs: TensorOrArray,
    groups: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    group_names: Sequence[str] | None = None,
    rows: range | None = None,
    columns: range | None = None,
) -> Figure:
    """
    Heat map of an ``(n, n)`` edge-probability matrix (row = target node i, column = source
    node j), with a colorbar of the inclusion probability.

    :param groups: optional sizes of consecutive node groups (e.g. ``(I, H, O)``, summing to
        ``n``), drawn as white separator lines.
    :param group_names: optional name of each group (e.g. ``("pixels", "hidden", "outputs")``):
        each axis label then says which nodes of each group it shows.
    :param rows: optional range of consecutive nodes shown as rows (default all), e.g.
        ``range(I, n)`` to leave out inputs, which receive no edge; likewise ``columns``
        (e.g. ``range(0, I + H)``: outputs send none). Ticks give the nodes' own indices.
    :param labels: optional ``n`` tick labels (one per node).
    :param ax: the axes to draw on (default: a new figure).
    :returns: the figure.
    """
    probs = torch.as_tensor(edge_probs).detach().cpu().double()
    n = probs.shape[0]
    if probs.shape != (n, n):
        raise ValueError(f"edge_probs: expected a square (n, n) matrix, got {tuple(probs.shape)}")
    if groups is not None and sum(groups) != n:
        raise ValueError(f"groups: expected sizes summing to n = {n}, got {list(groups)}")
    if group_names is not None and (groups is None or len(group_names) != len(groups)):
        raise ValueError("group_names: expected one name per group of groups")
    rows = range(n) if rows is None else rows
    columns = range(n) if columns is None else columns
    for name, shown in (("rows", rows), ("columns", columns)):
        if shown.step != 1 or not 0 <= shown.start < shown.stop <= n:
            raise ValueError(f"{name}: expected a range of consecutive nodes in 0..{n - 1}")
    fig, ax = _axes(ax, (5, 4.5))
    # Cell (i, j) is centred on (j, i), so the ticks read node indices of the full matrix.
    extent = (columns.start - 0.5, columns.stop - 0.5, rows.stop - 0.5, rows.start - 0.5)
    im = ax.imshow(
        probs[rows.start : rows.stop, columns.start : columns.stop].numpy(),
        cmap="viridis",
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=extent,
    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="inclusion probability")
    if groups is not None:
        edge = 0
        for size in list(groups)[:-1]:
            edge += size
            if rows.start < edge < rows.stop:
                ax.axhline(edge - 0.5, color="w", lw=0.8)
            if columns.start < edge < columns.stop:
                ax.axvline(edge - 0.5, color="w", lw=0.8)
    if labels is not None:
        ax.set_xticks(columns, [labels[j] for j in columns], rotation=90, fontsize=6)
        ax.set_yticks(rows, [labels[i] for i in rows], fontsize=6)
    ax.set_xlabel("source node j" + _group_spans(groups, group_names, columns))
    ax.set_ylabel("target node i" + _group_spans(groups, group_names, rows))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_connections(
    curves: Mapping[str, Iterable[tuple[float, float]]],
    ax: Axes | None = None,
    title: str | None = None,
    ylabel: str = "test accuracy (fraction correct)",
    xlabel: str = "fraction of active connections",
    lines: bool = True,
) -> Figure:
    """
    Accuracy against the fraction of active connections (log scale), one curve per name.

    Each curve has its own hollow marker, so curves that share a point (a dense network and
    a gated one that kept every connection) stay visible on top of each other, and the legend
    sits right of the axes, where it covers no point.

    :param dict curves: ``name -> list of (fraction_active, accuracy)`` points.
    :param bool lines: join a curve's points (off for points pooled over seeds).
    :param ax: the axes to draw on (default: a new figure).
    :returns: the figure.
    """
    fig, ax = _axes(ax, (7.5, 3.5))
    markers = "osD^v<>ph"
    for i, (name, points) in enumerate(curves.items()):
        points = sorted(points)
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        ax.plot(
            xs,
            ys,
            linestyle="-" if lines and len(points) > 1 else "None",
            marker=markers[i % len(markers)],
            markersize=8,
            markerfacecolor="none",
            markeredgewidth=1.5,
            color=f"C{i}",
            label=name,
        )
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
