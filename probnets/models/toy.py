"""The one-Bernoulli toy problem of the REBAR and RELAX papers, as a Pyro model and guide."""

import math
from typing import Any

import torch

import pyro
import pyro.distributions as dist
from pyro.nn import PyroModule, PyroParam, pyro_method

from probnets.loading import Loadable

__all__ = ["ToyBernoulli"]


class ToyBernoulli(Loadable, PyroModule):
    r"""Minimize :math:`L(\theta) = E_{b \sim \mathrm{Bern}(\sigma(\theta))}[(b - t)^2]`.

    This is the toy of Tucker et al. (2017, REBAR, Sec. 6.1; ``t = 0.45``) and Grathwohl
    et al. (2018, RELAX, Sec. 6.1; ``t = 0.499``): the two outcomes differ so little that the
    gradient is tiny next to the noise of a score-function estimator. ``theta`` is a logit
    (the "d/dlogit" parameterization of the papers' variance figures), so

    .. math::

        L(\theta) = \sigma(1 - t)^2 + (1 - \sigma) t^2,\qquad
        \frac{dL}{d\theta} = \sigma (1 - \sigma) (1 - 2t),\qquad \sigma = \sigma(\theta).

    **As an ELBO.** Every estimator in :mod:`probnets.infer` maximizes
    :math:`E_q[\log p(b) + \log \text{factors} - \log q(b)]`. To make it minimize
    :math:`E_q f(b)` with no entropy term, the model's prior on ``b`` is a *detached* copy
    of the guide, ``Bernoulli(logits=theta.detach())``, and the model adds the factor
    :math:`-(b - t)^2`. Then :math:`\log p(b) - \log q(b) = 0` in value for every ``b``, so
    the ELBO is exactly :math:`-L(\theta)`, and its gradient is exactly
    :math:`-dL/d\theta` (the extra :math:`-E_q \nabla \log q(b)` is zero). Per sample, an
    estimator that drops the zero-mean :math:`\nabla \log q(b)` of a non-reparameterized
    guide site -- as Pyro's ``Trace_ELBO`` and ``TraceGraph_ELBO`` do -- sees exactly the
    REINFORCE estimate :math:`f(b)\,(b - \sigma)` of the papers (variance 0.0159 at
    ``t = 0.45``, ``theta = 0``). A prior *sharing* ``theta`` would have the same value but
    add the noisy :math:`\nabla \log p(b)` to those estimators (variance 0.140 instead).

    :param float target: ``t``; must lie in (0, 1).
    :param float theta: the initial logit (``0`` is ``sigma = 0.5``, where the papers
        measure variance).

    Use ``.double()`` for float64; everything follows ``theta``'s dtype and device.
    """

    # PyroModule turns the PyroParam assigned in __init__ into a tensor attribute
    theta: torch.Tensor

    def __init__(self, target: float = 0.45, theta: float = 0.0) -> None:
        super().__init__()
        if not isinstance(target, (int, float)) or not 0.0 < target < 1.0:
            raise ValueError(f"target must be a float in (0, 1), got {target!r}")
        if not isinstance(theta, (int, float)) or not math.isfinite(theta):
            raise ValueError(f"theta must be a finite float (a logit), got {theta!r}")
        self.target = float(target)
        self.theta = PyroParam(torch.tensor(float(theta)))  # type: ignore[assignment]

    def model_config(self) -> dict[str, Any]:
        return {"target": self.target, "theta": float(self.theta_unconstrained.detach())}

    @pyro_method
    def model(self) -> torch.Tensor:
        b = pyro.sample("b", dist.Bernoulli(logits=self.theta.detach()))
        pyro.factor("f", -((b - self.target) ** 2))
        return b

    @pyro_method
    def guide(self) -> torch.Tensor:
        return pyro.sample("b", dist.Bernoulli(logits=self.theta))

    def expected_loss(self) -> float:
        """:math:`L(\\theta)`, exactly (a float)."""
        p = float(torch.sigmoid(self.theta_unconstrained.detach()))
        t = self.target
        return p * (1 - t) ** 2 + (1 - p) * t**2

    def exact_gradient(self) -> dict[str, torch.Tensor]:
        """``{"theta": dL/dtheta}``: the exact gradient of the loss -ELBO = L(theta)."""
        theta = self.theta_unconstrained.detach()
        p = torch.sigmoid(theta)
        return {"theta": p * (1 - p) * (1 - 2 * self.target)}

    def exact_variance(self, baseline: float = 0.0) -> float:
        """Variance of the single-sample REINFORCE estimate
        :math:`(f(b) - c)\\,(b - \\sigma)` of :math:`dL/d\\theta` with constant baseline
        ``c``, in closed form (the reference for the harness). ``c = (1 - \\sigma) f(1) +
        \\sigma f(0)`` gives zero variance."""
        p = float(torch.sigmoid(self.theta_unconstrained.detach()))
        t = self.target
        g1 = ((1 - t) ** 2 - baseline) * (1 - p)
        g0 = (t**2 - baseline) * (0 - p)
        mean = p * g1 + (1 - p) * g0
        return p * g1**2 + (1 - p) * g0**2 - mean**2
