"""Sigmoid belief net: shapes, float64, exact log-likelihood, training, bad input."""

import itertools
import math

import pytest
import torch

import pyro
import pyro.poutine as poutine
from pyro.infer import Trace_ELBO, TraceGraph_ELBO
from probnets.infer import (
    DisARM_ELBO,
    REBAR_ELBO,
    RELAX_ELBO,
    Relaxed_ELBO,
    ScoreFunction_ELBO,
    VIMCO_ELBO,
)
from probnets.experiments import sbn_problem
from probnets.models.sbn import SigmoidBeliefNet, binarize


def _patterns(n, dim=12, dtype=torch.float64, seed=0):
    """Binary data from two prototypes with 5% flipped pixels."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.tensor([[1.0, 0.0] * (dim // 2), [1.0] * (dim // 2) + [0.0] * (dim // 2)])
    x = protos[torch.randint(0, 2, (n,), generator=g)]
    flip = torch.rand(n, dim, generator=g) < 0.05
    return torch.where(flip, 1 - x, x).to(dtype)


@pytest.mark.parametrize("layers", [(784, 200), (784, 200, 200)])
def test_site_shapes(layers):
    net = SigmoidBeliefNet(layers)
    x = binarize(torch.rand(24, 784), seed=0)
    guide_tr = poutine.trace(net.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(net.model, trace=guide_tr)).get_trace(x)
    for l in range(1, len(layers)):
        assert guide_tr.nodes[f"h{l}"]["value"].shape == (24, 200)
        assert model_tr.nodes[f"h{l}"]["fn"].event_shape == (200,)
    assert model_tr.nodes["x"]["is_observed"]
    model_tr.compute_log_prob()
    assert model_tr.nodes["x"]["log_prob"].shape == (24,)
    assert net.log_likelihood(x[:3], num_samples=10).shape == (3,)
    assert net.log_weights(x[:3], num_samples=5).shape == (5, 3)


def test_float64_end_to_end_and_training_step():
    net = SigmoidBeliefNet((12, 4, 3)).double()
    x = _patterns(8)
    guide_tr = poutine.trace(net.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(net.model, trace=guide_tr)).get_trace(x)
    assert guide_tr.nodes["h1"]["value"].dtype == torch.float64
    assert model_tr.log_prob_sum().dtype == torch.float64
    assert net.log_likelihood(x, num_samples=4).dtype == torch.float64
    elbo = REBAR_ELBO()
    with poutine.trace(param_only=True) as tr:
        elbo.loss_and_grads(net.model, net.guide, x)
    for name, site in tr.trace.nodes.items():
        leaf = site["value"].unconstrained()
        assert leaf.dtype == torch.float64, name
        assert leaf.grad is None or leaf.grad.dtype == torch.float64, name


def test_log_likelihood_matches_enumeration():
    net = SigmoidBeliefNet((5, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 1.0)
    x = _patterns(2, dim=6)[:, :5]
    exact = []
    for xi in x:
        terms = []
        for h in itertools.product([0.0, 1.0], repeat=3):
            h = torch.tensor(h, dtype=torch.float64)
            log_p = torch.distributions.Bernoulli(logits=net.prior_logits).log_prob(h).sum()
            logits = net.decoders[0](h)
            log_p = log_p + torch.distributions.Bernoulli(logits=logits).log_prob(xi).sum()
            terms.append(log_p)
        exact.append(torch.logsumexp(torch.stack(terms), 0))
    estimate = net.log_likelihood(x, num_samples=20000)
    assert torch.allclose(estimate, torch.stack(exact), atol=0.03)
    # The single-sample ELBO is a lower bound.
    assert (net.elbo(x, num_samples=2000) < estimate).all()


ESTIMATORS = {
    "Trace_ELBO": lambda: Trace_ELBO(),
    "TraceGraph_ELBO": lambda: TraceGraph_ELBO(),
    "score+nvil": lambda: ScoreFunction_ELBO(baseline="nvil"),
    "relaxed": lambda: Relaxed_ELBO(temperature=0.5),
    "rebar": lambda: REBAR_ELBO(),
    "relax": lambda: RELAX_ELBO(),
    "vimco": lambda: VIMCO_ELBO(num_particles=4, vectorize_particles=True),
    "disarm": lambda: DisARM_ELBO(),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_trains_under_every_estimator(name):
    net = SigmoidBeliefNet((12, 4), data_mean=torch.full((12,), 0.5)).double()
    data = _patterns(256)
    held_out = _patterns(200, seed=1)
    before = net.elbo(held_out, num_samples=20).mean().item()
    optim = pyro.optim.Adam(lambda param_name: {"lr": 5e-2})
    svi = pyro.infer.SVI(net.model, net.guide, optim, loss=ESTIMATORS[name]())
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        svi.step(data[torch.randint(0, 256, (16,), generator=g)])
    after = net.elbo(held_out, num_samples=20).mean().item()
    assert math.isfinite(after)
    # Two noisy prototypes: the ELBO per datapoint rises by several nats from init (~ -8.3).
    assert after > before + 2.0, (before, after)


def test_bad_inputs():
    net = SigmoidBeliefNet((784, 20))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 784\), got \(24, 28, 28\)"):
        net.model(torch.zeros(24, 28, 28))
    with pytest.raises(ValueError, match="x must be binary"):
        net.guide(torch.full((2, 784), 0.5))
    with pytest.raises(TypeError, match="x must have the module's dtype torch.float32"):
        net.model(torch.zeros(2, 784, dtype=torch.float64))
    with pytest.raises(TypeError, match="x must be a tensor, got list"):
        net.model([[0.0] * 784])
    with pytest.raises(ValueError, match=r"layers must be \(input_dim, hidden_1"):
        SigmoidBeliefNet((784,))
    with pytest.raises(ValueError, match=r"data_mean must have shape \(784,\), got \(10,\)"):
        SigmoidBeliefNet((784, 20), data_mean=torch.rand(10))
    with pytest.raises(ValueError, match="num_samples must be an int >= 1, got 0"):
        net.log_likelihood(torch.zeros(2, 784), num_samples=0)
    with pytest.raises(ValueError, match=r"images must hold intensities in \[0, 1\]"):
        binarize(torch.full((3,), 255.0))
    with pytest.raises(TypeError, match="images must be a floating-point tensor"):
        binarize(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size must be an int in"):
        sbn_problem(torch.rand(10, 784), batch_size=24)
    with pytest.raises(ValueError, match="images must have 784 pixels per image"):
        sbn_problem(torch.rand(10, 28, 27), batch_size=2)


def test_binarize_is_seeded_and_unbiased():
    images = torch.rand(50, 784, dtype=torch.float64)
    a, b = binarize(images, seed=3), binarize(images, seed=3)
    assert torch.equal(a, b) and a.dtype == torch.float64
    assert not torch.equal(a, binarize(images, seed=4))
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert abs((a - images).mean().item()) < 0.01


def test_problem_batches_are_deterministic_and_dynamic():
    images = torch.rand(100, 784)
    p1, p2 = sbn_problem(images, batch_size=24, seed=0), sbn_problem(images, batch_size=24, seed=0)
    (x0,), (x0b,), (x1,) = p1.batch(0), p2.batch(0), p1.batch(1)
    assert x0.shape == (24, 784) and torch.equal(x0, x0b) and not torch.equal(x0, x1)
    # Step 4 starts epoch 1 (4 batches per epoch): a new permutation and new binarization.
    assert p1.batch(4)[0].shape == (24, 784)
    assert set(p1.evaluate()) == {"elbo_train"}
