import json
import os

import numpy as np
import pytest

from probnets.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("air") / "run"
    code = main(
        [
            "train",
            "air",
            "--num-validation",
            "32",
            "--num-test",
            "32",
            "--steps",
            "2",
            "--batch-size",
            "16",
            "--rnn-hidden-size",
            "16",
            "--eval-every",
            "2",
            "--z-pres-prior-start",
            "0.5",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    return out


def test_train_writes_checkpoint_metrics_and_figures(trained):
    for name in (
        "last.pt",
        "metrics.csv",
        "eval.csv",
        "reconstructions.png",
        "confusion.png",
        "accuracy.png",
        "elbo.png",
        "summary.json",
    ):
        assert os.path.exists(trained / name), name
    with open(trained / "summary.json") as f:
        summary = json.load(f)
    final = summary["eval"]
    low, high = final["test_count_accuracy_interval"]
    assert 0 <= low <= final["test_count_accuracy"] <= high <= 1
    assert final["test_num_images"] == 32 and final["interval"] == "wilson, 95%"
    assert 0 <= final["validation_count_accuracy"] <= 1
    # the annealed z_pres prior is logged each row
    header = open(trained / "metrics.csv").readline()
    assert "z_pres_prior" in header


def test_eval_json_reports_count_accuracy(trained, tmp_path, capsys):
    images = (np.random.default_rng(0).random((5, 50, 50)) * 255).astype(np.uint8)
    data = tmp_path / "d.npz"
    np.savez(data, images=images, counts=np.array([0, 1, 2, 1, 0]))
    capsys.readouterr()
    assert (
        main(
            ["eval", "air", "--checkpoint", str(trained / "last.pt"), "--data", str(data), "--json"]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["count_accuracy"] <= 1
    assert result["num_images"] == 5
    low, high = result["count_accuracy_interval"]
    assert low <= result["count_accuracy"] <= high
    assert np.sum(result["confusion"]) == 5


def test_eval_rejects_bad_data(trained, tmp_path):
    data = tmp_path / "bad.npz"
    np.savez(data, images=np.zeros((3, 28, 28), dtype=np.float32), counts=np.zeros(3, int))
    with pytest.raises(SystemExit, match=r"must be 50x50 images"):
        main(["eval", "air", "--checkpoint", str(trained / "last.pt"), "--data", str(data)])
    np.savez(data, images=np.full((3, 50, 50), 2.0, dtype=np.float32), counts=np.zeros(3, int))
    with pytest.raises(SystemExit, match=r"values in \[0, 1\]"):
        main(["eval", "air", "--checkpoint", str(trained / "last.pt"), "--data", str(data)])
    np.savez(data, images=np.zeros((3, 50, 50), dtype=np.float32))
    with pytest.raises(SystemExit, match="lacks \\['counts'\\]"):
        main(["eval", "air", "--checkpoint", str(trained / "last.pt"), "--data", str(data)])
