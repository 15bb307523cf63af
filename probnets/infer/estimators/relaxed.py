from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from pyro.ops.provenance import detach_provenance

from probnets.infer.estimators.base import EstimatorContext, SiteRecord, SiteTerm
from probnets.infer.estimators.discrete import (
    DiscreteNoiseEstimator,
    DiscreteRecord,
    check_relaxable,
    draw_noise,
)
from probnets.infer.util import Temperature, check_temperature, hard_value, relaxed_value

if TYPE_CHECKING:  # guide_pass imports the estimators
    from probnets.infer.guide_pass import GuidePass, ReplayPass


class Relaxed(DiscreteNoiseEstimator):
    r"""
    The Concrete / Gumbel-softmax relaxation (Maddison et al. 2017; Jang et al. 2017): the
    site takes :math:`\hat z = \sigma_\lambda(z(u, \ell))` and the rest of the program is
    differentiated through it (pathwise, biased for :math:`\lambda > 0`). With
    ``straight_through`` the forward value is the hard :math:`H(z)` and the backward pass
    uses :math:`\nabla \hat z` (Bengio et al. 2013). Bernoulli and ``OneHotCategorical``
    sites only.

    :param float temperature: :math:`\lambda > 0`, or ``None`` if every relaxed site sets
        ``infer={"temperature": ...}``; a plain attribute, so a schedule may change it.
    :param bool straight_through: hard forward values (overridable per site).
    """

    name = "relaxed"
    kinds = ("bernoulli", "one_hot")

    def __init__(self, temperature: float | None = None, straight_through: bool = False) -> None:
        if temperature is not None:
            check_temperature(temperature, "the relaxed estimator")
        self.temperature = temperature
        self.straight_through = straight_through

    def check(self, msg: dict[str, Any]) -> None:
        check_relaxable(self, msg)

    def site_temperature(self, msg: dict[str, Any]) -> Temperature:
        """The site's ``infer["temperature"]``, else the estimator's (checked)."""
        temperature = msg["infer"].get("temperature", self.temperature)
        if temperature is None:
            raise ValueError(
                "site '{}' uses the relaxed estimator but has no temperature: pass "
                "temperature=... to the ELBO or set infer={{'temperature': ...}} at the "
                "site".format(msg["name"])
            )
        check_temperature(temperature, "site '{}'".format(msg["name"]))
        return temperature

    def sample(self, msg: dict[str, Any], guide_pass: "GuidePass") -> SiteRecord:
        kind, logits, u, z = draw_noise(msg)
        hard = detach_provenance(hard_value(kind, z.detach()))
        record = DiscreteRecord(
            msg["name"], self, kind, detach_provenance(logits), u, hard, relaxed=True
        )
        record.temperature = self.site_temperature(msg)
        record.straight_through = bool(msg["infer"].get("straight_through", self.straight_through))
        msg["value"] = self.relax(record, z)
        msg["done"] = True
        return record

    def relax(self, record: SiteRecord, z: torch.Tensor) -> torch.Tensor:
        """``σ_λ(z)`` at the record's temperature (straight-through: the hard value forward,
        the relaxed gradient backward)."""
        value = relaxed_value(record.kind, z, record.temperature)
        if record.straight_through:
            value = hard_value(record.kind, z.detach()) + value - value.detach()
        return value

    def hard_replay(self, record: SiteRecord, z: torch.Tensor) -> torch.Tensor:
        return self.relax(record, z)

    def replay(
        self, msg: dict[str, Any], record: SiteRecord, guide_pass: "ReplayPass"
    ) -> tuple[torch.Tensor, bool]:
        value, _ = super().replay(msg, record, guide_pass)
        return value, True

    def surrogate(
        self,
        context: EstimatorContext,
        site: Mapping[str, Any],
        record: SiteRecord,
        log_prob: torch.Tensor,
    ) -> SiteTerm:
        # pathwise: the site's own log q is differentiated through the relaxed value
        return SiteTerm(surrogate=-(log_prob * site["scale"]).sum())
