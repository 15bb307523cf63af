from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import torch

from probnets.infer.estimators.base import (
    EstimatorContext,
    SiteRecord,
    SiteTerm,
    describe_distribution,
    masked,
)
from probnets.infer.estimators.discrete import DiscreteNoiseEstimator
from probnets.infer.util import discrete_logits, hard_value, logistic_or_gumbel

if TYPE_CHECKING:  # guide_pass imports the estimators
    from probnets.infer.guide_pass import GuidePass


class DisARM(DiscreteNoiseEstimator):
    r"""
    DisARM (Dong, Mnih, Tucker 2020, eq. 6), the Rao-Blackwellized ARM (Yin & Zhou 2019),
    for Bernoulli sites with logits :math:`\alpha` drawn as
    :math:`b = H(\mathrm{logit}\,u + \alpha)`. Its antithetic partner
    :math:`\tilde b = H(\mathrm{logit}(1-u) + \alpha)` is evaluated in a second pass
    (everything before the site fixed, discrete sites after it redrawn from their own noise,
    others redrawn), and

    .. math::

        \hat g_{\alpha_i} = \tfrac12\,\big(f(b) - f(\tilde b)\big)\,
            (-1)^{\tilde b_i}\, \mathbf 1[b_i \ne \tilde b_i]\,\sigma(|\alpha_i|)

    is chained to the guide parameters through :math:`\alpha`, with :math:`f` the site's
    downstream cost. Sites with several Bernoulli units (``to_event``) share one antithetic
    pair of vectors.
    """

    name = "disarm"
    kinds = ("bernoulli",)

    def check(self, msg: dict[str, Any]) -> None:
        if not self.accepts(msg["fn"]):
            raise ValueError(
                "site '{}': DisARM handles Bernoulli sites only, but the site is {}; use "
                "infer={{'estimator': 'score'}} (or 'rebar' / 'relax' for "
                "OneHotCategorical) for it".format(msg["name"], describe_distribution(msg["fn"]))
            )

    def sample(self, msg: dict[str, Any], guide_pass: "GuidePass") -> SiteRecord:
        return self.sample_hard(msg, guide_pass)

    @staticmethod
    def antithetic(msg: dict[str, Any], record: SiteRecord) -> tuple[torch.Tensor, bool]:
        """The site's antithetic partner ``H(logit(1 − u) + α)`` under the pass's logits
        (sets the target of :meth:`surrogate`'s second pass)."""
        z = logistic_or_gumbel("bernoulli", discrete_logits(msg["fn"]), 1 - record.u)
        return hard_value("bernoulli", z.detach()), False

    def surrogate(
        self,
        context: EstimatorContext,
        site: Mapping[str, Any],
        record: SiteRecord,
        log_prob: torch.Tensor,
    ) -> SiteTerm:
        cost = context.downstream_cost(site)
        anti_costs = context.run_pass(site["name"], self.antithetic)
        anti = cast(torch.Tensor, anti_costs.guide_trace.nodes[site["name"]]["value"]).detach()
        f_anti = context.downstream_cost(site, anti_costs)
        b, alpha = record.hard, record.logits
        event_dims = alpha.dim() - len(site["fn"].batch_shape)
        diff = (cost - f_anti).detach().reshape(cost.shape + (1,) * event_dims)
        weight = 0.5 * diff * (1.0 - 2.0 * anti) * (b != anti).to(alpha.dtype)
        weight = masked(weight * torch.sigmoid(alpha.abs()), site, event_dims)
        return SiteTerm(surrogate=(weight.detach() * alpha).sum())
