from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.distributions import Distribution

from probnets.infer.estimators.base import EstimatorContext, SiteEstimator, SiteRecord, SiteTerm

if TYPE_CHECKING:  # guide_pass imports the estimators
    from probnets.infer.guide_pass import GuidePass


class Reparameterized(SiteEstimator):
    r"""
    The pathwise (reparameterization) gradient of a site whose distribution has ``rsample``
    (Kingma & Welling 2014; Rezende et al. 2014): Pyro draws :math:`z = g_\theta(\epsilon)`
    and the surrogate is the site's own :math:`-\log q_\theta(z)`, differentiated through
    both its value and its parameters; terms downstream are differentiated through the
    value. Every reparameterizable guide site uses it unless its ``infer`` dict names
    another estimator.
    """

    name = "reparameterized"

    def accepts(self, fn: Distribution) -> bool:
        return bool(getattr(fn, "has_rsample", False))

    def sample(self, msg: dict[str, Any], guide_pass: "GuidePass") -> SiteRecord:
        return SiteRecord(msg["name"], self)

    def surrogate(
        self,
        context: EstimatorContext,
        site: Mapping[str, Any],
        record: SiteRecord,
        log_prob: torch.Tensor,
    ) -> SiteTerm:
        return SiteTerm(surrogate=-(log_prob * site["scale"]).sum())
