import math
from collections.abc import Sequence
from numbers import Number

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints


class HardConcrete(TorchDistribution):
    r"""
    The hard-concrete gate of Louizos, Welling and Kingma (2018), "Learning Sparse Neural
    Networks through L0 Regularization" (arXiv 1712.01312), section 4.

    A binary-concrete variable is stretched to the interval ``limits = (l, r)`` with
    ``l < 0 < 1 < r`` and clipped to :math:`[0, 1]`:

    .. math::

        u \sim U(0, 1),\quad
        s = \sigma\big((\log u - \log(1-u) + \log\alpha) / \beta\big),\quad
        z = \min(1, \max(0, s (r - l) + l)).

    ``rsample`` is reparameterized (gradients reach ``log_alpha`` wherever :math:`z` is
    strictly inside :math:`(0, 1)`). The clipping puts point masses on both ends, in closed
    form (the paper's eq. 12 is :meth:`prob_nonzero`, the expected L0 norm of the gate):

    .. math::

        P(z \neq 0) = \sigma\big(\log\alpha - \beta \log(-l / r)\big),\qquad
        P(z = 1) = \sigma\big(\log\alpha - \beta \log((1 - l) / (r - 1))\big).

    **What** ``log_prob`` **means.** The distribution is a mixture of two atoms and a density,
    so ``log_prob`` is taken with respect to the base measure
    :math:`\delta_0 + \lambda_{(0,1)} + \delta_1` (Lebesgue measure inside the interval): at
    ``0`` and ``1`` it returns the log point masses above, inside it returns the log density

    .. math::

        \log q(z) = \log \beta + \log\sigma(t) + \log\sigma(-t) - \log(s(1-s)) - \log(r - l),
        \quad s = \frac{z - l}{r - l},\ t = \beta\,\mathrm{logit}(s) - \log\alpha.

    Two hard-concrete distributions with the same ``limits`` share this base measure, so
    ``p.log_prob(z) - q.log_prob(z)`` with ``z ~ q`` is an unbiased single-sample estimate of
    :math:`\mathrm{KL}(q \| p)`. Against a density with no atoms (e.g. a Beta prior) the ratio
    is meaningless; compare against atoms only.

    :param torch.Tensor log_alpha: location :math:`\log\alpha` (any shape; the batch shape).
    :param float beta: temperature :math:`\beta > 0` (2/3 in the paper).
    :param tuple limits: stretch interval ``(l, r)`` with ``l < 0`` and ``r > 1``.
    """

    arg_constraints = {"log_alpha": constraints.real}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(
        self,
        log_alpha: torch.Tensor | float,
        beta: float = 2.0 / 3.0,
        limits: tuple[float, float] = (-0.1, 1.1),
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(log_alpha, torch.Tensor):
            if not isinstance(log_alpha, Number):
                raise TypeError(
                    f"log_alpha: expected a tensor or a number, got {type(log_alpha).__name__}"
                )
            log_alpha = torch.tensor(float(log_alpha))
        if not isinstance(beta, Number) or not beta > 0:
            raise ValueError(f"beta: expected a positive number, got {beta!r}")
        if len(tuple(limits)) != 2:
            raise ValueError(f"limits: expected a pair (l, r), got {limits!r}")
        low, high = (float(v) for v in limits)
        if not (low < 0.0 and high > 1.0):
            raise ValueError(f"limits: expected l < 0 and r > 1, got {(low, high)!r}")
        self.log_alpha = log_alpha
        self.beta = float(beta)
        self.limits = (low, high)
        super().__init__(log_alpha.shape, validate_args=validate_args)

    def expand(
        self, batch_shape: Sequence[int], _instance: "HardConcrete | None" = None
    ) -> "HardConcrete":
        new = self._get_checked_instance(HardConcrete, _instance)
        batch_shape = torch.Size(batch_shape)
        new.log_alpha = self.log_alpha.expand(batch_shape)
        new.beta = self.beta
        new.limits = self.limits
        super(HardConcrete, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(
        self, sample_shape: torch.Size | list[int] | tuple[int, ...] = torch.Size()
    ) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        la = self.log_alpha
        # Keep u away from {0, 1} so the logistic noise stays finite in any dtype.
        tiny = torch.finfo(la.dtype).tiny
        u = torch.rand(shape, dtype=la.dtype, device=la.device).clamp(tiny, 1.0 - 1e-7)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + la) / self.beta)
        low, high = self.limits
        return (s * (high - low) + low).clamp(0.0, 1.0)

    def _logit_nonzero(self) -> torch.Tensor:
        low, high = self.limits
        return self.log_alpha - self.beta * math.log(-low / high)

    def _logit_one(self) -> torch.Tensor:
        low, high = self.limits
        return self.log_alpha - self.beta * math.log((1.0 - low) / (high - 1.0))

    def prob_nonzero(self) -> torch.Tensor:
        """:math:`P(z \\neq 0)`, the expected L0 norm of each gate (Louizos et al., eq. 12)."""
        return torch.sigmoid(self._logit_nonzero())

    def prob_zero(self) -> torch.Tensor:
        return torch.sigmoid(-self._logit_nonzero())

    def prob_one(self) -> torch.Tensor:
        return torch.sigmoid(self._logit_one())

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        low, high = self.limits
        s = ((value - low) / (high - low)).clamp(-low / (high - low), (1.0 - low) / (high - low))
        t = self.beta * (torch.log(s) - torch.log1p(-s)) - self.log_alpha
        log_density = (
            math.log(self.beta)
            + F.logsigmoid(t)
            + F.logsigmoid(-t)
            - torch.log(s)
            - torch.log1p(-s)
            - math.log(high - low)
        )
        log_p0 = F.logsigmoid(-self._logit_nonzero())
        log_p1 = F.logsigmoid(self._logit_one())
        return torch.where(value <= 0, log_p0, torch.where(value >= 1, log_p1, log_density))
