"""
Bernoulli and categorical sites drawn from explicit uniform noise, the common ground of the
estimators that relax or reuse a discrete sample (relaxed, REBAR, RELAX, DisARM) and of the
score function at discrete sites.

A site with logits ``ℓ`` is drawn as ``b = H(z)``, ``z = z(u, ℓ)`` with ``u ~ U(0, 1)``
(logistic noise for a Bernoulli, Gumbel-max for a categorical; see
:mod:`probnets.distributions.relaxed`). Recording ``u`` lets a later pass redraw the site
under new upstream values with the same noise, hard or relaxed.
"""

from typing import TYPE_CHECKING, Any, cast

import torch
from pyro.ops.provenance import detach_provenance
from torch.distributions import Distribution

from probnets.infer.estimators.base import SiteEstimator, SiteRecord, describe_distribution
from probnets.infer.util import (
    DiscreteKind,
    discrete_kind,
    discrete_logits,
    hard_value,
    logistic_or_gumbel,
    relaxed_value,
)

if TYPE_CHECKING:  # guide_pass imports the estimators
    from probnets.infer.guide_pass import GuidePass, ReplayPass


class DiscreteRecord(SiteRecord):
    """
    A discrete site's first-pass draw.

    :ivar str kind: ``"bernoulli"``, ``"one_hot"`` or ``"categorical"``.
    :ivar logits: the logits broadcast to the value (plus a category dim for integer
        categoricals), differentiable, without provenance.
    :ivar u: the uniform noise of ``z``.
    :ivar hard: the hard sample ``H(z)`` (one-hot for categorical kinds), detached.
    """

    def __init__(
        self,
        name: str,
        estimator: SiteEstimator,
        kind: DiscreteKind,
        logits: torch.Tensor,
        u: torch.Tensor,
        hard: torch.Tensor,
        relaxed: bool = False,
        tracked: bool = False,
    ) -> None:
        super().__init__(name, estimator, relaxed=relaxed, tracked=tracked)
        self.kind = kind
        self.logits = logits
        self.u = u
        self.hard = hard


def draw_noise(
    msg: dict[str, Any],
) -> tuple[DiscreteKind, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(kind, logits, u, z)`` for a discrete site: logits keep their provenance, so ``z``
    (and a value made from it) depends on every upstream site the distribution does."""
    kind = cast(DiscreteKind, discrete_kind(msg["fn"]))  # a site the estimator accepts
    logits = discrete_logits(msg["fn"])
    u = torch.rand(logits.shape, dtype=logits.dtype, device=logits.device)
    return kind, logits, u, logistic_or_gumbel(kind, logits, u)


def as_site_value(kind: DiscreteKind, hard: torch.Tensor) -> torch.Tensor:
    """The value a site of ``kind`` takes for the one-hot / binary sample ``hard``."""
    return hard.argmax(-1) if kind == "categorical" else hard


class DiscreteNoiseEstimator(SiteEstimator):
    """
    Base of the estimators that draw non-reparameterized Bernoulli / categorical sites from
    recorded noise. Subclasses narrow :attr:`kinds`.
    """

    #: the discrete kinds this estimator handles
    kinds: tuple[str, ...] = ("bernoulli", "one_hot", "categorical")

    def accepts(self, fn: Distribution) -> bool:
        return not getattr(fn, "has_rsample", False) and discrete_kind(fn) in self.kinds

    def sample_hard(self, msg: dict[str, Any], guide_pass: "GuidePass") -> DiscreteRecord:
        """Draws ``b = H(z(u))`` with provenance and returns its :class:`DiscreteRecord`."""
        kind, logits, u, z = draw_noise(msg)
        hard = hard_value(kind, z.detach())
        msg["value"] = guide_pass.track(as_site_value(kind, hard), msg)
        msg["done"] = True
        return DiscreteRecord(
            msg["name"],
            self,
            kind,
            detach_provenance(logits),
            u,
            detach_provenance(hard),
            tracked=True,
        )

    def replay(
        self, msg: dict[str, Any], record: SiteRecord, guide_pass: "ReplayPass"
    ) -> tuple[torch.Tensor, bool]:
        """Redraws the site from its recorded noise under new upstream values: relaxed at
        the pass's temperature in a relaxed pass (so a control variate stays continuous in
        the target's noise), hard otherwise."""
        kind = record.kind
        z = logistic_or_gumbel(kind, discrete_logits(msg["fn"]), record.u)
        if guide_pass.temperature is None:
            return self.hard_replay(record, z), False
        if kind == "categorical":
            target = guide_pass.first.records[guide_pass.target]
            raise ValueError(
                "site '{}' is an integer Categorical downstream of {} site '{}'; its "
                "control variate needs a continuous relaxation of every discrete site "
                "after it. Use OneHotCategorical for '{}'".format(
                    record.name, str(target.estimator.name).upper(), target.name, record.name
                )
            )
        return relaxed_value(kind, z, guide_pass.temperature), True

    def hard_replay(self, record: SiteRecord, z: torch.Tensor) -> torch.Tensor:
        """The site's value in a hard pass, from its noise ``z`` under the new upstream."""
        return as_site_value(record.kind, hard_value(record.kind, z.detach()))


def check_relaxable(estimator: SiteEstimator, msg: dict[str, Any]) -> None:
    """Rejects an integer ``Categorical`` (a relaxation is a point on the simplex, which an
    integer value cannot hold) and anything that is not Bernoulli / one-hot categorical."""
    kind = discrete_kind(msg["fn"])
    if kind == "categorical":
        raise ValueError(
            "site '{}': the {} estimator relaxes the value to a point on the simplex, "
            "which an integer-valued Categorical cannot hold; use OneHotCategorical "
            "(relaxed one-hot values are passed downstream and scored by contraction "
            "with the log-probs) or infer={{'estimator': 'score'}}".format(
                msg["name"], estimator.name
            )
        )
    if not estimator.accepts(msg["fn"]):
        raise ValueError(
            "site '{}': the {} estimator relaxes Bernoulli and OneHotCategorical sites "
            "without rsample, but the site is {}; use infer={{'estimator': 'score'}} "
            "for it".format(msg["name"], estimator.name, describe_distribution(msg["fn"]))
        )
