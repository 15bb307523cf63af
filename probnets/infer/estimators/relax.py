from collections.abc import Mapping, Sequence
from typing import Any

import pyro
import torch
from torch import nn

from probnets.infer.baselines import flatten_event, mlp
from probnets.infer.estimators.base import SiteRecord
from probnets.infer.estimators.rebar import REBAR


class RELAX(REBAR):
    r"""
    RELAX (Grathwohl et al. 2018) at one Bernoulli / one-hot categorical site: REBAR's
    estimator with a learned surrogate :math:`c_\phi` as control variate,

    .. math::

        \hat g = \big[f(b) - c_\phi(\tilde z)\big]\,\nabla\log q(b)
                 + \nabla c_\phi(z) - \nabla c_\phi(\tilde z),

    unbiased for any differentiable :math:`c_\phi`. Here
    :math:`c_\phi(z) = \mathrm{scale}\cdot r_\phi(\sigma_\lambda(z), \ell)
    + \eta\, f(\sigma_\lambda(z))`: an MLP :math:`r_\phi` over the relaxed value and the
    site's detached logits, plus, with ``rebar_cv`` (the paper's RELAX+REBAR), :math:`\eta`
    times the relaxed downstream cost of :class:`~probnets.infer.estimators.REBAR`.

    Learned: ``cv.relax.surrogate.<site>`` (module), ``cv.relax.eta.<site>``,
    ``cv.relax.log_temperature.<site>``, all descending :math:`\sum_P \|\hat g_P\|^2`.

    :param float init_temperature: initial :math:`\lambda`.
    :param bool rebar_cv: add :math:`\eta f(\sigma_\lambda(\cdot))` to the surrogate.
    :param int hidden_size: hidden units of :math:`r_\phi`.
    :param bool learn_temperature: descend the variance in :math:`\log\lambda`.
    :param float init_eta: initial :math:`\eta` of the REBAR term.
    """

    name = "relax"

    def __init__(
        self,
        init_temperature: float = 0.5,
        rebar_cv: bool = True,
        hidden_size: int = 100,
        learn_temperature: bool = True,
        init_eta: float = 1.0,
    ) -> None:
        super().__init__(
            init_temperature=init_temperature,
            init_eta=init_eta,
            learn_temperature=learn_temperature,
        )
        self.rebar_cv = rebar_cv
        self.hidden_size = hidden_size
        self.nets: dict[str, nn.Module] = {}

    def control_variate(
        self,
        site: Mapping[str, Any],
        record: SiteRecord,
        out: dict[str, Any],
        values: Mapping[str, torch.Tensor],
    ) -> dict[str, Any]:
        """``c_φ`` at both relaxed values: the surrogate network's output, plus ``η`` times
        REBAR's relaxed cost with ``rebar_cv``; its parameters join ``out["cv_params"]``."""
        name, like = site["name"], record.logits
        batch_shape = site["fn"].batch_shape
        logits_in = flatten_event(like.detach(), batch_shape)
        net = self.nets.get(name)
        if net is None:
            net = self.nets[name] = mlp(2 * logits_in.shape[-1], self.hidden_size, like)
        pyro.module("cv.relax.surrogate." + name, net, update_module_params=True)
        out["cv_params"] = list(net.parameters())
        if self.rebar_cv:
            eta = pyro.param(
                "cv.relax.eta." + name, lambda: like.new_tensor(self.init_eta).detach()
            )
            # pyro.param's stub returns a Tensor; the value also has .unconstrained()
            out["cv_params"].append(eta.unconstrained())  # type: ignore[attr-defined]
        for key in ("c_z", "c_zt"):
            x = flatten_event(values[key], batch_shape)
            c = site["scale"] * net(torch.cat([x, logits_in], -1)).squeeze(-1)
            out[key] = c + eta * out[key] if self.rebar_cv else c
        return out

    def variance_terms(
        self,
        terms: Sequence[Mapping[str, Any]],
        params: Mapping[str, torch.Tensor],
        num_particles: int,
    ) -> tuple[Sequence[torch.Tensor | None], Sequence[torch.Tensor]]:
        corrections = self.control_variate_gradient(terms, params, num_particles)
        cv_params = [p for t in terms for p in t["cv_params"]]
        if self.learn_temperature:
            cv_params.extend(t["log_temperature"] for t in terms)
        return corrections, cv_params
