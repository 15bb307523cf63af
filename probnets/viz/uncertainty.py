"""Figures of predictive uncertainty: regression bands and reliability diagrams."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from probnets.viz.images import PathT, TensorOrArray, save_figure  # noqa: E402

# The bins of probnets.models.bayes_hypernet.expected_calibration_error: ``count``,
# ``confidence`` and ``accuracy`` per bin.
CalibrationBins = Mapping[str, TensorOrArray]


def _numpy(t: Any) -> Any:
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else t


def predictive_bands(
    x: TensorOrArray,
    mean: TensorOrArray,
    std: TensorOrArray,
    path: PathT,
    epistemic_std: TensorOrArray | None = None,
    x_train: TensorOrArray | None = None,
    y_train: TensorOrArray | None = None,
    truth: TensorOrArray | None = None,
    title: str = "",
    xlabel: str = "x",
    ylabel: str = "y",
) -> PathT:
    """Plot a 1-D predictive mean with ±2 std bands (total, and epistemic when given).

    The legend sits right of the axes, so it covers no band however wide the bands open.

    :param x: sorted grid ``(G,)``; ``mean``, ``std``, ``epistemic_std``: ``(G,)``.
    :param x_train, y_train: training points, drawn as dots.
    :param truth: optional ``(G,)`` true function on the grid.
    :param xlabel, ylabel: the axis labels (say the units when the data have some).
    """
    x, mean, std = _numpy(x), _numpy(mean), _numpy(std)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.fill_between(
        x, mean - 2 * std, mean + 2 * std, color="C0", alpha=0.18, label="±2 std (total)"
    )
    if epistemic_std is not None:
        epi = _numpy(epistemic_std)
        ax.fill_between(
            x, mean - 2 * epi, mean + 2 * epi, color="C0", alpha=0.35, label="±2 std (epistemic)"
        )
    ax.plot(x, mean, color="C0", lw=1.5, label="predictive mean")
    if truth is not None:
        ax.plot(x, _numpy(truth), color="k", lw=1, ls="--", label="truth")
    if x_train is not None:
        ax.scatter(_numpy(x_train), _numpy(y_train), s=8, color="C3", zorder=3, label="data")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def calibration_summary(bins: CalibrationBins) -> dict[str, float]:
    """ECE, accuracy and occupancy recomputed from the bins of
    :func:`probnets.models.bayes_hypernet.expected_calibration_error`, over the non-empty
    bins only (an empty bin has NaN confidence and accuracy and weight zero).

    :returns: dict with ``ece`` (``sum_b n_b / N |acc_b - conf_b|``), ``accuracy`` (overall),
        ``total`` (``N``), ``non_empty`` (number of bins holding examples) and ``num_bins``.
    """
    count = _numpy(bins["count"])
    keep = count > 0
    total = float(count.sum())
    if total <= 0:
        raise ValueError("bins: expected at least one example in some bin, got none")
    conf, acc, n = _numpy(bins["confidence"])[keep], _numpy(bins["accuracy"])[keep], count[keep]
    return {
        "ece": float((n * abs(acc - conf)).sum() / total),
        "accuracy": float((n * acc).sum() / total),
        "total": int(round(total)),
        "non_empty": int(keep.sum()),
        "num_bins": len(count),
    }


def reliability_diagram(
    curves: Mapping[str, Union[CalibrationBins, tuple[CalibrationBins, float]]],
    path: PathT,
    title: str = "",
) -> PathT:
    """Accuracy against confidence per bin, one line per model, with the diagonal; below,
    the number of examples in each bin (log scale, each bar labelled with its count), so a
    curve resting on a few examples per bin is visible as such. The axes reach a little
    beyond [0, 1], so no point at accuracy 0 or 1 is cut by the frame.

    The legend gives each model's ECE recomputed from its bins over the non-empty bins
    (:func:`calibration_summary`), its accuracy and how many bins hold examples: a model
    whose predictions all fall in one bin (e.g. a collapsed, uniform predictor) has a small
    ECE from that single bin, and the legend says so.

    :param dict curves: ``{label: (bins, ece)}`` or ``{label: bins}``, with ``bins`` the dict
        returned by :func:`probnets.models.bayes_hypernet.expected_calibration_error`; a
        given ``ece`` is not drawn, the one computed from the bins is.
    """
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(6.4, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 1.7]}
    )
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="perfect calibration")
    tallest = 1.0
    for index, (label, entry) in enumerate(curves.items()):
        bins = entry[0] if isinstance(entry, tuple) else entry
        summary = calibration_summary(bins)
        count = _numpy(bins["count"])
        keep = count > 0
        conf, acc = _numpy(bins["confidence"])[keep], _numpy(bins["accuracy"])[keep]
        occupied = (
            f"{summary['non_empty']} of {summary['num_bins']} bins"
            if summary["non_empty"] > 1
            else "all in 1 bin"
        )
        ax.plot(
            conf,
            acc,
            marker="o",
            ms=3,
            color=f"C{index}",
            label=f"{label}: ECE {summary['ece']:.3f}, acc {summary['accuracy']:.3f} ({occupied})",
        )
        num_bins = len(count)
        width = 0.9 / num_bins / max(len(curves), 1)
        centres = [(b + 0.5) / num_bins for b in range(num_bins)]
        shift = (index - (len(curves) - 1) / 2) * width
        hist.bar([c + shift for c in centres], count, width=width, color=f"C{index}", alpha=0.8)
        tallest = max(tallest, float(count.max()))
        # Every non-empty bar carries its count; with three or more models the bars are
        # narrow, so the numbers stand upright.
        for c, n in zip(centres, count):
            if n > 0:
                hist.annotate(
                    f"{int(n)}",
                    (c + shift, n),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    rotation=0 if len(curves) <= 2 else 90,
                    xytext=(0, 1),
                    textcoords="offset points",
                )
    ax.set_ylabel("accuracy in the bin (fraction correct)")
    # A little room beyond [0, 1], so points with accuracy 0 or 1 (and the top bin near
    # confidence 1) are drawn whole instead of half hidden behind the frame.
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    hist.set_xlabel("confidence (top-class probability)")
    hist.set_ylabel("examples per bin")
    hist.set_yscale("log")
    # Head room above the tallest bar (a decade on the log scale) for its count label.
    hist.set_ylim(0.5, tallest * 12)
    hist.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)
