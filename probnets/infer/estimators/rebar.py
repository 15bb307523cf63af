import functools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import pyro
import torch
from pyro.ops.provenance import detach_provenance
from pyro.util import get_rng_state, set_rng_state

from probnets.infer.estimators.base import EstimatorContext, SiteRecord, SiteTerm
from probnets.infer.estimators.discrete import DiscreteNoiseEstimator, check_relaxable
from probnets.infer.util import (
    check_temperature,
    conditional_noise,
    discrete_logits,
    logistic_or_gumbel,
    relaxed_value,
)

if TYPE_CHECKING:  # guide_pass imports the estimators
    from probnets.infer.guide_pass import GuidePass


class REBAR(DiscreteNoiseEstimator):
    r"""
    REBAR (Tucker et al. 2017) at one Bernoulli / one-hot categorical site with logits
    :math:`\ell`, noise :math:`u, v`, :math:`z = z(u, \ell)`, :math:`b = H(z)` and
    :math:`\tilde z = \tilde z(v, b, \ell) \sim p(z \mid b)`:

    .. math::

        \hat g = \big[f(b) - \eta\, f(\sigma_\lambda(\tilde z))\big]\,\nabla\log q(b)
                 + \eta\,\nabla f(\sigma_\lambda(z)) - \eta\,\nabla f(\sigma_\lambda(\tilde z)).

    :math:`f(\sigma_\lambda(\cdot))` reruns the program from the site on with the site
    relaxed (sites before it fixed, discrete sites after it relaxed at :math:`\lambda` from
    their own noise, continuous ones redrawn with the same random numbers in both passes),
    so the control variate is a continuous function of :math:`z`. The site's own
    :math:`\log q` enters it with its parameters held fixed (their direct gradient has
    zero mean). :math:`\tilde z` keeps its dependence on :math:`\ell`.

    Learned: ``cv.rebar.eta.<param>`` (one :math:`\eta` per guide parameter tensor) and
    ``cv.rebar.log_temperature.<site>``, both descending :math:`\sum_P \|\hat g_P\|^2`.

    :param float init_temperature: initial :math:`\lambda`.
    :param float init_eta: initial :math:`\eta`.
    :param bool learn_temperature: descend the variance in :math:`\log\lambda`.
    :param bool learn_eta: descend the variance in :math:`\eta`.
    """

    name = "rebar"
    kinds = ("bernoulli", "one_hot")
    descends_variance = True

    def __init__(
        self,
        init_temperature: float = 0.5,
        init_eta: float = 1.0,
        learn_temperature: bool = True,
        learn_eta: bool = True,
    ) -> None:
        check_temperature(init_temperature, "init_temperature of " + self.name)
        self.init_temperature = float(init_temperature)
        self.init_eta = float(init_eta)
        self.learn_temperature = learn_temperature
        self.learn_eta = learn_eta

    def check(self, msg: dict[str, Any]) -> None:
        check_relaxable(self, msg)

    def sample(self, msg: dict[str, Any], guide_pass: "GuidePass") -> SiteRecord:
        record = self.sample_hard(msg, guide_pass)
        logits = record.logits
        record.v = torch.rand(logits.shape, dtype=logits.dtype, device=logits.device)
        return record

    def surrogate(
        self,
        context: EstimatorContext,
        site: Mapping[str, Any],
        record: SiteRecord,
        log_prob: torch.Tensor,
    ) -> SiteTerm:
        cost = context.downstream_cost(site)
        term = SiteTerm(surrogate=(log_prob * cost.detach()).sum())
        if context.build_variance_terms:
            term.variance_terms = self.relaxed_costs(context, site, record, log_prob)
        return term

    def relaxed_costs(
        self,
        context: EstimatorContext,
        site: Mapping[str, Any],
        record: SiteRecord,
        log_prob: torch.Tensor,
    ) -> dict[str, Any]:
        """
        ``c(σ_λ(z))`` and ``c(σ_λ(z̃))`` from two passes with shared noise for every other
        random choice (the random state is rewound between them).
        """
        name, kind, like = site["name"], record.kind, record.logits
        log_t = pyro.param(
            "cv.{}.log_temperature.{}".format(self.name, name),
            lambda: like.new_tensor(math.log(self.init_temperature)).detach(),
        )
        leaf = log_t.unconstrained()  # type: ignore[attr-defined]  # pyro.param's stub
        temperature = (log_t if self.learn_temperature else log_t.detach()).exp()

        def at_z(msg: dict[str, Any], rec: SiteRecord) -> tuple[torch.Tensor, bool]:
            z = logistic_or_gumbel(kind, discrete_logits(msg["fn"]), rec.u)
            return relaxed_value(kind, z, temperature), True

        def at_conditional(msg: dict[str, Any], rec: SiteRecord) -> tuple[torch.Tensor, bool]:
            z = conditional_noise(kind, discrete_logits(msg["fn"]), rec.hard, rec.v)
            return relaxed_value(kind, z, temperature), True

        rng = get_rng_state()  # CPU torch, python and numpy generators
        cuda_rng = torch.cuda.get_rng_state(like.device) if like.is_cuda else None
        out = {"logq": log_prob, "log_temperature": leaf}
        values: dict[str, torch.Tensor] = {}
        for key, value in (("c_z", at_z), ("c_zt", at_conditional)):
            set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state(cuda_rng, like.device)
            costs = context.run_pass(name, value, temperature, frozen=True)
            out[key] = context.downstream_cost(site, costs)
            values[key] = detach_provenance(
                cast(torch.Tensor, costs.guide_trace.nodes[name]["value"])
            )
        return self.control_variate(site, record, out, values)

    def control_variate(
        self,
        site: Mapping[str, Any],
        record: SiteRecord,
        out: dict[str, Any],
        values: Mapping[str, torch.Tensor],
    ) -> dict[str, Any]:
        """REBAR's control variate is the relaxed cost itself (``η`` is applied per guide
        parameter in :meth:`variance_terms`)."""
        return out

    @staticmethod
    def control_variate_gradient(
        terms: Sequence[Mapping[str, Any]], params: Mapping[str, torch.Tensor], num_particles: int
    ) -> list[torch.Tensor]:
        """Per guide parameter, the gradient of the negative ELBO's control-variate part
        ``[c(z̃) ∇log q(b) − ∇c(z) + ∇c(z̃)] / K`` (differentiable), zeros where unused."""
        outputs, grad_outputs = [], []
        for t in terms:
            if t["logq"].requires_grad:
                outputs.append(t["logq"])
                grad_outputs.append(t["c_zt"].expand_as(t["logq"]) / num_particles)
            diff = (t["c_zt"] - t["c_z"]).sum() / num_particles
            if diff.requires_grad:  # fully masked sites have constant terms
                outputs.append(diff)
                grad_outputs.append(torch.ones_like(diff))
        leaves = list(params.values())
        if not outputs:
            return [torch.zeros_like(p) for p in leaves]
        grads = torch.autograd.grad(
            outputs, leaves, grad_outputs, create_graph=True, retain_graph=True, allow_unused=True
        )
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, leaves)]

    def variance_terms(
        self,
        terms: Sequence[Mapping[str, Any]],
        params: Mapping[str, torch.Tensor],
        num_particles: int,
    ) -> tuple[Sequence[torch.Tensor | None], Sequence[torch.Tensor]]:
        grads = self.control_variate_gradient(terms, params, num_particles)
        corrections: list[torch.Tensor | None] = []
        cv_params: list[torch.Tensor] = []
        for (name, p), g in zip(params.items(), grads):
            eta = pyro.param("cv.rebar.eta." + name, functools.partial(p.new_tensor, self.init_eta))
            if self.learn_eta:
                cv_params.append(eta.unconstrained())  # type: ignore[attr-defined]
            else:
                eta = eta.detach()
            corrections.append(eta * g)
        if self.learn_temperature:
            cv_params.extend(t["log_temperature"] for t in terms)
        return corrections, cv_params
