"""The default BayesianHypernet(widths, task=...) and its one-liner on 1-D data with a gap.

The default is a mean-field BNN (identity generator, tanh for regression and ReLU for
classification, guide started at 0.01, fit's cosine learning-rate decay); the compressed
hypernetwork that was the default is one argument away.
The fast test runs the one-liner at a small size; the slow one is the issue's check at full
size on three seeds (``examples/bayes_hypernet_one_liner.py`` prints the same numbers).
"""

import importlib.util
import pathlib

import pyro
import pytest
import torch

from probnets.models.bayes_hypernet import BayesianHypernet
from probnets.models.bayes_hypernet.toy import gap_regions, gap_regression

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "bayes_hypernet_one_liner.py"


def test_default_is_a_mean_field_bnn_and_the_old_default_is_one_argument_away():
    config = BayesianHypernet([1, 8, 1], task="regression").config()
    assert (config["parameterization"], config["generator"], config["embedding_dim"]) == (
        "layer",
        "identity",
        None,
    )
    assert (config["activation"], config["init_scale"], config["guide"]) == (
        "tanh",
        0.01,
        "mean_field",
    )
    classifier = BayesianHypernet([4, 8, 3], task="classification").config()
    assert (classifier["generator"], classifier["activation"]) == ("identity", "relu")
    for old in (
        BayesianHypernet([1, 8, 1], generator="linear"),
        BayesianHypernet([1, 8, 1], embedding_dim=8),
    ):
        config = old.config()
        assert (
            config["generator"],
            config["embedding_dim"],
            config["activation"],
            config["init_scale"],
        ) == ("linear", 8, "relu", 0.1)


def test_fit_decays_the_learning_rate_unless_told_not_to():
    x, y = gap_regression(20, seed=0)
    model = BayesianHypernet([1, 4, 1])
    rates = [row["lr"] for row in model.fit(x, y, num_steps=20, lr=0.01).history]
    assert rates[0] == pytest.approx(0.01) and rates[-1] == pytest.approx(0.001, rel=0.1)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    constant = [row["lr"] for row in model.fit(x, y, num_steps=5, lr_decay=1).history]
    assert constant == pytest.approx([0.01] * 5)
    with pytest.raises(ValueError, match=r"lr_decay must be in \(0, 1\]"):
        model.fit(x, y, num_steps=5, lr_decay=2.0)


def test_default_float64():
    pyro.set_rng_seed(0)
    x, y = gap_regression(20, seed=0, dtype=torch.float64)
    model = BayesianHypernet([1, 6, 6, 1], task="regression").double()
    model.fit(x, y, num_steps=5)
    prediction = model.predict(x, num_samples=4)
    assert all(t.dtype == torch.float64 and t.shape == (20,) for t in prediction)
    for _, value in pyro.get_param_store().named_parameters():
        assert value.dtype == torch.float64


def gap_ratios(model):
    std = {name: model.predict(x, 200).std.mean().item() for name, x in gap_regions().items()}
    return std["gap"] / std["data"], std["outside"] / std["data"]


def test_one_liner_is_uncertain_in_the_gap_and_outside_on_a_small_case():
    # The one-liner with a fifth of its steps (guides/bayes_hypernet.md has the numbers).
    pyro.set_rng_seed(0)
    x, y = gap_regression(120, seed=0)
    model = BayesianHypernet([1, 64, 64, 1], task="regression")
    model.fit(x, y, num_steps=600)
    gap, outside = gap_ratios(model)
    assert gap >= 2 and outside >= 3, (gap, outside)
    data = gap_regions()["data"]
    rmse = (model.predict(data, 100).mean - torch.sin(data[:, 0])).pow(2).mean().sqrt()
    assert rmse <= 0.2, rmse


def test_one_liner_draws_the_first_seeds_bands_without_changing_its_numbers(tmp_path):
    spec = importlib.util.spec_from_file_location("one_liner", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    figure = tmp_path / "bands.png"
    rows = example.main(["--seeds", "0", "1", "--steps", "5", "--width", "4"])
    drawn = example.main(
        ["--seeds", "0", "1", "--steps", "5", "--width", "4", "--figure", str(figure)]
    )
    assert figure.stat().st_size > 0
    for row, same in zip(rows, drawn):
        assert {k: v for k, v in row.items() if k != "seconds"} == {
            k: v for k, v in same.items() if k != "seconds"
        }


@pytest.mark.slow
def test_one_liner_meets_the_gap_targets_on_three_seeds():
    spec = importlib.util.spec_from_file_location("one_liner", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    for seed in (0, 1, 2):
        row = example.run(seed)
        assert row["std_ratio_gap"] >= 2 and row["std_ratio_outside"] >= 3, row
        assert row["rmse_data"] <= 0.2, row
