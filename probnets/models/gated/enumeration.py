r"""
Exact gate posteriors by enumeration, for checking variational inclusion probabilities.

With the weights, the noise scale and the prior inclusion probability held fixed, the gate
posterior of a :class:`~probnets.models.gated.base.GatedNetwork` with ``E`` Bernoulli gates is

.. math::

    p(z \mid y) \propto \prod_k p^{z_k}(1-p)^{1-z_k}\ \prod_n p(y_n \mid x_n, w, z),

a table of :math:`2^E` numbers: enumerable for ``E`` up to about 16. Two references come out
of it: the exact marginals :math:`p(z_k = 1 \mid y)`, and the best *factorized* guide
:math:`\prod_k \mathrm{Bernoulli}(\pi_k)` (the guide family of the model), found by
coordinate ascent on the exact ELBO. An SVI-trained guide can only be expected to reach the
second; the distance between the two references is the price of the mean-field family.
"""

import itertools

import torch
from pyro import distributions as dist

from probnets.models.gated.base import GatedNetwork
from probnets.models.gated.inputs import check_count
from probnets.models.gated.priors import BernoulliPrior


def all_gate_configurations(num_gates: int, like: torch.Tensor) -> torch.Tensor:
    """``(2**E, 1, E)`` tensor of every 0/1 gate vector (the ``1`` is the data-plate dim)."""
    if num_gates > 20:
        raise ValueError(f"num_gates: expected at most 20 gates to enumerate, got {num_gates}")
    table = torch.tensor(list(itertools.product((0.0, 1.0), repeat=num_gates)))
    return table.to(like).unsqueeze(-2)


def log_joint_table(model: GatedNetwork, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""
    :math:`\log p(y, z)` for every gate configuration ``z``, shape ``(2**E,)``, with the
    model's current weights, fixed noise scale and fixed ``BernoulliPrior``.
    """
    if model.gate != "bernoulli":
        raise ValueError(f"model.gate: expected 'bernoulli' to enumerate, got {model.gate!r}")
    if not isinstance(model.prior, BernoulliPrior):
        raise ValueError("model.prior: expected a fixed BernoulliPrior to enumerate")
    like = model.gate_logits
    configs = all_gate_configurations(model.num_gates, like)
    with torch.no_grad():
        out = model(x, configs)  # (2**E, N, O)
        if model.likelihood == "normal":
            scale = model._obs_scale(out)
            log_lik = dist.Normal(out, scale).log_prob(y).sum((-1, -2))
        else:
            log_lik = dist.Categorical(logits=out).log_prob(y).sum(-1)
        p = like.new_tensor(model.prior.p)
        z = configs.squeeze(-2)
        log_prior = (z * torch.log(p) + (1 - z) * torch.log1p(-p)).sum(-1)
    return log_lik + log_prior


def exact_marginals(log_joint: torch.Tensor, num_gates: int) -> torch.Tensor:
    """Exact posterior inclusion probabilities ``(E,)`` from a log-joint table."""
    z = all_gate_configurations(num_gates, log_joint).squeeze(-2)
    return (torch.softmax(log_joint, 0).unsqueeze(-1) * z).sum(0)


def factorized_elbo(log_joint: torch.Tensor, probs: torch.Tensor) -> float:
    r"""Exact ELBO :math:`\mathbb{E}_q[\log p(y, z) - \log q(z)]` of the factorized guide."""
    log_joint = log_joint.double()
    probs = probs.double()
    z = all_gate_configurations(probs.numel(), log_joint).squeeze(-2)
    q = (z * probs + (1 - z) * (1 - probs)).prod(-1)
    # Configurations with q = 0 contribute nothing (0 log 0 = 0).
    terms = torch.where(q > 0, q * (log_joint - torch.log(q.clamp(min=1e-300))), q.new_zeros(()))
    return float(terms.sum())


def best_factorized_guide(
    log_joint: torch.Tensor,
    num_gates: int,
    num_restarts: int = 8,
    num_sweeps: int = 200,
    seed: int = 0,
) -> tuple[torch.Tensor, float]:
    r"""
    Coordinate ascent (CAVI) on the exact ELBO over factorized Bernoulli guides:
    :math:`\mathrm{logit}\,\pi_k \leftarrow \mathbb{E}_{q_{-k}}[\log p(y, z_k{=}1, z_{-k})
    - \log p(y, z_k{=}0, z_{-k})]`, from several random starts; returns the ``(E,)``
    probabilities with the highest ELBO and that ELBO.
    """
    check_count("num_restarts", num_restarts, 1)
    log_joint = log_joint.double()
    z = all_gate_configurations(num_gates, log_joint).squeeze(-2)
    gen = torch.Generator().manual_seed(seed)
    best: torch.Tensor | None = None
    best_elbo = -float("inf")
    for _ in range(num_restarts):
        probs = torch.rand(num_gates, generator=gen).to(log_joint)
        for _ in range(num_sweeps):
            previous = probs.clone()
            for k in range(num_gates):
                others = torch.cat([z[:, :k], z[:, k + 1 :]], -1)
                rest = torch.cat([probs[:k], probs[k + 1 :]])
                w = (others * rest + (1 - others) * (1 - rest)).prod(-1)
                on, off = z[:, k] == 1, z[:, k] == 0
                logit = (w[on] * log_joint[on]).sum() - (w[off] * log_joint[off]).sum()
                probs[k] = torch.sigmoid(logit)
            if torch.allclose(probs, previous, atol=1e-9):
                break
        elbo = factorized_elbo(log_joint, probs)
        # the first restart is kept even if its ELBO is -inf or nan
        if best is None or elbo > best_elbo:
            best, best_elbo = probs, elbo
    assert best is not None  # num_restarts >= 1 was checked
    return best, best_elbo
