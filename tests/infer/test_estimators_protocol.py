"""The per-site protocol: the plan each site gets, fallbacks to the score function for
non-reparameterizable sites an estimator does not take, a user-registered estimator (the
guide's ARM) checked against exact enumeration, per-element decaying averages, and VIMCO's
O(K) leave-one-out bounds."""

import math
import pathlib
import re

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.distributions.testing import fakes

from probnets.infer import (
    DisARM_ELBO,
    DiscreteELBO,
    REBAR_ELBO,
    RELAX_ELBO,
    Relaxed_ELBO,
    ScoreFunction_ELBO,
    registered_estimators,
    standard_estimators,
    unregister_estimator,
)
from probnets.infer.guide_pass import GuidePass
from probnets.infer.vimco import leave_one_out_bounds

F64 = dict(dtype=torch.float64)
GUIDE = pathlib.Path(__file__).resolve().parents[2] / "guides" / "estimators.md"


def plan_of(elbo, guide):
    first = GuidePass(elbo.plan)
    poutine.trace(first(guide)).get_trace()
    return {name: record.estimator.name for name, record in first.records.items()}


def mixed_guide():
    pyro.sample("b", dist.Bernoulli(logits=torch.tensor(0.1)))
    pyro.sample("k", dist.OneHotCategorical(logits=torch.zeros(3)))
    pyro.sample("c", dist.Categorical(logits=torch.zeros(3)))
    pyro.sample("n", dist.Poisson(torch.tensor(2.0)))
    pyro.sample("g", fakes.NonreparameterizedGamma(torch.tensor(2.0), torch.tensor(1.0)))
    pyro.sample("w", dist.Normal(0.0, 1.0))
    pyro.sample("s", dist.Normal(0.0, 1.0), infer={"estimator": "score"})


@pytest.mark.parametrize(
    "make, expected",
    [
        (ScoreFunction_ELBO, dict(b="score", k="score", c="score")),
        (DisARM_ELBO, dict(b="disarm", k="score", c="score")),
        (REBAR_ELBO, dict(b="rebar", k="rebar", c="score")),
        (RELAX_ELBO, dict(b="relax", k="relax", c="score")),
        (lambda: Relaxed_ELBO(0.5), dict(b="relaxed", k="relaxed", c="score")),
    ],
    ids=["score", "disarm", "rebar", "relax", "relaxed"],
)
def test_each_elbo_takes_its_sites_and_gives_the_others_to_the_score_function(make, expected):
    plan = plan_of(make(), mixed_guide)
    assert plan == dict(expected, n="score", g="score", w="reparameterized", s="score")


def test_the_plan_is_resolved_once_per_site():
    elbo = DisARM_ELBO()
    plan_of(elbo, mixed_guide)
    plans = dict(elbo._plans)
    plan_of(elbo, mixed_guide)
    assert elbo._plans == plans and len(plans) == 7


def exact_bernoulli_gamma_gradient():
    """Exact ∇(−ELBO) of bg_model/bg_guide in (lb, log_alpha): b's part by enumeration, the
    Gamma's in closed form (E log g = ψ(α) − log β)."""
    lb = torch.tensor(0.3, **F64, requires_grad=True)
    la = torch.tensor(math.log(2.0), **F64, requires_grad=True)
    q = torch.sigmoid(lb)
    alpha = la.exp()
    gamma_q = dist.Gamma(alpha, torch.tensor(1.0, **F64))
    # E_q[log p(g)] − E_q[log q(g)] with log p(g) = 2 log g − g − log Γ(3)
    e_log_g = torch.digamma(alpha)
    elbo_g = 2 * e_log_g - alpha - math.lgamma(3.0) + gamma_q.entropy()
    elbo_b = 0.0
    for b in (0.0, 1.0):
        qb = q if b else 1 - q
        pb = torch.tensor(0.4 if b else 0.6, **F64)
        like = dist.Normal(torch.tensor(2 * b, **F64), 1.0).log_prob(torch.tensor(1.2, **F64))
        elbo_b = elbo_b + qb * (pb.log() + like - qb.log())
    return torch.stack(torch.autograd.grad(-(elbo_b + elbo_g), [lb, la]))


def bg_model():
    b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.4, **F64)))
    pyro.sample("g", dist.Gamma(torch.tensor(3.0, **F64), 1.0))
    pyro.sample("x", dist.Normal(2 * b, 1.0), obs=torch.tensor(1.2, **F64))


def bg_guide():
    lb = pyro.param("lb", torch.tensor(0.3, **F64))
    la = pyro.param("la", torch.tensor(math.log(2.0), **F64))
    pyro.sample("b", dist.Bernoulli(logits=lb))
    pyro.sample("g", fakes.NonreparameterizedGamma(la.exp(), torch.tensor(1.0, **F64)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ScoreFunction_ELBO(
            num_particles=512, vectorize_particles=True, baseline="decaying_avg"
        ),
        lambda: DisARM_ELBO(num_particles=512, vectorize_particles=True),
        lambda: REBAR_ELBO(num_particles=512, vectorize_particles=True),
    ],
    ids=["score", "disarm", "rebar"],
)
def test_continuous_nonreparameterized_site_gets_an_unbiased_score_function(make):
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    exact = exact_bernoulli_gamma_gradient()
    elbo = make()
    out = []
    for _ in range(20):
        elbo.loss_and_grads(bg_model, bg_guide)
        leaves = [pyro.param(n).unconstrained() for n in ("lb", "la")]
        out.append(torch.stack([leaf.grad.clone() for leaf in leaves]))
        for leaf in leaves:
            leaf.grad = None
    out = torch.stack(out)
    z = (out.mean(0) - exact) / (out.std(0) / len(out) ** 0.5)
    assert z.abs().max() < 4.5, (z, exact, out.mean(0))


def test_user_estimator_from_the_guide_is_unbiased_and_registered():
    """Runs the guide's ARM block: it asserts unbiasedness against probnets.infer.exact."""
    blocks = re.findall(r"^```python[ \t]*\n(.*?)^```", GUIDE.read_text(), re.S | re.M)
    (block,) = [b for b in blocks if "class ARM" in b]
    try:
        exec(compile(block, "estimators.md[ARM]", "exec"), {"__name__": "guide_arm"})
        assert "arm" in registered_estimators() and "arm" in standard_estimators()
        assert isinstance(standard_estimators(["arm"])["arm"](), DiscreteELBO)
    finally:
        unregister_estimator("arm")
    assert "arm" not in standard_estimators()


def test_register_estimator_rejects_what_is_not_an_estimator():
    from probnets.infer import register_estimator

    with pytest.raises(TypeError, match="expected a subclass of SiteEstimator"):
        register_estimator(object)


PLATE_COSTS = torch.tensor([-4.0, 0.0, 4.0], **F64)


def plate_model():
    with pyro.plate("p", 3):
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.5, **F64)))
        pyro.sample("x", dist.Normal(PLATE_COSTS * (1 + z), 1.0), obs=torch.zeros(3, **F64))


def plate_guide(infer=None):
    logits = pyro.param("l", torch.zeros(3, **F64))
    with pyro.plate("p", 3):
        pyro.sample("z", dist.Bernoulli(logits=logits), infer=infer or {})


def expected_costs():
    """E_q[f_i] per plate element at q = p = Bernoulli(0.5)."""
    out = 0.0
    for z in (0.0, 1.0):
        like = dist.Normal(PLATE_COSTS * (1 + z), 1.0).log_prob(torch.zeros(3, **F64))
        out = out + 0.5 * like  # log p(z) − log q(z) = 0
    return out


def gradient_std(elbo, guide, calls=300, warmup=50):
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    grads = []
    for step in range(warmup + calls):
        elbo.loss_and_grads(plate_model, guide)
        leaf = pyro.param("l").unconstrained()
        if step >= warmup:
            grads.append(leaf.grad.clone())
        leaf.grad = None
    return torch.stack(grads).std(0)


def test_decaying_average_is_per_element_and_beats_the_best_scalar_baseline():
    elbo = ScoreFunction_ELBO(baseline="decaying_avg")
    per_element = gradient_std(elbo, plate_guide)
    average = elbo.baselines.averages["z"].mean
    assert average.shape == (3,)
    assert torch.allclose(average, expected_costs(), atol=0.35 * expected_costs().abs().max())
    # the best constant one scalar can be: the mean expected cost over the plate
    best_scalar = {"baseline": {"baseline_value": expected_costs().mean()}}
    scalar = gradient_std(ScoreFunction_ELBO(), lambda: plate_guide(best_scalar))
    none = gradient_std(ScoreFunction_ELBO(), plate_guide)
    assert (per_element < 0.5 * scalar).all(), (per_element, scalar)
    assert (per_element < 0.5 * none).all(), (per_element, none)


def diag_embed_leave_one_out(log_w):
    """The K×K formula VIMCO used before: w_k replaced by the mean of the others."""
    K = log_w.shape[-1]
    others = (log_w.sum(-1, keepdim=True) - log_w) / (K - 1)
    loo = log_w.unsqueeze(-2) + torch.diag_embed(others - log_w)
    return loo.logsumexp(-1) - math.log(K)


@pytest.mark.parametrize("K", [2, 3, 5, 16])
def test_vimco_leave_one_out_equals_the_quadratic_formula(K):
    torch.manual_seed(K)
    log_w = torch.randn(4, 7, K, **F64) * 3
    log_w[0, 0] = torch.linspace(-800.0, 0.0, K, **F64)  # one dominant weight, tiny others
    log_w[0, 1] = 5.0  # ties
    torch.testing.assert_close(
        leave_one_out_bounds(log_w), diag_embed_leave_one_out(log_w), rtol=1e-10, atol=1e-10
    )


def test_vimco_leave_one_out_is_linear_in_memory():
    log_w = torch.randn(50_000, **F64)
    bounds = leave_one_out_bounds(log_w)  # the K×K tensor would take 20 GB
    assert bounds.shape == (50_000,) and torch.isfinite(bounds).all()
