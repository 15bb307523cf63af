import matplotlib

matplotlib.use("Agg")

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


def test_gate_trajectories_and_adjacency_draw(tmp_path):
    probs = torch.rand(5, 4)
    fig = plot_gate_trajectories(range(0, 50, 10), probs, true_mask=torch.tensor([1, 0, 1, 0]))
    ax = fig.axes[0]
    assert len([line for line in ax.lines if line.get_color() == "C3"]) == 2 + 1  # + legend
    save_figure(fig, str(tmp_path / "trajectories.png"))
    fig = plot_adjacency(torch.rand(6, 6).tril(-1), groups=(2, 3, 1))
    save_figure(fig, str(tmp_path / "adjacency.png"))
    assert (tmp_path / "trajectories.png").exists() and (tmp_path / "adjacency.png").exists()
