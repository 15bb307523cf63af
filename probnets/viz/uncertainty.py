"""Figures of predictive uncertainty: regression bands and reliability diagrams."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from probnets.viz.images import save_figure  # noqa: E402


def _numpy(t):
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else t


def predictive_bands(x, mean, std, path, epistemic_std=None, x_train=None, y_train=None,
                     truth=None, title=""):
    """Plot a 1-D predictive mean with ±2 std bands (total, and epistemic when given).

    :param x: sorted grid ``(G,)``; ``mean``, ``std``, ``epistemic_std``: ``(G,)``.
    :param x_train, y_train: training points, drawn as dots.
    :param truth: optional ``(G,)`` true function on the grid.
    """
    x, mean, std = _numpy(x), _numpy(mean), _numpy(std)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.fill_between(x, mean - 2 * std, mean + 2 * std, color="C0", alpha=0.18,
                    label="±2 std (total)")
    if epistemic_std is not None:
        epi = _numpy(epistemic_std)
        ax.fill_between(x, mean - 2 * epi, mean + 2 * epi, color="C0", alpha=0.35,
                        label="±2 std (epistemic)")
    ax.plot(x, mean, color="C0", lw=1.5, label="predictive mean")
    if truth is not None:
        ax.plot(x, _numpy(truth), color="k", lw=1, ls="--", label="truth")
    if x_train is not None:
        ax.scatter(_numpy(x_train), _numpy(y_train), s=8, color="C3", zorder=3, label="data")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def reliability_diagram(curves, path, title=""):
    """Accuracy against confidence per bin, one line per model, with the diagonal.

    :param dict curves: ``{label: (bins, ece)}`` with ``bins`` the dict returned by
        :func:`probnets.models.bayes_hypernet.expected_calibration_error`.
    """
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.6, 5.2), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="perfect calibration")
    for index, (label, (bins, ece)) in enumerate(curves.items()):
        count = _numpy(bins["count"])
        keep = count > 0
        conf, acc = _numpy(bins["confidence"])[keep], _numpy(bins["accuracy"])[keep]
        ax.plot(conf, acc, marker="o", ms=3, color=f"C{index}", label=f"{label} (ECE {ece:.3f})")
        edges = [(i + 0.5) / len(count) for i in range(len(count))]
        hist.bar([e + 0.012 * (index - 1) for e in edges], count / count.sum(),
                 width=0.9 / len(count) / max(len(curves), 1), color=f"C{index}", alpha=0.7)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    hist.set_xlabel("confidence (top-class probability)")
    hist.set_ylabel("fraction")
    hist.set_yscale("log")
    return save_figure(fig, path)
