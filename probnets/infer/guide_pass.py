"""
The guide passes of the per-site estimators.

:class:`GuidePass` is the first pass: at each latent guide site it asks the ELBO's plan for
the site's :class:`~probnets.infer.estimators.SiteEstimator`, which draws the value and
returns a record of it. :class:`ReplayPass` reruns the guide for one *target* site: sites
drawn before it keep their first-pass values (the first pass's minibatch included), the
target's estimator sets the target, and every site after it is redrawn by its own estimator
under the new upstream values (continuous pathwise sites by Pyro).
"""

from collections.abc import Callable
from typing import Any, cast

import torch
from pyro.ops.provenance import detach_provenance, track_provenance
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.util import site_is_subsample

from probnets.infer.estimators.base import (
    SiteEstimator,
    SiteRecord,
    SiteValue,
    describe_distribution,
)
from probnets.infer.util import Temperature, TraceCosts


class GuidePass(Messenger):
    """
    The first pass of one estimate.

    :param plan: callable ``msg -> SiteEstimator`` (the ELBO's per-site plan).
    :param bool track: tag score-type values with provenance (off when the dependency
        structure comes from a cache).

    After the pass: ``records`` (name -> :class:`~probnets.infer.estimators.SiteRecord`),
    ``order`` (name -> position among latent sites), ``values`` (name -> detached value,
    subsample sites included), ``relaxed`` (names whose value is relaxed), and ``costs``
    (set by the ELBO).
    """

    def __init__(self, plan: Callable[[dict[str, Any]], SiteEstimator], track: bool = True) -> None:
        super().__init__()
        self.plan = plan
        self.tracking = track
        self.records: dict[str, SiteRecord] = {}
        self.order: dict[str, int] = {}
        self.values: dict[str, torch.Tensor] = {}
        self.relaxed: set[str] = set()
        self.frozen: set[str] = set()
        self.costs: TraceCosts | None = None

    def track(self, value: torch.Tensor, msg: dict[str, Any]) -> torch.Tensor:
        """Tags ``value`` as depending on site ``msg`` (its downstream cost is then found by
        provenance). Upstream provenance carried by ``value`` is kept."""
        if not self.tracking:
            return value
        return track_provenance(value, frozenset({msg["name"]}))

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if site_is_subsample(cast(Message, msg)) or msg["is_observed"]:
            return
        self.order[msg["name"]] = len(self.order)
        estimator = self.plan(msg)
        record = estimator.sample(msg, self)
        self.records[msg["name"]] = record
        if record.relaxed:
            self.relaxed.add(msg["name"])

    def _pyro_post_sample(self, msg: dict[str, Any]) -> None:
        if site_is_subsample(cast(Message, msg)) or not msg["is_observed"]:
            self.values[msg["name"]] = detach_provenance(msg["value"])


class ReplayPass(Messenger):
    """
    A later pass for site ``target`` of the first pass ``first``.

    :param GuidePass first: the first pass.
    :param str target: the site this pass changes.
    :param value: callable ``(msg, record) -> (value, relaxed)`` setting the target.
    :param temperature: ``None`` (downstream discrete sites hard) or the temperature (a float
        or a scalar tensor) at which downstream discrete sites are relaxed.
    :param bool frozen: score the target's guide log-density with detached parameters.
    """

    def __init__(
        self,
        first: GuidePass,
        target: str,
        value: SiteValue,
        temperature: Temperature | None = None,
        frozen: bool = False,
    ) -> None:
        super().__init__()
        self.first = first
        self.target = target
        self.target_value = value
        self.temperature = temperature
        self.relaxed: set[str] = set()
        self.frozen: set[str] = {target} if frozen else set()

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        name = msg["name"]
        if site_is_subsample(cast(Message, msg)):
            # every pass of one estimate sees the first pass's minibatch
            if name in self.first.values:
                msg["value"] = self.first.values[name]
                msg["done"] = True
            return
        if msg["is_observed"]:
            return
        order = self.first.order
        record = self.first.records.get(name)
        if record is None:
            if not getattr(msg["fn"], "has_rsample", False):
                raise ValueError(
                    "site '{}' ({}) appeared in a later pass for site '{}' but not in the "
                    "first pass; the estimators need static structure downstream of a "
                    "REBAR / RELAX / DisARM site".format(
                        name, describe_distribution(msg["fn"]), self.target
                    )
                )
            return  # a continuous site: Pyro redraws it
        if order[name] < order[self.target]:
            msg["value"] = self.first.values[name]
            msg["done"] = True
            if record.relaxed:
                self.relaxed.add(name)
            return
        if name == self.target:
            out = self.target_value(msg, record)
        else:
            out = record.estimator.replay(msg, record, self)
        if out is None:
            return
        msg["value"], relaxed = out
        msg["done"] = True
        if relaxed:
            self.relaxed.add(name)

    def depends_on_target(self, name: str) -> bool:
        """Whether the first pass found site ``name``'s guide log-density downstream of the
        target (so its distribution changes with the target's value)."""
        assert self.first.costs is not None  # set by the ELBO after the first pass
        return ("guide", name) in self.first.costs.dependents.get(self.target, ())
