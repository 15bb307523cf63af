import math

import pyro
import pytest
import torch

from probnets.distributions import HardConcrete


@pytest.mark.parametrize("log_alpha", [-2.0, 0.0, 1.5])
def test_point_masses_match_monte_carlo(log_alpha):
    pyro.set_rng_seed(0)
    d = HardConcrete(torch.tensor(log_alpha, dtype=torch.float64))
    z = d.sample((200_000,))
    # Binomial standard error at n = 2e5 is at most 1.2e-3; 5 sigma.
    assert abs((z == 0).double().mean() - d.prob_zero()) < 6e-3
    assert abs((z == 1).double().mean() - d.prob_one()) < 6e-3
    assert abs((z != 0).double().mean() - d.prob_nonzero()) < 6e-3


def test_closed_forms_at_paper_constants():
    # log_alpha = beta * log(-l / r) puts P(z != 0) at exactly 1/2.
    la = (2.0 / 3.0) * math.log(0.1 / 1.1)
    d = HardConcrete(torch.tensor(la))
    assert d.prob_nonzero().item() == pytest.approx(0.5, abs=1e-6)
    assert (d.prob_zero() + d.prob_nonzero()).item() == pytest.approx(1.0, abs=1e-6)


def test_log_prob_is_a_density_on_the_mixed_base_measure():
    d = HardConcrete(torch.tensor(0.7, dtype=torch.float64))
    grid = torch.linspace(0, 1, 200_001, dtype=torch.float64)[1:-1]
    interior = torch.trapezoid(d.log_prob(grid).exp(), grid)
    total = interior + d.log_prob(torch.tensor(0.0, dtype=torch.float64)).exp()
    total = total + d.log_prob(torch.tensor(1.0, dtype=torch.float64)).exp()
    assert total.item() == pytest.approx(1.0, abs=1e-4)
    # Interior mass also matches the sampler's.
    pyro.set_rng_seed(1)
    z = d.sample((100_000,))
    inside = ((z > 0.2) & (z < 0.6)).double().mean()
    g = torch.linspace(0.2, 0.6, 20_001, dtype=torch.float64)
    assert abs(inside - torch.trapezoid(d.log_prob(g).exp(), g)) < 8e-3


def test_rsample_is_reparameterized_and_float64():
    la = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    d = HardConcrete(la)
    z = d.rsample((64,))
    assert z.dtype == torch.float64 and z.shape == (64, 5)
    assert ((z >= 0) & (z <= 1)).all()
    z.sum().backward()
    assert la.grad is not None and (la.grad > 0).all()
    assert d.log_prob(z).dtype == torch.float64
    assert d.prob_nonzero().dtype == torch.float64


def test_expand_and_batch_shapes():
    d = HardConcrete(torch.zeros(3), beta=0.5, limits=(-0.2, 1.2))
    e = d.expand((4, 3))
    assert e.batch_shape == (4, 3) and e.beta == 0.5 and e.limits == (-0.2, 1.2)
    assert e.rsample((2,)).shape == (2, 4, 3)
    assert e.log_prob(torch.full((4, 3), 0.5)).shape == (4, 3)
    assert d.to_event(1).log_prob(torch.zeros(3)).shape == ()


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="beta: expected a positive number"):
        HardConcrete(torch.zeros(2), beta=0.0)
    with pytest.raises(ValueError, match="limits: expected l < 0 and r > 1"):
        HardConcrete(torch.zeros(2), limits=(0.1, 1.1))
    with pytest.raises(TypeError, match="log_alpha: expected a tensor"):
        HardConcrete("zero")
