"""Epistemic uncertainty away from the data on 1-D regression with a gap in the inputs.

Small, seeded versions of ``probnets train bayes-hypernet --problem gap1d``; the guide
(guides/bayes_hypernet.md) has the full runs and figures. The assertions are on the epistemic
standard deviation (the spread of the mean function over posterior samples); the total
predictive standard deviation also contains the fixed noise, 0.1.
"""

import pyro
import torch

from probnets.models.bayes_hypernet import BayesianHypernet
from probnets.models.bayes_hypernet.toy import gap_regions, gap_regression
from probnets.train import Cosine


def epistemic(model):
    return {
        name: model.predict(x, 100).epistemic_std.mean().item() for name, x in gap_regions().items()
    }


def train(steps, num_points=60, width=16, lr=0.03, **kwargs):
    pyro.set_rng_seed(0)
    x, y = gap_regression(num_points, seed=0)
    model = BayesianHypernet([1, width, width, 1], noise_scale=0.1, **kwargs)
    model.fit(x, y, num_steps=steps, lr=lr, lr_schedule=Cosine(1.0, 0.1, steps))
    return model


def test_unit_embeddings_are_uncertain_inside_the_gap():
    model = train(600, parameterization="unit", embedding_dim=2, hidden_dim=16, activation="tanh")
    std = epistemic(model)
    assert std["gap"] > 2 * std["data"], std


def test_layer_embeddings_are_uncertain_outside_the_data():
    model = train(600, parameterization="layer", embedding_dim=8, activation="relu")
    std = epistemic(model)
    # Grows beyond the data, but by less than the "several times" the issue asks for (the
    # guide explains why a point-estimated generator shrinks it).
    assert std["outside"] > 1.25 * std["data"], std
    prediction = model.predict(gap_regions()["data"], 50)
    assert (prediction.mean - torch.sin(gap_regions()["data"][:, 0])).abs().mean() < 0.2


def test_uncompressed_limit_is_several_times_more_uncertain_in_the_gap_and_outside():
    # The identity generator makes the embeddings the weights: a mean-field BNN with a fixed
    # N(0, 1) prior on every weight. This is the target, on the predictive std (noise
    # included), at the guide's full size (120 points, 1-32-32-1); the guide measured gap
    # ratios 7.2-10.0 and outside ratios 4.3-6.0 over seeds 0-2.
    model = train(
        2000,
        num_points=120,
        width=32,
        lr=0.01,
        generator="identity",
        embedding_dim=None,
        activation="tanh",
        init_scale=0.01,
    )
    regions = gap_regions()
    predictions = {name: model.predict(x, 100) for name, x in regions.items()}
    std = {name: p.std.mean().item() for name, p in predictions.items()}
    assert std["gap"] > 3 * std["data"], std
    assert std["outside"] > 3 * std["data"], std
    error = (predictions["data"].mean - torch.sin(regions["data"][:, 0])).abs().mean()
    assert error < 0.15, error
