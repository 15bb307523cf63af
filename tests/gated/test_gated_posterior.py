import pyro
import pytest
import torch

from probnets.infer import DisARM_ELBO
from probnets.models.gated import BernoulliPrior, NeuronDAG
from probnets.models.gated.enumeration import (
    all_gate_configurations,
    best_factorized_guide,
    exact_marginals,
    factorized_elbo,
    log_joint_table,
)


def test_enumeration_of_an_independent_posterior():
    # log p(y, z) = a . z: the posterior factorizes, so the exact marginals are sigmoid(a)
    # and the best factorized guide is the posterior itself (ELBO = log evidence).
    a = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    z = all_gate_configurations(3, a).squeeze(-2)
    log_joint = z @ a
    assert torch.allclose(exact_marginals(log_joint, 3), torch.sigmoid(a))
    probs, elbo = best_factorized_guide(log_joint, 3)
    assert torch.allclose(probs, torch.sigmoid(a), atol=1e-6)
    assert elbo == pytest.approx(float(torch.logsumexp(log_joint, 0)), abs=1e-6)


def _known_weights_problem():
    pyro.set_rng_seed(0)
    m = NeuronDAG(3, 1, 2, noise_scale=0.5, prior=BernoulliPrior(0.3), init_logit=0.0)
    assert m.num_gates == 11
    with torch.no_grad():
        m.weight.copy_(torch.tensor([1.0, -1.0, 0.8, 1.0, 0.7, -0.6, 1.2, 0.9, -1.1, 0.5, -0.8]))
    truth = torch.tensor([1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1.0])
    x = torch.randn(12, 3)
    with torch.no_grad():
        y = m(x, truth) + 0.5 * torch.randn(12, 2)
    return m, x, y


@pytest.mark.slow
def test_guide_inclusion_probabilities_match_the_enumerated_optimum():
    m, x, y = _known_weights_problem()
    log_joint = log_joint_table(m, x, y)
    exact = exact_marginals(log_joint, m.num_gates)
    best, best_elbo = best_factorized_guide(log_joint, m.num_gates)
    assert torch.all((exact > 0.9) == (best > 0.9))  # the references agree on the clear edges

    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    frozen = {"*weight": {"lr": 0.0}, "*bias": {"lr": 0.0}}
    m.fit(
        x,
        y,
        1000,
        estimator=DisARM_ELBO(num_particles=4, vectorize_particles=True),
        gate_lr=0.05,
        param_groups=frozen,
    )
    q = m.gate_probs()
    assert (q - best).abs().max() < 0.1
    assert factorized_elbo(log_joint, q) > best_elbo - 1.0
    # Weights were held at their known values.
    assert torch.equal(
        m.weight.detach(),
        torch.tensor([1.0, -1.0, 0.8, 1.0, 0.7, -0.6, 1.2, 0.9, -1.1, 0.5, -0.8]),
    )


def test_enumeration_rejects_what_it_cannot_enumerate():
    m = NeuronDAG(2, 1, 1, gate="hard_concrete")
    with pytest.raises(ValueError, match="model.gate: expected 'bernoulli'"):
        log_joint_table(m, torch.randn(3, 2), torch.randn(3, 1))
    with pytest.raises(ValueError, match="num_gates: expected at most 20"):
        all_gate_configurations(21, torch.zeros(()))


def test_best_factorized_guide_needs_a_restart_and_always_returns_a_guide():
    log_joint = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="num_restarts: expected an int >= 1, got 0"):
        best_factorized_guide(log_joint, 2, num_restarts=0)
    # no sweeps leave every configuration some mass, so an impossible one makes every
    # restart's ELBO -inf: the first restart's probabilities come back, not None
    log_joint = torch.tensor([0.0, -float("inf"), 0.0, 0.0], dtype=torch.float64)
    probs, elbo = best_factorized_guide(log_joint, 2, num_restarts=2, num_sweeps=0)
    assert isinstance(probs, torch.Tensor) and probs.shape == (2,)
    assert ((probs > 0) & (probs < 1)).all()
    assert elbo == -float("inf")
