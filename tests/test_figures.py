"""The figures hide nothing: every axis labelled in words, legends outside the curves, a
colorbar on heat maps, zero variance drawn and labelled, reliability bins counted."""

import math
import re
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from probnets.models.bayes_hypernet import expected_calibration_error  # noqa: E402
from probnets.viz.recurrent import plot_weight_change  # noqa: E402
from probnets.viz.uncertainty import (  # noqa: E402
    calibration_summary,
    predictive_bands,
    reliability_diagram,
)
from probnets.viz.variance import axis_label, plot_log_variance, plot_tracking  # noqa: E402

RAW_NAME = re.compile(r"\b[a-z]+_[a-z_]+\b")  # an identifier such as log_variance


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures the code under test saves, in order (the functions close nothing, so the
    ``Figure`` objects can be inspected after the file is written)."""
    figures = []
    original = plt.Figure.savefig

    def keep(fig, *args, **kwargs):
        figures.append(fig)
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", keep)
    return figures


def report(**log_variances):
    return SimpleNamespace(
        estimators={
            name: SimpleNamespace(log_variance=value) for name, value in log_variances.items()
        }
    )


def test_exact_zero_variance_is_drawn_on_top_and_labelled_not_inf():
    fig = plot_log_variance(report(score=-4.2, relaxed=-1.5, disarm=float("-inf")))
    ax = fig.axes[0]
    names = [tick.get_text() for tick in ax.get_yticklabels()]
    assert names == ["relaxed", "score", "disarm"]  # lowest (exact zero) on top
    texts = [t.get_text() for t in ax.texts]
    assert "variance 0 (log = −∞)" in texts and not any("inf" in t for t in texts)
    assert {"-4.20", "-1.50"} <= set(texts)
    # The zero-variance bar is drawn: it reaches the left edge of the axes.
    bars = ax.patches
    assert len(bars) == 3
    left = min(bar.get_x() + min(bar.get_width(), 0) for bar in bars)
    assert left == pytest.approx(ax.get_xlim()[0], rel=0.5)
    assert min(bar.get_width() for bar in bars) < -4.2
    assert not RAW_NAME.search(ax.get_xlabel()) and "ln" in ax.get_xlabel()


def test_nan_log_variance_is_labelled_not_applicable():
    fig = plot_log_variance(report(score=0.5, broken=float("nan")))
    assert "n/a" in [t.get_text() for t in fig.axes[0].texts]


def tracking():
    steps = range(0, 101, 50)
    runs = {
        f"estimator{i}": [
            {"step": s, "log_variance": i + s / 100, "metric.elbo_test": -100.0 - i} for s in steps
        ]
        for i in range(10)
    }
    runs["disarm"] = [
        {"step": s, "log_variance": float("-inf") if s == 0 else 0.5, "metric.elbo_test": -99.0}
        for s in steps
    ]
    return SimpleNamespace(runs=runs)


@pytest.mark.parametrize("key", ["log_variance", "metric.elbo_test", "train_loss"])
def test_tracking_labels_are_words_with_units_and_the_legend_sits_outside(key):
    fig = plot_tracking(tracking(), key)
    ax = fig.axes[0]
    label = ax.get_ylabel()
    assert label == axis_label(key) and not RAW_NAME.search(label)
    assert ax.get_xlabel() == "training step"
    legend = ax.get_legend()
    names = [text.get_text() for text in legend.get_texts()]
    assert names[:11] == [f"estimator{i}" for i in range(10)] + ["disarm"]
    # Outside the axes: the legend's box starts right of the plotting area, so it covers
    # no curve however many there are.
    fig.canvas.draw()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1
    assert len({line.get_color() for line in ax.lines[:11]}) == 11


def test_tracking_lines_that_coincide_stay_distinguishable():
    """Two estimators with the same values (REBAR under RELAX on the SBN) differ in colour,
    dash pattern and marker shape, and hollow markers do not cover one another."""
    runs = {name: [{"step": s, "log_variance": 1.0} for s in (0, 50, 100)] for name in "abcdef"}
    ax = plot_tracking(SimpleNamespace(runs=runs), "log_variance").axes[0]
    lines = ax.lines[:6]
    for attribute in ("get_color", "get_linestyle", "get_marker"):
        for first, second in zip(lines, lines[1:]):
            assert getattr(first, attribute)() != getattr(second, attribute)()
    assert len({(line.get_linestyle(), line.get_marker()) for line in lines}) == 6
    assert all(line.get_markerfacecolor() == "none" for line in lines)


def test_zero_variance_steps_are_marked_on_the_bottom_edge():
    ax = plot_tracking(tracking(), "log_variance").axes[0]
    markers = [line for line in ax.lines if line.get_marker() == "v" and len(line.get_xdata())]
    assert len(markers) == 1 and list(markers[0].get_xdata()) == [0]
    assert "variance 0 (log = −∞)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_unknown_metrics_are_spelled_in_words():
    assert axis_label("metric.count_accuracy") == "count accuracy (fraction of images)"
    assert axis_label("metric.some_new_score") == "some new score"


def bins_of(probs, labels):
    return expected_calibration_error(probs, labels)


def test_reliability_diagram_counts_bins_and_flags_a_collapsed_predictor(tmp_path, saved_figures):
    torch.manual_seed(0)
    labels = torch.randint(10, (400,))
    sharp = (torch.randn(400, 10) + 4 * torch.nn.functional.one_hot(labels, 10)).softmax(-1)
    ece, bins = bins_of(sharp, labels)
    summary = calibration_summary(bins)
    assert summary["ece"] == pytest.approx(float(ece), abs=1e-6)
    assert summary["total"] == 400 and 1 < summary["non_empty"] <= 15
    assert summary["accuracy"] == pytest.approx(
        float((sharp.argmax(-1) == labels).float().mean()), abs=1e-6
    )
    uniform = torch.full((400, 10), 0.1)
    collapsed_ece, collapsed = bins_of(uniform, labels)
    assert calibration_summary(collapsed)["non_empty"] == 1
    reliability_diagram(
        {"sharp": (bins, float(ece)), "uniform": (collapsed, 0.0)},
        str(tmp_path / "reliability.png"),
    )
    assert (tmp_path / "reliability.png").stat().st_size > 0
    ax, hist = saved_figures[-1].axes[:2]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("uniform: ECE") and "all in 1 bin" in t for t in legend)
    assert any(t.startswith("sharp: ECE") and "of 15 bins" in t for t in legend)
    # The lower panel shows counts (not fractions), one bar per bin and model, annotated.
    assert hist.get_ylabel() == "examples per bin"
    heights = sorted(bar.get_height() for bar in hist.patches if bar.get_height() > 0)
    assert heights[-1] == 400  # the collapsed predictor's single bin
    assert "400" in [t.get_text() for t in hist.texts]
    assert sum(h for h in heights) == 800
    for axis in (ax, hist):
        assert not RAW_NAME.search(axis.get_ylabel())


def test_reliability_diagram_with_three_models_labels_every_bar_and_cuts_no_point(
    tmp_path, saved_figures
):
    # Three models, as in the guide's MNIST figures: every non-empty bar still carries its
    # count (upright, the bars being narrow), inside the panel; points at accuracy 0 or 1 and
    # the legend stay clear of the frame and the curves.
    torch.manual_seed(1)
    labels = torch.randint(10, (300,))
    curves = {}
    for name, sharpness in (("default", 2.0), ("det-hypernet", 6.0), ("mc-dropout", 4.0)):
        logits = torch.randn(300, 10) + sharpness * torch.nn.functional.one_hot(labels, 10)
        curves[name] = bins_of(logits.softmax(-1), labels)[::-1]
    reliability_diagram(curves, str(tmp_path / "reliability3.png"))
    fig = saved_figures[-1]
    ax, hist = fig.axes[:2]
    bars = [bar for bar in hist.patches if bar.get_height() > 0]
    assert sorted(t.get_text() for t in hist.texts) == sorted(
        str(int(bar.get_height())) for bar in bars
    )
    assert all(t.get_rotation() == 90 for t in hist.texts)
    low, high = ax.get_ylim()
    assert low < 0 and high > 1
    assert ax.get_xlim()[1] > 1
    fig.canvas.draw()
    panel = hist.get_window_extent()
    for text in hist.texts:
        box = text.get_window_extent()
        assert panel.y0 <= box.y0 and box.y1 <= panel.y1, text.get_text()
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    assert (ax.get_xlabel(), hist.get_xlabel()) == ("", "confidence (top-class probability)")


def test_predictive_bands_keep_the_legend_off_the_bands(tmp_path, saved_figures):
    # Bands that open to the edges of the plot (as a BNN's do outside the data): the legend
    # sits right of the axes, so it covers none of them.
    x = torch.linspace(-6, 6, 61)
    predictive_bands(
        x,
        torch.sin(x),
        0.1 + x.abs(),
        str(tmp_path / "bands.png"),
        epistemic_std=x.abs(),
        x_train=x[20:40],
        y_train=torch.sin(x[20:40]),
        truth=torch.sin(x),
        xlabel="x (unitless)",
        ylabel="y (unitless)",
    )
    assert (tmp_path / "bands.png").stat().st_size > 0
    fig = saved_figures[-1]
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (unitless)", "y (unitless)")
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "±2 std (total)",
        "±2 std (epistemic)",
        "predictive mean",
        "truth",
        "data",
    ]
    fig.canvas.draw()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1


def test_calibration_summary_rejects_empty_bins():
    empty = {
        "count": torch.zeros(3),
        "confidence": torch.full((3,), math.nan),
        "accuracy": torch.full((3,), math.nan),
    }
    with pytest.raises(ValueError, match="bins"):
        calibration_summary(empty)


def test_weight_change_has_a_shared_colorbar_and_labelled_axes(tmp_path):
    change = torch.rand(25, 4, dtype=torch.float64)
    fig = plot_weight_change(change, "The value *n* is an integ", per_row=10)
    panels = [ax for ax in fig.axes if ax.get_images()]
    colorbars = [ax for ax in fig.axes if not ax.get_images()]
    assert len(panels) == 3 and len(colorbars) == 1
    assert "W_t" in colorbars[0].get_ylabel()
    # One colour scale for every panel, from zero to the largest change.
    for ax in panels:
        assert ax.get_images()[0].get_clim() == (0.0, pytest.approx(float(change.max())))
        assert [t.get_text() for t in ax.get_yticklabels()] == list("ifgo")
        assert ax.get_ylabel() == "gate"
    assert [t.get_text() for t in panels[0].get_xticklabels()][3] == "␣"
    assert panels[-1].get_xlabel()
    path = plot_weight_change(change, ["x"] * 25, path=str(tmp_path / "change.png"))
    assert path.endswith("change.png") and (tmp_path / "change.png").stat().st_size > 0
    with pytest.raises(ValueError, match="characters"):
        plot_weight_change(change, "too short")
    with pytest.raises(ValueError, match="change"):
        plot_weight_change(change[:, :3], "x" * 25)


def test_gate_trajectories_without_a_truth_colour_the_kept_edges_and_say_so():
    from probnets.viz.gates import plot_gate_trajectories

    probs = torch.tensor([[0.5, 0.5, 0.5], [0.9, 0.2, 0.7], [0.99, 0.01, 0.8]])
    ax = plot_gate_trajectories([0, 10, 20], probs).axes[0]
    coloured = [line for line in ax.lines if line.get_color() == "C3" and len(line.get_xdata())]
    assert sorted(line.get_ydata()[-1] for line in coloured) == pytest.approx([0.8, 0.99])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["kept edges, final p > 0.5 (2)", "pruned edges (1)"]
    assert ax.get_xlabel() == "training step" and "probability" in ax.get_ylabel()
