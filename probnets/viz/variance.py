"""Figures for the estimator-comparison harness (:mod:`probnets.experiments`).

``plot_log_variance`` and ``plot_tracking`` take the report objects (or anything with the
same attributes) and return the matplotlib ``Figure``; with ``path`` they also save it (to a
temporary file, then renamed). ``plot_variance_run`` writes every figure of a
:func:`~probnets.experiments.run_variance` run.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from probnets.experiments.report import TrackingReport, VarianceReport

__all__ = ["AXIS_LABELS", "axis_label", "plot_log_variance", "plot_tracking", "plot_variance_run"]


def _save(fig: Figure, path: str | os.PathLike[str]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1] or ".png"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


#: Axis labels (with units) of the tracked fields; other ``metric.*`` fields get their name in
#: words.
AXIS_LABELS = {
    "log_variance": "ln(gradient variance), mean over parameters",
    "snr": "gradient signal-to-noise ratio, mean over parameters",
    "train_loss": "training loss (negative ELBO, nats)",
    "metric.elbo_train": "train ELBO (nats per image)",
    "metric.elbo_test": "test ELBO (nats per image)",
    "metric.expected_loss": "exact expected loss E[(b - t)²]",
    "metric.prob": "σ(θ), probability of b = 1",
    "metric.count_accuracy": "count accuracy (fraction of images)",
}


# What a figure's title calls a tracked field, where its name in words would not do.
_TITLES = {
    "log_variance": "gradient log-variance",
    "metric.prob": "σ(θ)",
    "metric.expected_loss": "exact expected loss",
    "metric.elbo_test": "test ELBO",
    "metric.elbo_train": "train ELBO",
}


def axis_label(key: str) -> str:
    """The axis label of a tracked field: :data:`AXIS_LABELS` or the field's name in words."""
    if key in AXIS_LABELS:
        return AXIS_LABELS[key]
    return key.replace("metric.", "", 1).replace("_", " ")


def _bar_text(value: float) -> str:
    if value == float("-inf"):
        return "variance 0 (log = −∞)"
    return f"{value:.2f}" if math.isfinite(value) else "n/a"


def _bar_limits(values: Sequence[float]) -> tuple[float, float, float]:
    """``(left, low_limit, high_limit)``: where an exact-zero bar ends and the x-range."""
    finite = [v for v in values if math.isfinite(v)]
    low, high = min(finite + [0.0]), max(finite + [0.0])
    span = high - low or 1.0
    # the exact-zero bar runs to the left edge and is wide enough for its label
    left = low - (0.45 if float("-inf") in values else 0.15) * span
    return left, left - 0.15 * span, high + 0.15 * span


def _draw_bar(ax: Axes, y: float, value: float, left: float) -> None:
    """One estimator's bar at height ``y``: finite, exact zero (``-inf``) or NaN (no bar)."""
    if value == float("-inf"):
        ax.barh(y, left, color="white", edgecolor="tab:green", hatch="//")
        ax.annotate(
            _bar_text(value),
            (left / 2, y),
            ha="center",
            va="center",
            fontsize=8,
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="tab:green"),
        )
        return
    shown = value if math.isfinite(value) else 0.0
    if math.isfinite(value):
        ax.barh(y, value, color="tab:blue")
    outward = shown >= 0
    ax.annotate(
        _bar_text(value),
        (shown, y),
        xytext=(3 if outward else -3, 0),
        textcoords="offset points",
        ha="left" if outward else "right",
        va="center",
        fontsize=8,
    )


def plot_log_variance(
    report: VarianceReport,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Horizontal bars of each estimator's log-variance (natural log of the per-parameter
    gradient variance averaged over parameters), lowest at the top, values annotated.

    An estimator whose samples all gave the same gradient (variance 0, log-variance ``-inf``;
    e.g. DisARM on one Bernoulli at probability 1/2, where it is exact) has no finite bar: it
    is drawn as a hatched bar to the left edge, on top, labelled ``variance 0 (log = −∞)``; a
    NaN log-variance is labelled ``n/a``.
    """
    names = list(report.estimators)
    values = [float(report.estimators[n].log_variance) for n in names]
    left, low_limit, high_limit = _bar_limits(values)
    # barh draws index 0 at the bottom: sort by decreasing value so the lowest is on top
    # (-inf, exact zero variance, the very top; NaN at the bottom).
    order = sorted(
        range(len(names)), key=lambda i: float("-inf") if math.isnan(values[i]) else -values[i]
    )
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.2))
    else:
        # The axes' figure (a SubFigure's axes give the SubFigure; typed as the usual case).
        fig = cast("Figure", ax.figure)
    for y, i in enumerate(order):
        _draw_bar(ax, y, values[i], left)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([names[i] for i in order])
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set_xlim(low_limit, high_limit)
    ax.set_xlabel("ln(gradient variance), mean over parameters")
    ax.set_title(title or "Gradient-estimator variance")
    if path is not None:
        _save(fig, path)
    return fig


# Line styles of plot_tracking: every estimator a colour of its own, and a dash pattern and a
# hollow marker that cycle with coprime periods (4 and 7), so lines that coincide still show
# each other: dashes leave gaps, the markers differ in shape and do not fill one another in.
_COLOURS = [f"C{i}" for i in range(10)] + ["black", "gold", "navy", "lime", "teal", "magenta"]
_DASHES = ["-", "--", "-.", ":"]
_MARKERS = ["o", "s", "^", "D", "P", "X", "*"]


def _line_style(index: int) -> dict[str, Any]:
    """Colour, dash pattern and hollow marker of the ``index``-th line of a tracking plot."""
    return dict(
        color=_COLOURS[index % len(_COLOURS)],
        linestyle=_DASHES[index % len(_DASHES)],
        marker=_MARKERS[index % len(_MARKERS)],
        markersize=5,
        markerfacecolor="none",
        linewidth=1.4,
    )


def plot_tracking(
    tracking: TrackingReport,
    key: str = "log_variance",
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """One line per estimator of ``key`` (a record field such as ``"log_variance"``,
    ``"train_loss"`` or ``"metric.elbo_train"``) against the training step.

    The legend sits outside the axes, so it hides no curve, and every estimator has its own
    colour, dash pattern and hollow marker, so lines that coincide stay distinguishable. Points
    where the log-variance is ``-inf`` (every sample gave the same gradient: variance 0) are
    drawn as downward triangles on the bottom edge.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.6, 4.0))
    else:
        # The axes' figure (a SubFigure's axes give the SubFigure; typed as the usual case).
        fig = cast("Figure", ax.figure)
    zero_steps: dict[str, tuple[list[Any], str]] = {}
    for index, (name, records) in enumerate(tracking.runs.items()):
        points = [(r["step"], float(r[key])) for r in records if r.get(key) is not None]
        finite = [(s, v) for s, v in points if math.isfinite(v)]
        style = _line_style(index)
        xs, ys = zip(*finite) if finite else ((), ())
        ax.plot(xs, ys, label=name, **style)
        zeros = [s for s, v in points if v == float("-inf")]
        if zeros:
            zero_steps[name] = (zeros, style["color"])
    for name, (steps, colour) in zero_steps.items():
        ax.plot(
            steps,
            [0.0] * len(steps),
            linestyle="none",
            marker="v",
            markersize=7,
            color=colour,
            clip_on=False,
            transform=ax.get_xaxis_transform(),
        )
    if zero_steps:
        ax.plot([], [], linestyle="none", marker="v", color="0.3", label="variance 0 (log = −∞)")
    ax.set_xlabel("training step")
    ax.set_ylabel(axis_label(key))
    ax.set_title(title or axis_label(key))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
    if path is not None:
        _save(fig, path)
    return fig


def plot_variance_run(
    variance: VarianceReport, tracking: TrackingReport | None, out_dir: str | os.PathLike[str]
) -> list[str]:
    """Every figure of a :func:`~probnets.experiments.run_variance` run, saved in ``out_dir``
    and closed: ``variance.png`` (log-variance bars at the initial params) and, when
    ``tracking`` is not ``None``, ``tracking_log_variance.png`` and one
    ``tracking_<metric>.png`` per ``metric.*`` field of the records.

    :returns: the paths written, in that order.
    """
    problem = variance.meta.get("problem", "?")
    paths = [os.path.join(out_dir, "variance.png")]
    plt.close(
        plot_log_variance(
            variance, path=paths[0], title=f"{problem}: gradient log-variance at initial parameters"
        )
    )
    if tracking is None:
        return paths
    keys = ["log_variance"] + sorted(
        {k for recs in tracking.runs.values() for k in recs[-1] if k.startswith("metric.")}
    )
    for key in keys:
        name = key.replace("metric.", "", 1)
        what = _TITLES.get(key, name.replace("_", " "))
        paths.append(os.path.join(out_dir, f"tracking_{name}.png"))
        plt.close(
            plot_tracking(tracking, key, path=paths[-1], title=f"{problem}: {what} along training")
        )
    return paths
