from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.distributions import Distribution

from probnets.infer.baselines import BaselineName, Baselines, flatten_event
from probnets.infer.estimators.base import EstimatorContext, SiteRecord, SiteTerm
from probnets.infer.estimators.discrete import DiscreteNoiseEstimator

if TYPE_CHECKING:  # guide_pass imports the estimators
    from probnets.infer.guide_pass import GuidePass, ReplayPass


class ScoreFunction(DiscreteNoiseEstimator):
    r"""
    The score-function (REINFORCE) gradient of one site, Rao-Blackwellized:

    .. math::

        \big(F_s - b_s\big)\,\nabla \log q(z_s \mid \cdot),

    with :math:`F_s` the site's downstream cost (the ELBO terms whose value depends on
    :math:`z_s`, found by provenance) and a baseline :math:`b_s` that does not depend on
    :math:`z_s` (Williams 1992; Schulman et al. 2015). It takes any distribution with a
    ``log_prob``: Bernoulli and categorical sites are drawn from recorded noise (so a REBAR
    or DisARM pass can redraw them downstream), any other site by its own ``sample()``.

    Baselines (:class:`~probnets.infer.baselines.Baselines`): ``None``, ``"decaying_avg"``
    (one running average per batch element), ``"decaying_avg_site"`` (one per site),
    ``"nvil"``, ``"loo"``, and per site Pyro's
    ``infer={"baseline": {...}}`` keys.

    :param str baseline: the estimator-wide baseline (``None`` for none).
    :param float baseline_beta: decay of the running averages.
    :param int hidden_size: hidden units of automatic NVIL networks.
    """

    name = "score"

    def __init__(
        self,
        baseline: BaselineName | None = None,
        baseline_beta: float = 0.9,
        hidden_size: int = 100,
    ) -> None:
        self.baselines = Baselines(baseline, baseline_beta, hidden_size)

    def accepts(self, fn: Distribution) -> bool:
        return True

    def check(self, msg: dict[str, Any]) -> None:
        pass

    def sample(self, msg: dict[str, Any], guide_pass: "GuidePass") -> SiteRecord:
        if super().accepts(msg["fn"]):
            return self.sample_hard(msg, guide_pass)
        # Pyro's own draw (sample(), never rsample: the value carries no pathwise gradient)
        value = msg["fn"].sample(*msg["args"], **msg["kwargs"]).detach()
        msg["value"] = guide_pass.track(value, msg)
        msg["done"] = True
        return SiteRecord(msg["name"], self, tracked=True)

    def replay(
        self, msg: dict[str, Any], record: SiteRecord, guide_pass: "ReplayPass"
    ) -> tuple[torch.Tensor, bool]:
        if hasattr(record, "u"):
            return super().replay(msg, record, guide_pass)
        return replay_generic(msg, record, guide_pass)

    def surrogate(
        self,
        context: EstimatorContext,
        site: Mapping[str, Any],
        record: SiteRecord,
        log_prob: torch.Tensor,
    ) -> SiteTerm:
        cost = context.downstream_cost(site)
        batch_shape = site["fn"].batch_shape
        if hasattr(record, "logits"):
            inputs = flatten_event(record.logits.detach(), batch_shape)
        else:  # no natural input: the automatic network learns a constant per element
            inputs = cost.new_ones(cost.shape + (1,))
        baseline, loss = self.baselines(
            site, inputs, cost, context.num_particles, context.particle_dim
        )
        return SiteTerm(surrogate=(log_prob * (cost - baseline).detach()).sum(), loss=loss)

    def state_dict(self) -> dict[str, Any]:
        return {"baselines": self.baselines.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.baselines.load_state_dict(state["baselines"])


def replay_generic(
    msg: dict[str, Any], record: SiteRecord, guide_pass: "ReplayPass"
) -> tuple[torch.Tensor, bool]:
    """
    A non-discrete score-function site drawn after another site's target, in that site's
    pass. If its distribution does not depend on the target it keeps its first-pass value.
    Otherwise a hard pass (DisARM) redraws it from its new distribution (Pyro samples it),
    which keeps that estimator unbiased; a relaxed pass (REBAR, RELAX) cannot, since its
    control variate must be a differentiable function of the target's relaxed noise.
    """
    name = msg["name"]
    if not guide_pass.depends_on_target(name):
        return guide_pass.first.values[name], False
    if guide_pass.temperature is None:
        return msg["fn"].sample(*msg["args"], **msg["kwargs"]).detach(), False
    target = guide_pass.first.records[guide_pass.target]
    raise ValueError(
        "site '{}' depends on {} site '{}' but is neither reparameterizable nor a "
        "Bernoulli / OneHotCategorical that could be relaxed with it; its control variate "
        "needs a continuous relaxation of every site after it. Use the score function or "
        "DisARM for '{}'".format(name, str(target.estimator.name).upper(), target.name, target.name)
    )
