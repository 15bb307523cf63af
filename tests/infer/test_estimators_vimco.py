"""
VIMCO against the exact K-sample bound gradient. A plate of R identical replicates holds
every site, so each call sums R independent per-element estimates (the per-element bound);
the exact value is R times the gradient of one copy's bound, enumerated over all K-tuples.
"""

import itertools
import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from probnets.infer import VIMCO_ELBO

R = 100
X = torch.tensor(0.8, dtype=torch.float64)
PARAMS = ("mu", "la", "lc", "lz")


def model(reps):
    mu = pyro.param("mu", torch.tensor([0.5, -0.5, 1.0], dtype=torch.float64))
    with pyro.plate("reps", reps):
        a = pyro.sample("a", dist.Bernoulli(torch.tensor(0.4, dtype=torch.float64)))
        probs = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], dtype=torch.float64)
        c = pyro.sample("c", dist.OneHotCategorical(probs=probs[a.long()]))
        z = pyro.sample("z", dist.Bernoulli(logits=0.3 - a))
        pyro.sample("x", dist.Normal(z + c @ mu + a, 1.0), obs=X.expand(reps))


def guide(reps):
    la = pyro.param("la", torch.tensor(0.2, dtype=torch.float64))
    lc = pyro.param("lc", torch.tensor([[0.1, -0.3, 0.4], [0.5, 0.0, -0.2]], dtype=torch.float64))
    lz = pyro.param("lz", torch.tensor([0.1, -0.4], dtype=torch.float64))
    with pyro.plate("reps", reps):
        a = pyro.sample("a", dist.Bernoulli(logits=la.expand(reps)))
        c = pyro.sample("c", dist.OneHotCategorical(logits=lc[a.long()]))
        pyro.sample("z", dist.Bernoulli(logits=(c[..., :2] * lz).sum(-1) + a))


def exact_gradient(K):
    pyro.clear_param_store()
    eye = torch.eye(3, dtype=torch.float64)
    logq, logw = [], []
    for a, c, z in itertools.product((0.0, 1.0), range(3), (0.0, 1.0)):
        data = {
            "a": torch.tensor([a], dtype=torch.float64),
            "c": eye[c][None],
            "z": torch.tensor([z], dtype=torch.float64),
        }
        gt = poutine.trace(poutine.condition(guide, data)).get_trace(1)
        mt = poutine.trace(poutine.condition(model, data)).get_trace(1)
        logq.append(gt.log_prob_sum())
        logw.append(mt.log_prob_sum() - gt.log_prob_sum())
    logq, logw = torch.stack(logq), torch.stack(logw)
    bound = 0.0
    for tup in itertools.product(range(len(logq)), repeat=K):
        idx = torch.tensor(tup)
        bound = bound + logq[idx].sum().exp() * (logw[idx].logsumexp(0) - math.log(K))
    params = [pyro.param(n).unconstrained() for n in PARAMS]
    grads = torch.autograd.grad(-R * bound, params)
    return torch.cat([g.reshape(-1) for g in grads])


def test_vimco_mean_gradient_matches_exact_multi_sample_bound():
    pyro.set_rng_seed(0)
    K = 3
    exact = exact_gradient(K)
    elbo = VIMCO_ELBO(num_particles=K)
    pyro.clear_param_store()
    samples = []
    for _ in range(30):
        elbo.loss_and_grads(model, guide, R)
        store = pyro.get_param_store()
        samples.append(
            torch.cat([store[n].unconstrained().grad.reshape(-1).clone() for n in PARAMS])
        )
        for n in store.keys():
            store[n].unconstrained().grad = None
    samples = torch.stack(samples)
    assert samples.dtype == torch.float64
    z = (samples.mean(0) - exact) / (samples.std(0) / samples.shape[0] ** 0.5)
    assert z.abs().max() < 4.5, (z, exact, samples.mean(0))


def test_vimco_bound_is_tighter_than_elbo_and_loss_matches_value():
    pyro.set_rng_seed(1)
    pyro.clear_param_store()
    elbo = VIMCO_ELBO(num_particles=8)
    losses = [elbo.loss(model, guide, R) for _ in range(5)]
    from probnets.infer import ScoreFunction_ELBO

    single = [ScoreFunction_ELBO().loss(model, guide, R) for _ in range(5)]
    assert sum(losses) / 5 < sum(single) / 5
    dl = elbo.differentiable_loss(model, guide, R)
    assert dl.dtype == torch.float64 and dl.requires_grad


def test_vimco_errors():
    with pytest.raises(ValueError, match="num_particles >= 2"):
        VIMCO_ELBO(num_particles=1)

    def guide_with_key(reps):
        la = pyro.param("la", torch.tensor(0.2, dtype=torch.float64))
        with pyro.plate("reps", reps):
            pyro.sample("a", dist.Bernoulli(logits=la.expand(reps)), infer={"estimator": "rebar"})

    def small_model(reps):
        with pyro.plate("reps", reps):
            pyro.sample("a", dist.Bernoulli(torch.tensor(0.4, dtype=torch.float64)))

    with pytest.raises(ValueError, match="site 'a' asks for estimator 'rebar'"):
        VIMCO_ELBO(num_particles=2).loss(small_model, guide_with_key, 3)
