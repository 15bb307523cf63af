"""``examples/bayes_hypernet_gap.py`` runs end to end: uncompressed, subspace, per-unit."""

import json

import pytest


@pytest.mark.parametrize(
    "flags",
    [
        ["--parameterization", "layer", "--generator", "identity", "--init-scale", "0.01"],
        [
            "--parameterization",
            "layer",
            "--generator",
            "subspace",
            "--embedding-dim",
            "4",
            "--guide",
            "full_rank",
        ],
        ["--parameterization", "unit", "--gp-lengthscales", "1"],
    ],
)
def test_gap_example_prints_metrics_and_writes_the_figure(flags, tmp_path, capsys, load_example):
    figure = tmp_path / "bands.png"
    example = load_example("bayes_hypernet_gap")
    example.main(
        flags + ["--steps", "20", "--num-points", "30", "--width", "8", "--figure", str(figure)]
    )
    rows = json.loads(capsys.readouterr().out)
    expected = {"model"} | ({"gp, lengthscale 1"} if "--gp-lengthscales" in flags else set())
    assert set(rows) == expected
    for row in rows.values():
        assert row["std_ratio_gap"] > 0 and row["std_ratio_outside"] > 0
    assert figure.stat().st_size > 0
