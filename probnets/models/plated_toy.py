"""A plate of independent one-Bernoulli toys whose costs differ in size, as a Pyro model and
guide: the problem on which a score-function baseline per plate element and one per site
part ways."""

from collections.abc import Sequence

import torch

import pyro
import pyro.distributions as dist
from pyro.nn import PyroModule, PyroParam, pyro_method

__all__ = ["PlatedBernoulli"]


class PlatedBernoulli(PyroModule):
    r"""Minimize :math:`L(\theta) = \sum_i s_i\,E_{b_i \sim \mathrm{Bern}(\sigma(\theta_i))}
    [(b_i - t)^2]` over a plate of ``len(scales)`` independent elements.

    Each element is the one-Bernoulli toy of :class:`~probnets.models.toy.ToyBernoulli`
    (the same detached-prior construction makes the ELBO exactly :math:`-L(\theta)`), its
    cost multiplied by its own scale :math:`s_i`, so

    .. math::

        \frac{\partial L}{\partial \theta_i} = s_i\,\sigma_i (1 - \sigma_i)(1 - 2t),\qquad
        \sigma_i = \sigma(\theta_i).

    The score-function estimate for element :math:`i` is
    :math:`(f_i(b_i) - c_i)(b_i - \sigma_i)` with :math:`f_i(b) = s_i (b - t)^2`. A baseline
    per element (Pyro's ``use_decaying_avg_baseline``, probnets' ``"decaying_avg"``) learns
    :math:`c_i \approx E f_i`; one average for the whole site (``"decaying_avg_site"``) learns
    the mean over the plate, which is far from every :math:`E f_i` when the scales differ, so
    its variance stays near that of no baseline on the elements of small or large scale.

    :param scales: the positive per-element cost scales :math:`s_i`.
    :param float target: ``t``; must lie in (0, 1).
    :param float theta: the initial logit of every element.

    Use ``.double()`` for float64; everything follows ``theta``'s dtype and device.
    """

    # PyroModule turns the PyroParam assigned in __init__ into a tensor attribute
    theta: torch.Tensor

    def __init__(
        self,
        scales: Sequence[float] | torch.Tensor = (1.0, 10.0, 100.0),
        target: float = 0.45,
        theta: float = 0.0,
    ) -> None:
        super().__init__()
        scales = torch.as_tensor(scales, dtype=torch.get_default_dtype())
        if (
            scales.dim() != 1
            or scales.numel() == 0
            or not (scales > 0).all()
            or not torch.isfinite(scales).all()
        ):
            raise ValueError(
                f"scales must be a non-empty sequence of positive finite numbers, "
                f"got {scales.tolist()}"
            )
        if not isinstance(target, (int, float)) or not 0.0 < target < 1.0:
            raise ValueError(f"target must be a float in (0, 1), got {target!r}")
        if not isinstance(theta, (int, float)):
            raise TypeError(f"theta must be a number, got {type(theta).__name__}")
        self.target = float(target)
        self.register_buffer("scales", scales)
        self.theta = PyroParam(torch.full_like(scales, float(theta)))  # type: ignore[assignment]

    @pyro_method
    def model(self) -> None:
        logits = self.theta.detach()
        with pyro.plate("elements", len(self.scales)):
            b = pyro.sample("b", dist.Bernoulli(logits=logits))
            pyro.factor("cost", -self.scales * (b - self.target) ** 2)

    @pyro_method
    def guide(self) -> None:
        with pyro.plate("elements", len(self.scales)):
            pyro.sample("b", dist.Bernoulli(logits=self.theta))

    def expected_loss(self) -> float:
        """:math:`L(\\theta)`, exactly."""
        p = torch.sigmoid(self.theta.detach())
        t = self.target
        return float((self.scales * (p * (1 - t) ** 2 + (1 - p) * t**2)).sum())

    def exact_gradient(self) -> dict[str, torch.Tensor]:
        """``{"theta": dL/dtheta}`` per element, exactly."""
        p = torch.sigmoid(self.theta.detach())
        return {"theta": self.scales * p * (1 - p) * (1 - 2 * self.target)}
