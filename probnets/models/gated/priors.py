"""
Priors over gate inclusion, and cost penalties on the expected wiring.

A prior supplies the inclusion probability ``p`` of every gate, ``z_k ~ Bernoulli(p)``. It is
either a fixed number (:class:`BernoulliPrior`) or itself a latent variable
(:class:`BetaBernoulliPrior`), sampled in the model at site ``"gate_p"`` with a guide of its
own. Priors are ``PyroModule`` s so their variational parameters reach the optimizer like any
other module parameter.
"""

from typing import Any, Literal

import pyro
import torch
from pyro import distributions as dist
from pyro.nn import PyroModule, PyroParam

from probnets.loading import Loadable

#: What a gate costs in :class:`CostPenalty` and ``gate_costs``: one per edge, or the
#: multiply-accumulates it carries.
CostKind = Literal["edges", "flops"]


def _check_probability(name: str, value: object) -> float:
    if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name}: expected a probability strictly inside (0, 1), got {value!r}")
    return float(value)


class BernoulliPrior(Loadable, PyroModule):
    r"""
    Independent gates, :math:`z_k \sim \mathrm{Bernoulli}(p)` with ``p`` fixed.

    The log prior odds :math:`\log\frac{1-p}{p}` is the price (in nats) the ELBO charges for
    keeping an edge, so ``p`` sets the sparsity pressure. ``p`` is a plain float attribute so
    a schedule may anneal it.

    :param float p: prior inclusion probability, in (0, 1).
    """

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        self.p = _check_probability("p", p)

    def model_config(self) -> dict[str, Any]:
        return {"p": self.p}

    def model(self, like: torch.Tensor) -> torch.Tensor:
        """Return the prior inclusion probability as a tensor like ``like``."""
        return like.new_tensor(_check_probability("p", self.p))

    def guide(self, like: torch.Tensor) -> None:
        """Nothing to infer: ``p`` is fixed."""
        return None

    def mean(self) -> float:
        """``p``."""
        return self.p

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BetaBernoulliPrior(Loadable, PyroModule):
    r"""
    A shared, learned inclusion rate: :math:`p \sim \mathrm{Beta}(a, b)`,
    :math:`z_k \mid p \sim \mathrm{Bernoulli}(p)`.

    The model samples ``p`` at site ``"gate_p"`` before the gates. Its guide is either a
    reparameterized ``Beta`` with learned concentrations (``guide="beta"``, full variational
    Bayes over ``p``) or a point mass at a learned value (``guide="point"``: MAP estimation of
    ``p``, the model's Beta density still acts as a prior on it). Because ``p`` is shared, the
    posterior over ``p`` is informed by all ``E`` gates and the sparsity level is learned
    rather than set: an "automatic relevance" hierarchy over edges.

    :param float a: Beta concentration of inclusion (> 0).
    :param float b: Beta concentration of exclusion (> 0); ``a / (a + b)`` is the prior mean.
    :param str guide: ``"beta"`` or ``"point"``.
    """

    # PyroModule turns the PyroParams assigned in __init__ into tensor attributes
    concentration1: torch.Tensor
    concentration0: torch.Tensor
    p_point: torch.Tensor

    def __init__(
        self, a: float = 1.0, b: float = 9.0, guide: Literal["beta", "point"] = "beta"
    ) -> None:
        super().__init__()
        for name, v in (("a", a), ("b", b)):
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name}: expected a positive concentration, got {v!r}")
        if guide not in ("beta", "point"):
            raise ValueError(f"guide: expected 'beta' or 'point', got {guide!r}")
        self.a, self.b, self.guide_type = float(a), float(b), guide
        mean = self.a / (self.a + self.b)
        if guide == "beta":
            self.concentration1 = PyroParam(  # type: ignore[assignment]
                torch.tensor(self.a), constraint=dist.constraints.positive
            )
            self.concentration0 = PyroParam(  # type: ignore[assignment]
                torch.tensor(self.b), constraint=dist.constraints.positive
            )
        else:
            self.p_point = PyroParam(  # type: ignore[assignment]
                torch.tensor(mean), constraint=dist.constraints.unit_interval
            )

    def model_config(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "guide": self.guide_type}

    def model(self, like: torch.Tensor) -> torch.Tensor:
        """Sample ``p ~ Beta(a, b)`` at site ``"gate_p"``, in ``like``'s dtype and device."""
        prior = dist.Beta(like.new_tensor(self.a), like.new_tensor(self.b))
        return pyro.sample("gate_p", prior)

    def guide(self, like: torch.Tensor) -> torch.Tensor:
        """Sample ``p`` from the guide (a Beta or a point mass) at site ``"gate_p"``."""
        if self.guide_type == "beta":
            q = dist.Beta(self.concentration1.to(like), self.concentration0.to(like))
        else:
            # Keep the point off {0, 1}, where the Beta density and log p are infinite.
            eps = torch.finfo(like.dtype).eps
            q = dist.Delta(self.p_point.to(like).clamp(eps, 1 - eps))
        return pyro.sample("gate_p", q)

    def mean(self) -> float:
        """Posterior mean of ``p`` under the guide (prior mean before training)."""
        with torch.no_grad():
            if self.guide_type == "beta":
                c1, c0 = self.concentration1, self.concentration0
                return float(c1 / (c1 + c0))
            return float(self.p_point)

    def extra_repr(self) -> str:
        return f"a={self.a}, b={self.b}, guide={self.guide_type!r}"


class CostPenalty:
    r"""
    An expected-cost term added to the model as ``pyro.factor``:
    :math:`-\lambda \sum_k c_k\, a_k` where :math:`a_k` is gate ``k``'s activity (the sampled
    Bernoulli gate, whose expectation under the guide is the inclusion probability, or the
    closed-form :math:`P(z_k \neq 0)` of a hard-concrete gate) and :math:`c_k` its cost.

    Inside the ELBO this is :math:`-\lambda\,\mathbb{E}_q[\text{cost}]`, i.e. a tilted prior
    :math:`p(z) \propto p_0(z) e^{-\lambda c^\top z}`.

    :param float weight: :math:`\lambda \ge 0`, nats per unit of cost (a float attribute, so a
        schedule may anneal it).
    :param str cost: ``"edges"`` (every gate costs 1: the number of active connections) or
        ``"flops"`` (the model's own per-gate multiply-accumulate estimate, see the model's
        ``gate_costs("flops")``).
    """

    def __init__(self, weight: float, cost: CostKind = "edges") -> None:
        if not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"weight: expected a non-negative number, got {weight!r}")
        if cost not in ("edges", "flops"):
            raise ValueError(f"cost: expected 'edges' or 'flops', got {cost!r}")
        self.weight = float(weight)
        self.cost = cost

    def model_config(self) -> dict[str, Any]:
        return {"weight": self.weight, "cost": self.cost}

    def __call__(self, activity: torch.Tensor, costs: torch.Tensor) -> None:
        """Add the factor ``-weight * sum_k costs_k * activity_k`` to the model."""
        pyro.factor(f"gates.cost_{self.cost}", -self.weight * (activity * costs).sum(-1))

    def __repr__(self) -> str:
        return f"CostPenalty(weight={self.weight}, cost={self.cost!r})"


def bernoulli_cross_entropy(pi: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_k \pi_k \log p + (1 - \pi_k) \log(1 - p)`, the expected log prior of
    independent indicators with inclusion probabilities :math:`\pi_k` under Bernoulli(p)."""
    p = p.unsqueeze(-1)
    return (pi * torch.log(p) + (1 - pi) * torch.log1p(-p)).sum(-1)


__all__ = ["BernoulliPrior", "BetaBernoulliPrior", "CostPenalty", "bernoulli_cross_entropy"]
