"""The exact-gradient oracle against hand-derived ELBOs and gradients."""

import math

import pytest
import torch

import pyro
import pyro.distributions as dist
from probnets.infer.exact import exact_elbo, exact_gradient
from probnets.models.toy import ToyBernoulli


@pytest.mark.parametrize("theta", [-1.3, 0.0, 2.0])
@pytest.mark.parametrize("target", [0.45, 0.499])
def test_toy_gradient_matches_closed_form(theta, target):
    toy = ToyBernoulli(target=target, theta=theta).double()
    grad = exact_gradient(toy.model, toy.guide)
    # theta was stored in float32 before .double(): use the stored value.
    p = 1 / (1 + math.exp(-toy.theta_unconstrained.item()))
    assert set(grad) == {"theta"}
    assert grad["theta"].dtype == torch.float64
    assert grad["theta"].item() == pytest.approx(p * (1 - p) * (1 - 2 * target), rel=1e-10)
    loss = p * (1 - target) ** 2 + (1 - p) * target**2
    assert exact_elbo(toy.model, toy.guide) == pytest.approx(-loss, rel=1e-10)


def _chain_model(y):
    a = pyro.sample("a", dist.Bernoulli(torch.tensor(0.3, dtype=y.dtype)))
    b = pyro.sample("b", dist.Bernoulli(0.2 + 0.4 * a))
    c = pyro.sample("c", dist.Categorical(probs=y.new_tensor([0.5, 0.3, 0.2])))
    pyro.sample("y", dist.Normal(a + b + c, 1.0), obs=y)


def _chain_guide(y):
    alpha = pyro.param("alpha", y.new_tensor(0.4))
    beta = pyro.param("beta", y.new_tensor([-0.7, 1.1]))
    gamma = pyro.param("gamma", y.new_tensor([0.2, -0.3, 0.5]))
    a = pyro.sample("a", dist.Bernoulli(logits=alpha))
    pyro.sample("b", dist.Bernoulli(logits=beta[a.long()]))
    pyro.sample("c", dist.Categorical(logits=gamma))


def test_dependent_sites_match_hand_written_sum():
    y = torch.tensor(1.7, dtype=torch.float64)
    grad = exact_gradient(_chain_model, _chain_guide, y)
    alpha = pyro.param("alpha").detach().requires_grad_()
    beta = pyro.param("beta").detach().requires_grad_()
    gamma = pyro.param("gamma").detach().requires_grad_()
    # ELBO = sum_{a,b,c} q(a) q(b|a) q(c) [log p(a) p(b|a) p(c) N(y; a+b+c, 1) - log q]
    qa1 = torch.sigmoid(alpha)
    qb1 = torch.sigmoid(beta)
    qc = torch.softmax(gamma, -1)
    pc = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    elbo = 0.0
    for a in (0, 1):
        qa = qa1 if a else 1 - qa1
        pa = 0.3 if a else 0.7
        for b in (0, 1):
            qb = qb1[a] if b else 1 - qb1[a]
            pb1 = 0.2 + 0.4 * a
            pb = pb1 if b else 1 - pb1
            for c in range(3):
                log_lik = -0.5 * (y - a - b - c) ** 2 - 0.5 * math.log(2 * math.pi)
                log_p = math.log(pa) + math.log(pb) + math.log(pc[c]) + log_lik
                log_q = torch.log(qa) + torch.log(qb) + torch.log(qc[c])
                elbo = elbo + qa * qb * qc[c] * (log_p - log_q)
    expected = torch.autograd.grad(-elbo, [alpha, beta, gamma])
    assert exact_elbo(_chain_model, _chain_guide, y) == pytest.approx(elbo.item(), rel=1e-10)
    for name, want in zip(["alpha", "beta", "gamma"], expected):
        assert torch.allclose(grad[name], want, rtol=1e-9, atol=1e-12), name


def test_one_hot_categorical_analytic_gradient():
    # -ELBO = KL(q || p) for a single one-hot site; d KL / d logits_k = q_k (r_k - E_q r),
    # with r = log q - log p.
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)

    def model():
        pyro.sample("z", dist.OneHotCategorical(probs=p))

    def guide():
        logits = pyro.param("logits", torch.tensor([0.3, -0.2, 0.0, 1.0], dtype=torch.float64))
        pyro.sample("z", dist.OneHotCategorical(logits=logits))

    grad = exact_gradient(model, guide)["logits"]
    q = torch.softmax(pyro.param("logits").detach(), -1)
    r = q.log() - p.log()
    assert torch.allclose(grad, q * (r - (q * r).sum()), rtol=1e-10)


def test_plate_elements_are_enumerated_jointly_and_subsample_is_scaled():
    probs = torch.tensor([0.2, 0.5, 0.7, 0.9], dtype=torch.float64)

    def model():
        with pyro.plate("data", 4, subsample_size=2) as idx:
            pyro.sample("z", dist.Bernoulli(probs[idx]))

    def guide():
        logit = pyro.param("logit", torch.tensor(0.3, dtype=torch.float64))
        with pyro.plate("data", 4, subsample_size=2) as idx:
            pyro.sample("z", dist.Bernoulli(logits=logit.expand(idx.shape)))

    # Whatever subsample is drawn, the value is (4/2) * sum over it of -KL(q || p_i); with
    # probs[0] == probs[1] impossible to tell apart, check the range instead.
    q = torch.sigmoid(torch.tensor(0.3, dtype=torch.float64))
    kl = q * (q / probs).log() + (1 - q) * ((1 - q) / (1 - probs)).log()
    pairs = {2 * -(kl[i] + kl[j]).item() for i in range(4) for j in range(i + 1, 4)}
    value = exact_elbo(model, guide)
    assert min(abs(value - v) for v in pairs) < 1e-10


def test_too_many_configurations_is_a_clear_error():
    def guide():
        with pyro.plate("data", 20):
            pyro.sample("z", dist.Bernoulli(pyro.param("p", torch.tensor(0.5))))

    with pytest.raises(ValueError, match=r"'z': 2\^20.*max_configurations=4096"):
        exact_gradient(guide, guide)


def test_continuous_guide_site_is_rejected():
    def guide():
        pyro.sample("z", dist.Normal(pyro.param("loc", torch.tensor(0.0)), 1.0))

    with pytest.raises(ValueError, match="site 'z' has distribution Normal"):
        exact_gradient(guide, guide)


def test_model_latent_missing_from_guide_is_rejected():
    def model():
        pyro.sample("z", dist.Bernoulli(0.5))
        pyro.sample("w", dist.Bernoulli(0.5))

    def guide():
        pyro.sample("z", dist.Bernoulli(logits=pyro.param("t", torch.tensor(0.0))))

    with pytest.raises(ValueError, match="model site 'w' is not"):
        exact_gradient(model, guide)


def test_unknown_param_is_rejected():
    toy = ToyBernoulli()
    with pytest.raises(ValueError, match=r"params \['nope'\] are not read"):
        exact_gradient(toy.model, toy.guide, params=["nope"])
