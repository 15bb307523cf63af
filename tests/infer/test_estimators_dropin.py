"""The probnets ELBOs as drop-ins for Pyro's: Pyro's ELBO arguments, sequential particles by
default, Pyro's model/guide validation, and clear behaviour where Pyro's would be."""

import warnings

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from probnets.infer import (
    DisARM_ELBO,
    REBAR_ELBO,
    RELAX_ELBO,
    Relaxed_ELBO,
    ScoreFunction_ELBO,
    VIMCO_ELBO,
)

F64 = dict(dtype=torch.float64)
PYRO_ARGS = dict(
    max_plate_nesting=2,
    vectorize_particles=True,
    strict_enumeration_warning=False,
    ignore_jit_warnings=True,
    jit_options={"check_trace": False},
    retain_graph=True,
    tail_adaptive_beta=-0.5,
)
ELBOS = {
    "score": ScoreFunction_ELBO,
    "relaxed": lambda **kw: Relaxed_ELBO(0.5, **kw),
    "rebar": REBAR_ELBO,
    "relax": RELAX_ELBO,
    "disarm": DisARM_ELBO,
    "vimco": VIMCO_ELBO,
}


def model():
    b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.4, **F64)))
    pyro.sample("x", dist.Normal(2 * b, 1.0), obs=torch.tensor(1.0, **F64))


def guide():
    lb = pyro.param("lb", torch.tensor(0.2, **F64))
    pyro.sample("b", dist.Bernoulli(logits=lb))


@pytest.mark.parametrize("name", list(ELBOS))
def test_pyro_elbo_arguments_keep_their_meaning(name):
    elbo = ELBOS[name](num_particles=2, **PYRO_ARGS)
    for key, value in PYRO_ARGS.items():
        expected = value + 1 if key == "max_plate_nesting" else value  # + the particle plate
        assert getattr(elbo, key) == expected, key
    with pytest.warns(DeprecationWarning, match="max_iarange_nesting is deprecated"):
        assert ELBOS[name](num_particles=2, max_iarange_nesting=1).max_plate_nesting == 1
    pyro.clear_param_store()
    assert isinstance(elbo.loss_and_grads(model, guide), float)


def branching_model():
    b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.4, **F64)))
    if b.item() > 0:  # Python control flow on a sample: one particle at a time
        pyro.sample("c", dist.Bernoulli(torch.tensor(0.7, **F64)))
    pyro.sample("x", dist.Normal(2 * b, 1.0), obs=torch.tensor(1.0, **F64))


def branching_guide():
    b = pyro.sample("b", dist.Bernoulli(logits=pyro.param("lb", torch.tensor(0.2, **F64))))
    if b.item() > 0:
        pyro.sample("c", dist.Bernoulli(logits=pyro.param("lc", torch.tensor(0.1, **F64))))


@pytest.mark.parametrize("name", ["score", "disarm", "vimco"])
def test_particles_are_sequential_by_default(name):
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    elbo = ELBOS[name](num_particles=3)
    assert elbo.vectorize_particles is False
    assert isinstance(elbo.loss_and_grads(branching_model, branching_guide), float)


@pytest.mark.parametrize("name", ["score", "disarm", "rebar", "relaxed"])
def test_sequential_particles_average_single_particle_estimates(name):
    """K particles one after the other are K single-particle estimates, averaged."""
    grads = []
    for particles, calls in ((3, 1), (1, 3)):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        elbo = ELBOS[name](num_particles=particles)
        loss = sum(elbo.loss_and_grads(model, guide) for _ in range(calls)) / calls
        grads.append((loss, pyro.param("lb").unconstrained().grad.clone() / calls))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-12)
    if name != "rebar":  # REBAR's variance gradient of a 3-particle mean is not a mean
        torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-10, atol=1e-12)


def guide_missing_site():
    guide()
    pyro.sample("extra", dist.Bernoulli(torch.tensor(0.5, **F64)))


def model_missing_latent():
    model()
    pyro.sample("lonely", dist.Bernoulli(torch.tensor(0.5, **F64)))


def plated_model():
    with pyro.plate("data", 3):
        pyro.sample("b", dist.Bernoulli(torch.tensor(0.4, **F64)))


def unplated_guide():
    pyro.sample("b", dist.Bernoulli(logits=pyro.param("l", torch.zeros(2, **F64))).to_event(1))


@pytest.mark.parametrize("name", list(ELBOS))
def test_validation_runs_pyros_model_guide_checks(name):
    make = ELBOS[name]
    with pyro.validation_enabled():
        with pytest.warns(UserWarning, match="Found non-auxiliary vars in guide but not model"):
            make(num_particles=2).loss(model, guide_missing_site)
        with pytest.warns(UserWarning, match="Found vars in model but not guide"):
            make(num_particles=2).loss(model_missing_latent, guide)
        with pytest.raises(ValueError, match="Model and guide event_dims disagree|shape"):
            make(num_particles=2).loss(plated_model, unplated_guide)
        enumerated = poutine.infer_config(guide, lambda site: {"enumerate": "parallel"})
        with pytest.warns(UserWarning, match="you need to use TraceEnum_ELBO"):
            make(num_particles=2).loss(model, enumerated)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pyro.validation_enabled(False):
            make(num_particles=2).loss(model, guide_missing_site)  # no checks when off


def test_validation_checks_site_shapes_against_plates():
    def model_bad_shape():
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Normal(torch.zeros(2, **F64), 1.0), obs=torch.zeros(2, **F64))

    with pyro.validation_enabled(), pytest.raises(ValueError, match="Shape mismatch inside plate"):
        ScoreFunction_ELBO().loss(model_bad_shape, lambda: None)


@pytest.mark.parametrize("name", list(ELBOS))
def test_no_trainable_parameters_skips_the_backward(name):
    def fixed_guide():
        pyro.sample("b", dist.Bernoulli(torch.tensor(0.3, **F64)))

    pyro.clear_param_store()
    loss = ELBOS[name](num_particles=2).loss_and_grads(model, fixed_guide)
    assert isinstance(loss, float)


@pytest.mark.parametrize("name", list(ELBOS))
def test_empty_model_and_guide_is_a_clear_error(name):
    with pytest.raises(ValueError, match="no sample sites"):
        ELBOS[name](num_particles=2).loss_and_grads(lambda: None, lambda: None)


@pytest.mark.parametrize("name", ["rebar", "relax"])
def test_control_variates_without_guide_parameters(name):
    """Discrete sites but nothing to learn in the guide: a model parameter still trains."""

    def model_with_param():
        mu = pyro.param("mu", torch.tensor(0.5, **F64))
        b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.4, **F64)))
        pyro.sample("x", dist.Normal(2 * b + mu, 1.0), obs=torch.tensor(1.0, **F64))

    def fixed_guide():
        pyro.sample("b", dist.Bernoulli(torch.tensor(0.3, **F64)))

    pyro.clear_param_store()
    ELBOS[name]().loss_and_grads(model_with_param, fixed_guide)
    assert pyro.param("mu").unconstrained().grad.abs() > 0


def test_retain_graph_lets_the_graph_be_reused():
    pyro.clear_param_store()
    leaf = torch.tensor(0.2, **F64, requires_grad=True)

    def guide_from_leaf():
        pyro.sample("b", dist.Bernoulli(logits=leaf * 1.0))

    elbo = ScoreFunction_ELBO(retain_graph=True)
    terms = elbo._terms(model, guide_from_leaf, (), {})
    terms["surrogate"].backward(retain_graph=elbo.retain_graph)
    terms["surrogate"].backward()  # would raise if the first backward freed the graph
    assert leaf.grad is not None
