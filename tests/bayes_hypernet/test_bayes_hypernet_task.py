"""``probnets train bayes-hypernet`` end to end on the gap problem (a few steps)."""

import json
import os
import re

import numpy as np
import pytest
import torch

from probnets.cli import main


def test_gap1d_run_writes_metrics_and_bands(tmp_path):
    out = str(tmp_path / "run")
    code = main(
        [
            "train",
            "bayes-hypernet",
            "--problem",
            "gap1d",
            "--steps",
            "4",
            "--width",
            "8",
            "--guide",
            "flow",
            "--num-samples",
            "3",
            "--out",
            out,
            "--no-progress",
            "--dtype",
            "float64",
        ]
    )
    assert code == 0
    assert os.path.getsize(os.path.join(out, "predictive_bands.png")) > 0
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["steps"] == 4
    assert {"std_data", "epistemic_gap", "std_ratio_outside"} <= set(summary["eval"])


def test_bad_task_argument_is_reported(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "bayes-hypernet", "--guide", "laplace", "--out", str(tmp_path)])
    assert "invalid choice: 'laplace'" in capsys.readouterr().err


def _train(tmp_path, *extra):
    out = str(tmp_path / "run")
    code = main(["train", "bayes-hypernet", "--out", out, "--no-progress", *extra])
    assert code == 0
    return os.path.join(out, "last.pt")


def _evaluate(checkpoint, data, capsys, *extra):
    capsys.readouterr()
    assert (
        main(
            ["eval", "bayes-hypernet", "--checkpoint", checkpoint, "--data", data, "--json", *extra]
        )
        == 0
    )
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_regression_scores_the_right_targets_above_wrong_ones(tmp_path, capsys):
    from probnets.models.bayes_hypernet.toy import gap_regression

    checkpoint = _train(
        tmp_path,
        "--problem",
        "gap1d",
        "--steps",
        "300",
        "--width",
        "16",
        "--lr",
        "0.03",
        "--seed",
        "0",
        "--dtype",
        "float64",
    )
    x, y = gap_regression(60, noise=0.1, seed=5, dtype=torch.float64)
    good, wrong = str(tmp_path / "good.npz"), str(tmp_path / "wrong.npz")
    np.savez(good, x=x.numpy(), y=y.numpy())
    np.savez(wrong, x=x.numpy(), y=(y + 2.0).numpy())
    on_data = _evaluate(checkpoint, good, capsys, "--num-samples", "50")
    shifted = _evaluate(checkpoint, wrong, capsys, "--num-samples", "50")
    assert on_data["num_examples"] == 60
    assert {"nll", "rmse", "mean_predictive_std", "mean_epistemic_std"} <= set(on_data)
    assert on_data["rmse"] < 0.5 < shifted["rmse"]
    assert on_data["nll"] < shifted["nll"]


def test_eval_classification_reports_accuracy_and_calibration(tmp_path, capsys):
    from probnets.data import load_mnist

    checkpoint = _train(
        tmp_path,
        "--problem",
        "mnist",
        "--steps",
        "150",
        "--width",
        "32",
        "--num-train",
        "1000",
        "--num-test",
        "100",
        "--seed",
        "0",
    )
    test = load_mnist("test")
    data = str(tmp_path / "digits.npz")
    keep = torch.randperm(len(test.labels), generator=torch.Generator().manual_seed(1))[:300]
    np.savez(data, x=test.images[keep].reshape(300, -1).numpy(), y=test.labels[keep].numpy())
    row = _evaluate(checkpoint, data, capsys, "--num-samples", "20")
    assert row["num_examples"] == 300
    assert row["accuracy"] > 0.5  # chance is 0.1
    assert 0.0 <= row["ece"] <= 1.0 and row["nll"] > 0.0


def test_eval_rejects_bad_data(tmp_path, capsys):
    checkpoint = _train(tmp_path, "--problem", "gap1d", "--steps", "2", "--width", "4")
    missing, shape = str(tmp_path / "missing.npz"), str(tmp_path / "shape.npz")
    np.savez(missing, x=np.zeros((3, 1)))
    np.savez(shape, x=np.zeros((3, 2)), y=np.zeros(3))
    for data, message in ((missing, "lacks ['y']"), (shape, "x must have shape (N, 1)")):
        with pytest.raises(SystemExit, match=re.escape(message)):
            main(["eval", "bayes-hypernet", "--checkpoint", checkpoint, "--data", data])


def test_identity_generator_and_init_scale_reach_the_checkpoint(tmp_path):
    checkpoint = _train(
        tmp_path,
        "--problem",
        "gap1d",
        "--steps",
        "2",
        "--width",
        "8",
        "--parameterization",
        "layer",
        "--generator",
        "identity",
        "--init-scale",
        "0.01",
        "--num-samples",
        "3",
    )
    config = torch.load(checkpoint, weights_only=False)["extra"]["config"]
    assert config["generator"] == "identity" and config["embedding_dim"] is None
    assert config["init_scale"] == 0.01


def test_input_unit_model_with_kl_weight_trains_reloads_and_classifies(tmp_path, capsys):
    from probnets.data import load_mnist
    from probnets.models.bayes_hypernet import BayesianHypernet

    checkpoint = _train(
        tmp_path,
        "--problem",
        "mnist",
        "--steps",
        "150",
        "--width",
        "32",
        "--num-train",
        "1000",
        "--num-test",
        "100",
        "--seed",
        "0",
        "--parameterization",
        "input_unit",
        "--embedding-dim",
        "4",
        "--kl-weight",
        "0.1",
        "--num-samples",
        "5",
    )
    model = BayesianHypernet.load(checkpoint)
    assert (model.parameterization, model.kl_weight, model.embedding_dim) == ("input_unit", 0.1, 4)
    digits = load_mnist("test")
    keep = torch.randperm(len(digits.labels), generator=torch.Generator().manual_seed(1))[:300]
    data = str(tmp_path / "digits.npz")
    np.savez(data, x=digits.images[keep].reshape(300, -1).numpy(), y=digits.labels[keep].numpy())
    row = _evaluate(checkpoint, data, capsys, "--num-samples", "20")
    assert row["accuracy"] > 0.5


@pytest.mark.parametrize("problem, activation", [("gap1d", "tanh"), ("mnist", "relu")])
def test_default_run_is_the_models_default(problem, activation):
    """No model flags: BayesianHypernet's default (the identity generator, i.e. a mean-field
    BNN, guide at 0.01), trained with the learning rate decaying along a cosine to 0.1x as
    its fit does; the earlier layer hypernetwork is one flag away."""
    from probnets.tasks.bayes_hypernet import BayesHypernetConfig, _make_model
    from probnets.train import parse_schedule

    config = BayesHypernetConfig(problem=problem)
    widths = [784, 8, 10] if problem == "mnist" else [1, 8, 1]
    task = "classification" if problem == "mnist" else "regression"
    model = _make_model(config, widths, task)
    assert (model.parameterization, model.generator) == ("layer", "identity")
    assert model.init_scale == 0.01 and model.activation == activation
    schedule = parse_schedule(config.lr_schedule, config.steps)
    assert schedule(0) == pytest.approx(1.0) and schedule(config.steps) == pytest.approx(0.1)
    assert schedule(config.steps // 2) == pytest.approx(0.55)
    earlier = _make_model(
        BayesHypernetConfig(problem=problem, generator="linear", init_scale=0.1), widths, task
    )
    assert (earlier.generator, earlier.embedding_dim, earlier.init_scale) == ("linear", 8, 0.1)
    unit = _make_model(BayesHypernetConfig(problem=problem, parameterization="unit"), widths, task)
    assert (unit.parameterization, unit.embedding_dim) == ("unit", 2)
