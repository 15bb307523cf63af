"""Figures for the estimator-comparison harness (:mod:`probnets.experiments`).

``plot_log_variance`` and ``plot_tracking`` take the report objects (or anything with the
same attributes) and return the matplotlib ``Figure``; with ``path`` they also save it (to a
temporary file, then renamed). ``plot_variance_run`` writes every figure of a
:func:`~probnets.experiments.run_variance` run.
"""

import math
import os
import tempfile

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_log_variance", "plot_tracking", "plot_variance_run"]


def _save(fig, path):
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


def _annotate_bar(ax, y, value, shown):
    """Write ``value`` beside the bar at height ``y`` whose drawn length is ``shown`` (NaN
    for an infinite value, which gets no bar and its label at zero)."""
    outward = (shown or 0) >= 0
    ax.annotate(
        f"{value:.2f}",
        (shown if shown == shown else 0.0, y),
        xytext=(3 if outward else -3, 0),
        textcoords="offset points",
        ha="left" if outward else "right",
        va="center",
        fontsize=8,
    )


def plot_log_variance(report, path=None, title=None, ax=None):
    """Horizontal bars of each estimator's log-variance (natural log of the per-parameter
    gradient variance averaged over parameters), lowest at the top, values annotated."""
    names = list(report.estimators)
    values = [report.estimators[n].log_variance for n in names]
    finite = [v if math.isfinite(v) else float("nan") for v in values]
    # barh draws index 0 at the bottom: sort by decreasing value so the lowest is on top.
    order = sorted(range(len(names)), key=lambda i: -finite[i] if finite[i] == finite[i] else 0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.2))
    else:
        fig = ax.figure
    ys = range(len(order))
    ax.barh(list(ys), [finite[i] for i in order], color="tab:blue")
    ax.set_yticks(list(ys))
    ax.set_yticklabels([names[i] for i in order])
    for y, i in zip(ys, order):
        _annotate_bar(ax, y, values[i], finite[i])
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel("log variance (natural log, per-parameter, averaged)")
    ax.set_title(title or "Gradient-estimator variance")
    ax.margins(x=0.15)
    if path is not None:
        _save(fig, path)
    return fig


def plot_tracking(tracking, key="log_variance", path=None, title=None, ax=None):
    """One line per estimator of ``key`` (a record field such as ``"log_variance"``,
    ``"train_loss"`` or ``"metric.elbo_train"``) against the training step."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
    else:
        fig = ax.figure
    for name, records in tracking.runs.items():
        points = [(r["step"], r.get(key)) for r in records if r.get(key) is not None]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o", markersize=3, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(key.replace("metric.", ""))
    ax.set_title(title or key)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if path is not None:
        _save(fig, path)
    return fig


def plot_variance_run(variance, tracking, out_dir):
    """Every figure of a :func:`~probnets.experiments.run_variance` run, saved in ``out_dir``
    and closed: ``variance.png`` (log-variance bars at the initial params) and, when
    ``tracking`` is not ``None``, ``tracking_log_variance.png`` and one
    ``tracking_<metric>.png`` per ``metric.*`` field of the records.

    :returns: the paths written, in that order.
    """
    problem = variance.meta.get("problem", "?")
    paths = [os.path.join(out_dir, "variance.png")]
    plt.close(plot_log_variance(variance, path=paths[0],
                                title=f"{problem}: log-variance at initial params"))
    if tracking is None:
        return paths
    keys = ["log_variance"] + sorted(
        {k for recs in tracking.runs.values() for k in recs[-1] if k.startswith("metric.")})
    for key in keys:
        name = key.replace("metric.", "", 1)
        what = "log-variance" if key == "log_variance" else name
        paths.append(os.path.join(out_dir, f"tracking_{name}.png"))
        plt.close(plot_tracking(tracking, key, path=paths[-1],
                                title=f"{problem}: {what} along training"))
    return paths
