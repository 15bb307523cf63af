import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from probnets.viz.gates import (  # noqa: E402
    plot_accuracy_vs_connections,
    plot_adjacency,
    plot_gate_trajectories,
    save_figure,
)


def test_accuracy_vs_connections_joins_curves_or_draws_pooled_points(tmp_path):
    curves = {"gated": [(0.5, 0.95), (0.1, 0.93)], "dense": [(1.0, 0.96)]}
    joined = plot_accuracy_vs_connections(curves)
    ax = joined.axes[0]
    assert [line.get_label() for line in ax.lines] == ["gated", "dense"]
    # Points are sorted by fraction, and joined only for a curve of several points.
    assert list(ax.lines[0].get_xdata()) == [0.1, 0.5]
    assert ax.lines[0].get_linestyle() == "-" and ax.lines[1].get_linestyle() == "None"
    assert ax.get_xlabel() == "fraction of active connections"
    pooled = plot_accuracy_vs_connections(curves, xlabel="FLOPs share", lines=False)
    assert pooled.axes[0].lines[0].get_linestyle() == "None"
    assert pooled.axes[0].get_xlabel() == "FLOPs share"
    save_figure(pooled, str(tmp_path / "accuracy.png"))
    assert (tmp_path / "accuracy.png").stat().st_size > 0


def test_accuracy_vs_connections_keeps_shared_points_and_legend_off_the_data(tmp_path):
    # The MNIST figure: a dense and a gated layer DAG that kept every connection share a
    # point at fraction 1, and the legend must cover no point.
    curves = {
        "neuron DAG, gated": [(0.0084, 0.873), (0.0125, 0.89), (0.0223, 0.911)],
        "neuron DAG, dense": [(1.0, 0.935)],
        "layer DAG, dense": [(1.0, 0.951)],
        "layer DAG, retrained": [(1.0, 0.951), (1.0, 0.951)],
    }
    fig = plot_accuracy_vs_connections(curves, title="MNIST (a title that must not be clipped)")
    ax = fig.axes[0]
    # Distinct hollow markers, so the retrained point does not hide the dense one under it.
    markers = [line.get_marker() for line in ax.lines]
    assert len(set(markers)) == len(markers)
    assert all(line.get_markerfacecolor() == "none" for line in ax.lines)
    assert ax.get_ylabel() == "test accuracy (fraction correct)"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    axes_box = ax.get_window_extent(renderer)
    assert legend.x0 >= axes_box.x1  # right of the axes, over no data
    # Title, axis labels and legend lie inside the figure (nothing clipped).
    for box in [legend] + [
        t.get_window_extent(renderer) for t in (ax.title, ax.xaxis.label, ax.yaxis.label)
    ]:
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1
    save_figure(fig, str(tmp_path / "mnist.png"))
    assert (tmp_path / "mnist.png").stat().st_size > 0


def test_gate_trajectories_and_adjacency_draw(tmp_path):
    probs = torch.rand(5, 4)
    fig = plot_gate_trajectories(range(0, 50, 10), probs, true_mask=torch.tensor([1, 0, 1, 0]))
    ax = fig.axes[0]
    assert len([line for line in ax.lines if line.get_color() == "C3"]) == 2 + 1  # + legend
    save_figure(fig, str(tmp_path / "trajectories.png"))
    fig = plot_adjacency(torch.rand(6, 6).tril(-1), groups=(2, 3, 1))
    save_figure(fig, str(tmp_path / "adjacency.png"))
    assert (tmp_path / "trajectories.png").exists() and (tmp_path / "adjacency.png").exists()


def test_adjacency_crop_keeps_node_indices_and_names_the_groups(tmp_path):
    # Six nodes: inputs 0-1, hidden 2-4, output 5; inputs receive no edge and the output
    # sends none, so only rows 2-5 and columns 0-4 are drawn.
    probs = torch.zeros(6, 6)
    probs[5, 0] = 1.0  # input 0 -> output 5
    fig = plot_adjacency(
        probs,
        groups=(2, 3, 1),
        group_names=("inputs", "hidden", "outputs"),
        rows=range(2, 6),
        columns=range(0, 5),
        title="a title that must not be clipped",
    )
    ax = fig.axes[0]
    assert ax.get_xlabel() == "source node j: inputs 0–1, hidden 2–4"
    assert ax.get_ylabel() == "target node i: hidden 2–4, outputs 5"
    image = ax.images[0]
    assert image.get_array().shape == (4, 5) and image.get_array()[3, 0] == 1.0
    # Cell (i, j) sits at (j, i): the ticks read node indices, target 2 on top.
    assert tuple(image.get_extent()) == (-0.5, 4.5, 5.5, 1.5)
    # Separators only where a group boundary falls inside the drawn rows / columns.
    horizontal = [
        line.get_ydata()[0] for line in ax.lines if line.get_ydata()[0] == line.get_ydata()[1]
    ]
    vertical = [
        line.get_xdata()[0] for line in ax.lines if line.get_xdata()[0] == line.get_xdata()[1]
    ]
    assert horizontal == [4.5] and vertical == [1.5]
    assert fig.axes[1].get_ylabel() == "inclusion probability"  # the colorbar
    # Title and axis labels lie inside the figure (nothing clipped).
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1
    save_figure(fig, str(tmp_path / "crop.png"))
    assert (tmp_path / "crop.png").stat().st_size > 0


def test_adjacency_rejects_inconsistent_groups_and_ranges():
    with pytest.raises(ValueError, match="square"):
        plot_adjacency(torch.rand(3, 4))
    with pytest.raises(ValueError, match="summing to n = 4"):
        plot_adjacency(torch.rand(4, 4), groups=(1, 2))
    with pytest.raises(ValueError, match="one name per group"):
        plot_adjacency(torch.rand(4, 4), groups=(1, 3), group_names=("a",))
    with pytest.raises(ValueError, match="rows"):
        plot_adjacency(torch.rand(4, 4), rows=range(2, 6))
