"""Clear errors for sites and arguments the estimators cannot handle."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from probnets.infer import (
    DisARM_ELBO,
    REBAR_ELBO,
    Relaxed_ELBO,
    ScoreFunction_ELBO,
)


def site_pair(fn, infer=None):
    def model():
        pyro.sample("z", fn())

    def guide():
        pyro.sample("z", fn(), infer=infer or {})

    return model, guide


def bern():
    return dist.Bernoulli(torch.tensor(0.3))


def cat():
    return dist.Categorical(torch.tensor([0.2, 0.3, 0.5]))


def onehot():
    return dist.OneHotCategorical(torch.tensor([0.2, 0.3, 0.5]))


def nonreparameterized_normal_vector():
    fn = dist.Normal(torch.zeros(2), 1.0)
    fn.has_rsample = False
    return fn.to_event(1)


@pytest.mark.parametrize("name", ["disarm", "relaxed", "rebar", "relax", "reparameterized"])
def test_an_estimator_asked_for_at_a_site_it_cannot_handle_names_the_base_distribution(name):
    model, guide = site_pair(
        nonreparameterized_normal_vector, {"estimator": name, "temperature": 0.5}
    )
    with pytest.raises(ValueError, match=r"site 'z': .*Normal \(\.to_event\)"):
        ScoreFunction_ELBO().loss(model, guide)


@pytest.mark.parametrize("name", ["relaxed", "rebar", "relax"])
def test_relaxations_reject_integer_categorical(name):
    model, guide = site_pair(cat, {"estimator": name, "temperature": 0.5})
    with pytest.raises(
        ValueError, match="integer-valued Categorical cannot hold; use OneHotCategorical"
    ):
        ScoreFunction_ELBO().loss(model, guide)


def test_disarm_rejects_non_bernoulli():
    model, guide = site_pair(onehot, {"estimator": "disarm"})
    with pytest.raises(
        ValueError, match="DisARM handles Bernoulli sites only, but the site is OneHotCategorical"
    ):
        ScoreFunction_ELBO().loss(model, guide)


def test_rebar_downstream_integer_categorical_is_rejected():
    def model():
        b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.3)))
        pyro.sample("c", dist.Categorical(torch.stack([0.5 + 0 * b, 0.5 - 0 * b], -1)))

    def guide():
        b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.3)))
        pyro.sample(
            "c",
            dist.Categorical(torch.stack([0.5 + 0 * b, 0.5 - 0 * b], -1)),
            infer={"estimator": "score"},
        )

    with pytest.raises(
        ValueError, match="site 'c' is an integer Categorical downstream of REBAR site 'b'"
    ):
        REBAR_ELBO().loss_and_grads(model, guide)


def test_missing_temperature():
    model, guide = site_pair(bern, {"estimator": "relaxed"})
    with pytest.raises(
        ValueError, match="site 'z' uses the relaxed estimator but has no temperature"
    ):
        ScoreFunction_ELBO().loss(model, guide)
    with pytest.raises(
        ValueError, match="expected temperature to be a positive float, but got None"
    ):
        Relaxed_ELBO(temperature=None)


@pytest.mark.parametrize(
    "bad, exc, msg",
    [
        (0.0, ValueError, "expected temperature > 0, but got 0.0"),
        (-1.0, ValueError, "expected temperature > 0, but got -1.0"),
        ("hot", TypeError, "expected temperature to be a positive float, but got 'hot'"),
        (torch.ones(2), ValueError, r"expected a scalar temperature, but got shape \(2,\)"),
    ],
)
def test_invalid_temperature(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        Relaxed_ELBO(temperature=bad)
    model, guide = site_pair(bern, {"estimator": "relaxed", "temperature": bad})
    with pytest.raises(exc, match="site 'z'"):
        ScoreFunction_ELBO().loss(model, guide)


def test_unknown_estimator_names():
    model, guide = site_pair(bern, {"estimator": "reinforce"})
    with pytest.raises(ValueError, match=r"site 'z': infer\['estimator'\] must be one of"):
        ScoreFunction_ELBO().loss(model, guide)
    model, guide = site_pair(bern, {"estimator": "vimco"})
    with pytest.raises(ValueError, match="use VIMCO_ELBO"):
        ScoreFunction_ELBO().loss(model, guide)


def test_baseline_errors():
    with pytest.raises(ValueError, match="baseline must be one of"):
        ScoreFunction_ELBO(baseline="average")
    with pytest.raises(ValueError, match="baseline_beta must be in"):
        ScoreFunction_ELBO(baseline="decaying_avg", baseline_beta=1.0)
    model, guide = site_pair(bern)
    with pytest.raises(
        ValueError, match="leave-one-out baseline needs num_particles > 1, but got num_particles=1"
    ):
        ScoreFunction_ELBO(baseline="loo").loss_and_grads(model, guide)
    model, guide = site_pair(bern, {"baseline": {"use_decaying_avg": True}})
    with pytest.raises(
        ValueError, match=r"site 'z': unknown baseline options \['use_decaying_avg'\]"
    ):
        ScoreFunction_ELBO().loss_and_grads(model, guide)


def test_num_particles_must_be_positive_int():
    with pytest.raises(ValueError, match="num_particles must be a positive int, but got 0"):
        ScoreFunction_ELBO(num_particles=0)


def test_differentiable_loss_not_available_for_learned_control_variates():
    model, guide = site_pair(bern)
    with pytest.raises(
        NotImplementedError, match="REBAR_ELBO.differentiable_loss is not available"
    ):
        REBAR_ELBO().differentiable_loss(model, guide)


def test_differentiable_loss_value_is_negative_elbo():
    # a model whose ELBO is deterministic: q = p, so every estimate is exactly log p(x)
    def model():
        z = pyro.sample("z", bern())
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.5) + 0 * z)

    def guide():
        pyro.sample("z", bern())

    expected = -dist.Normal(0.0, 1.0).log_prob(torch.tensor(0.5)).item()
    for elbo in (ScoreFunction_ELBO(), DisARM_ELBO(), Relaxed_ELBO(0.5, straight_through=True)):
        assert elbo.differentiable_loss(model, guide).item() == pytest.approx(expected, abs=1e-6)
