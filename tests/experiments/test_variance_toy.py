"""The REBAR/RELAX one-Bernoulli toy as a model/guide, and the standard estimator set."""

import math

import pytest
import torch

import pyro
import pyro.poutine as poutine
from probnets.experiments import ADAPTIVE_ESTIMATORS, measure, toy_problem
from probnets.infer import standard_estimators
from probnets.models.toy import ToyBernoulli


def test_closed_form_variance_and_optimal_baseline():
    toy = ToyBernoulli(target=0.45)
    assert toy.exact_variance() == pytest.approx(0.0159390625, rel=1e-12)
    assert math.log(toy.exact_variance()) == pytest.approx(-4.139, abs=1e-3)
    optimal = 0.5 * (1 - 0.45) ** 2 + 0.5 * 0.45**2
    assert toy.exact_variance(baseline=optimal) == pytest.approx(0.0, abs=1e-15)
    assert toy.expected_loss() == pytest.approx(optimal)


def test_elbo_is_minus_expected_loss_per_sample():
    toy = ToyBernoulli(target=0.499, theta=0.7).double()
    for _ in range(5):
        guide_tr = poutine.trace(toy.guide).get_trace()
        model_tr = poutine.trace(poutine.replay(toy.model, trace=guide_tr)).get_trace()
        b = guide_tr.nodes["b"]["value"]
        elbo = model_tr.log_prob_sum() - guide_tr.log_prob_sum()
        assert elbo.dtype == torch.float64
        assert elbo.item() == pytest.approx(-((b.item() - 0.499) ** 2), abs=1e-12)


def test_probnets_estimator_in_float64():
    toy = ToyBernoulli().double()
    rebar = standard_estimators(["rebar"])["rebar"]()
    report = measure({"rebar": rebar}, toy.model, toy.guide, num_samples=5)
    assert report.estimators["rebar"].mean_grad["theta"].dtype == torch.float64
    assert pyro.param("theta").dtype == torch.float64


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"target must be a float in \(0, 1\), got 1.5"):
        ToyBernoulli(target=1.5)
    with pytest.raises(ValueError, match="theta must be a finite float"):
        ToyBernoulli(theta=float("inf"))
    with pytest.raises(ValueError, match=r"unknown estimator names \['rebarr'\]"):
        standard_estimators(["score", "rebarr"])


def test_problem_exposes_exact_gradient_and_metrics():
    problem = toy_problem(target=0.45, theta=0.0)
    assert problem.exact()["theta"].item() == pytest.approx(0.025)
    assert problem.evaluate() == pytest.approx({"expected_loss": 0.2525, "prob": 0.5})
    assert set(ADAPTIVE_ESTIMATORS) <= set(standard_estimators())


@pytest.mark.slow
def test_learned_rebar_beats_untuned_rebar_and_unbiased_estimators_are_unbiased():
    toy = ToyBernoulli(target=0.45)
    factories = standard_estimators(["score", "rebar-fixed", "disarm", "rebar"])
    report = measure(
        {name: f() for name, f in factories.items() if name != "rebar"},
        toy.model,
        toy.guide,
        num_samples=3000,
        exact=toy.exact_gradient,
    )
    learned = measure(
        {"rebar": factories["rebar"]()},
        toy.model,
        toy.guide,
        num_samples=3000,
        exact=toy.exact_gradient,
        cv_tune_steps=500,
        cv_lr=0.01,
    )
    for stats in list(report.estimators.values()) + [learned.estimators["rebar"]]:
        assert stats.bias_p_value > 1e-3, stats.name
    untuned = report.estimators["rebar-fixed"].log_variance
    assert learned.estimators["rebar"].log_variance < untuned - 0.3
