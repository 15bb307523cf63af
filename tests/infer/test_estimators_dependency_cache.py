"""``cache_dependencies``: reusing the provenance found on an earlier step gives exactly the
gradients that tracking provenance again gives, and a new trace structure is tracked afresh."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from probnets.infer import DisARM_ELBO, REBAR_ELBO, ScoreFunction_ELBO
from probnets.models.air import AIR

F64 = dict(dtype=torch.float64)


def chain_model(data, steps=3):
    """A presence chain like AIR's: ``z_t`` is masked out once an earlier ``z`` is 0; only
    later sites and the observation depend on ``z_t``."""
    alive = torch.ones((), **F64)
    total = torch.zeros((), **F64)
    for t in range(steps):
        z = pyro.sample(f"z_{t}", dist.Bernoulli(0.4 * alive))
        w = pyro.sample(f"w_{t}", dist.Normal(torch.zeros((), **F64), 1.0).mask(z > 0))
        alive = alive * z
        total = total + z * w
    pyro.sample("x", dist.Normal(total, 0.5), obs=data)


def chain_guide(data, steps=3):
    logit = pyro.param("logit", torch.tensor(0.2, **F64))
    loc = pyro.param("loc", torch.tensor(0.1, **F64))
    alive = torch.ones((), **F64)
    for t in range(steps):
        z = pyro.sample(f"z_{t}", dist.Bernoulli(torch.sigmoid(logit + t * data) * alive))
        pyro.sample(f"w_{t}", dist.Normal(loc + t, 1.0).mask(z > 0))
        alive = alive * z


def gradients(elbo, model, guide, seed, *args, **kwargs):
    params = pyro.get_param_store()
    for p in params.values():
        p.unconstrained().grad = None
    pyro.set_rng_seed(seed)
    loss = elbo.loss_and_grads(model, guide, *args, **kwargs)
    return loss, {
        name: p.unconstrained().grad.clone()
        for name, p in params.items()
        if p.unconstrained().grad is not None
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda cache: ScoreFunction_ELBO(baseline="decaying_avg", cache_dependencies=cache),
        lambda cache: DisARM_ELBO(cache_dependencies=cache),
        lambda cache: REBAR_ELBO(cache_dependencies=cache),
    ],
    ids=["score", "disarm", "rebar"],
)
def test_cached_dependencies_give_the_tracked_gradients(make):
    pyro.clear_param_store()
    data = torch.tensor(1.3, **F64)
    cached, tracked = make(True), make(False)
    gradients(cached, chain_model, chain_guide, 0, data)  # fills the cache
    gradients(tracked, chain_model, chain_guide, 0, data)
    assert len(cached._dependencies) == 1 and not tracked._dependencies
    for seed in range(1, 6):
        loss_c, grads_c = gradients(cached, chain_model, chain_guide, seed, data)
        loss_t, grads_t = gradients(tracked, chain_model, chain_guide, seed, data)
        assert loss_c == loss_t
        assert grads_c.keys() == grads_t.keys() and grads_c
        for name in grads_t:
            torch.testing.assert_close(grads_c[name], grads_t[name], rtol=0, atol=0)


def test_cached_dependencies_are_the_provenance_dependencies():
    pyro.clear_param_store()
    elbo = ScoreFunction_ELBO(cache_dependencies=True)
    data = torch.tensor(0.5, **F64)
    elbo.loss_and_grads(chain_model, chain_guide, data)
    (dependents,) = elbo._dependencies.values()
    # z_1 reaches z_1, w_1, z_2, w_2 on both sides and the observation, never step 0
    assert set(dependents["z_1"]) == {
        (side, f"{kind}_{t}") for side in ("model", "guide") for kind in ("z", "w") for t in (1, 2)
    } | {("model", "x")}
    assert ("model", "x") in dependents["z_0"] and ("guide", "z_0") in dependents["z_0"]


def test_a_new_structure_is_tracked_again_on_the_same_draw():
    """A new signature re-runs the step's own draw with provenance (not a fresh draw, which
    would favour cached structures): the step's gradients equal tracking's bit for bit."""
    pyro.clear_param_store()
    data = torch.tensor(0.5, **F64)
    cached, tracked = ScoreFunction_ELBO(cache_dependencies=True), ScoreFunction_ELBO()
    gradients(cached, chain_model, chain_guide, 0, data, steps=2)
    gradients(tracked, chain_model, chain_guide, 0, data, steps=2)  # guesses plate nesting
    for seed in (7, 8):  # 7: new signature, tracked again; 8: served from the cache
        loss_c, grads_c = gradients(cached, chain_model, chain_guide, seed, data, steps=4)
        loss_t, grads_t = gradients(tracked, chain_model, chain_guide, seed, data, steps=4)
        assert loss_c == loss_t and grads_c.keys() == grads_t.keys()
        for name in grads_t:
            torch.testing.assert_close(grads_c[name], grads_t[name], rtol=0, atol=0)
    assert len(cached._dependencies) == 2
    (four,) = [d for s, d in cached._dependencies.items() if len(s) > 12]
    assert ("model", "x") in four["z_3"]


def test_air_step_with_cached_dependencies_equals_tracked():
    """AIR's structure is static (fixed steps, masking): the cache is exact there."""
    images = torch.rand(4, 20, 20, **F64) * 0.5
    results = []
    for cache in (True, False):
        pyro.clear_param_store()
        pyro.set_rng_seed(3)
        air = AIR(
            image_size=20,
            num_steps=2,
            window_size=8,
            z_what_size=3,
            rnn_hidden_size=16,
            encoder_hidden=16,
            decoder_hidden=16,
            predict_hidden=16,
        ).double()
        elbo = ScoreFunction_ELBO(cache_dependencies=cache)
        elbo.loss_and_grads(air.model, air.guide, images)
        air.zero_grad()
        pyro.set_rng_seed(11)
        loss = elbo.loss_and_grads(air.model, air.guide, images)
        results.append(
            (loss, {n: p.grad.clone() for n, p in air.named_parameters() if p.grad is not None})
        )
    (loss_c, grads_c), (loss_t, grads_t) = results
    assert loss_c == loss_t and grads_c.keys() == grads_t.keys()
    assert any(n.startswith("baseline") for n in grads_t)
    for name in grads_t:
        torch.testing.assert_close(grads_c[name], grads_t[name], rtol=0, atol=0)
