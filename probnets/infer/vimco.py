import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import pyro.poutine as poutine
import torch
from pyro.infer import ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.indep_messenger import CondIndepStackFrame
from pyro.poutine.runtime import Message
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from pyro.util import check_if_enumerated, check_model_guide_match, check_site_shape, warn_if_nan

from probnets.infer.util import site_log_prob, sum_to, vectorized_frames


def leave_one_out_bounds(log_w: torch.Tensor) -> torch.Tensor:
    r"""
    :math:`\hat{\mathcal L}_{-k} = \log \frac1K \big(\sum_{j \ne k} e^{w_j} + e^{m_k}\big)`
    with :math:`m_k = \frac{1}{K-1}\sum_{j\ne k} w_j`, for every ``k`` along the last dim, in
    O(K) memory. Relative to the maximum :math:`M`, the sum without ``k`` is
    :math:`S - e^{w_k - M}`; that subtraction cancels only for the maximum itself, whose sum
    is taken relative to the second largest weight instead.
    """
    K = log_w.shape[-1]
    others = (log_w.sum(-1, keepdim=True) - log_w) / (K - 1)
    top2, index = log_w.topk(2, dim=-1)
    first, second = top2[..., :1], top2[..., 1:]
    e = (log_w - first).exp()
    rest = e.sum(-1, keepdim=True) - e  # Σ_{j≠k} e^{w_j − M}, exact unless k is the argmax
    loo = first + (rest + (others - first).exp()).log()
    # for the argmax: Σ_{j≠k} e^{w_j − M₂} ≥ 1 relative to the second largest weight M₂
    is_max = torch.zeros_like(log_w, dtype=torch.bool).scatter_(-1, index[..., :1], True)
    rest_max = (log_w - second).masked_fill(is_max, -math.inf).exp().sum(-1, keepdim=True)
    loo_max = second + (rest_max + (others - second).exp()).log()
    return torch.where(is_max, loo_max, loo) - math.log(K)


def bound_frames(
    sites: Sequence[tuple[str, Mapping[str, Any]]],
) -> tuple[bool, frozenset[CondIndepStackFrame], float]:
    """``(per_element, frames, scale)``: whether the bound is taken per element of the plates
    every site shares (all sites in a common plate besides the particles', with one scalar
    scale), the plates its weights keep, and the scale of the per-element bound."""
    common = frozenset.intersection(*(vectorized_frames(s) for _, s in sites))
    particle = frozenset(f for f in common if f.name == "num_particles_vectorized")
    scales = {
        float(s["scale"]) if not torch.is_tensor(s["scale"]) or s["scale"].numel() == 1 else None
        for _, s in sites
    }
    per_element = len(common) > len(particle) and len(scales) == 1 and None not in scales
    if per_element:
        return True, common, cast(float, scales.pop())  # None is not among them
    return False, particle, 1.0


class VIMCO_ELBO(ELBO):
    r"""
    VIMCO (Mnih & Rezende 2016): the multi-sample bound

    .. math::

        \mathcal L^K = \mathbb E_{z_{1:K} \sim q}\Big[\log \frac1K \sum_{k=1}^K e^{w_k}\Big],
        \qquad w_k = \log p(x, z_k) - \log q(z_k),

    with the gradient estimator

    .. math::

        \hat g = \sum_k \tilde w_k \nabla w_k
                 + \sum_k \big(\hat{\mathcal L} - \hat{\mathcal L}_{-k}\big)\nabla\log q(z_k),
        \quad \tilde w_k = \mathrm{softmax}(w)_k,

    where :math:`\hat{\mathcal L}_{-k}` replaces :math:`w_k` by the mean of the other
    :math:`w_j` (the geometric-mean leave-one-out baseline, paper eq. 10), which does not
    depend on :math:`z_k`; all ``K`` of them take O(K) memory
    (:func:`leave_one_out_bounds`). Reparameterized sites enter pathwise through
    :math:`\nabla w_k`; every non-reparameterized site (any distribution with a
    ``log_prob``) through the score term.

    **Which bound.** If every sample site (model and guide) lies in a common plate (e.g.
    a data plate holding all latents) with one common scale, the bound is taken per
    element of that plate on *unscaled* weights and the sum is multiplied by the plate's
    subsampling scale, as the literature does per datapoint. Otherwise (e.g. a global
    latent) the bound is over the whole trace with scaled weights, as Pyro's
    ``RenyiELBO(alpha=0)``.

    The ``K`` particles are drawn one after the other (as Pyro's ELBOs do by default) or,
    with ``vectorize_particles=True``, at once in an outermost plate (which a model with
    randomly subsampled plates needs: particles drawn one after the other would each draw
    their own minibatch). Pyro's other ``ELBO`` arguments keep Pyro's meaning (validation
    with ``pyro.enable_validation()``).

    Cost per estimate: ``K`` guide and model evaluations (one vectorized one); no learned
    params. Sites whose infer dict names another estimator raise ``ValueError``.

    :param int num_particles: ``K ≥ 2``.
    :param max_plate_nesting: optional; guessed by a first run if particles are
        vectorized.
    :param kwargs: Pyro's ``ELBO`` arguments (``vectorize_particles``, ``retain_graph``,
        ...).

    **References**

    [1] *Variational Inference for Monte Carlo Objectives*, A. Mnih, D. J. Rezende (ICML 2016)

    [2] *Importance Weighted Autoencoders*, Y. Burda, R. Grosse, R. Salakhutdinov (ICLR 2016)
    """

    def __init__(
        self, num_particles: int = 2, max_plate_nesting: float = float("inf"), **kwargs: Any
    ) -> None:
        if (
            isinstance(num_particles, bool)
            or not isinstance(num_particles, int)
            or num_particles < 2
        ):
            raise ValueError(
                "VIMCO_ELBO needs num_particles >= 2 (leave-one-out baselines), but got "
                "{!r}".format(num_particles)
            )
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting, **kwargs)

    def _get_trace(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Trace, Trace]:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        return model_trace, guide_trace

    def _sites(self, model_trace: Trace, guide_trace: Trace) -> list[tuple[str, Message]]:
        sites: list[tuple[str, Message]] = []
        for side, trace in (("model", model_trace), ("guide", guide_trace)):
            for site in trace.nodes.values():
                if site["type"] != "sample" or site_is_subsample(site):
                    continue
                infer = cast(dict[str, Any], site["infer"])
                estimator = infer.get("estimator", "vimco") if side == "guide" else "vimco"
                if estimator != "vimco":
                    raise ValueError(
                        "site '{}' asks for estimator {!r}, but VIMCO_ELBO treats every "
                        "discrete site with the multi-sample bound; remove the infer key "
                        "or use a per-site ELBO".format(site["name"], estimator)
                    )
                sites.append((side, site))
        if not sites:
            raise ValueError(
                "VIMCO_ELBO: the model and guide have no sample sites, so there is no bound "
                "to estimate"
            )
        return sites

    def _weights(
        self, model_trace: Trace, guide_trace: Trace, vectorized: bool
    ) -> tuple[torch.Tensor, torch.Tensor | float, float]:
        """``(log_w, log_q, scale)`` of one trace pair, the particles along the last dim
        (a dim of size 1 for a sequentially drawn particle)."""
        sites = self._sites(model_trace, guide_trace)
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
            check_if_enumerated(guide_trace)
        per_element, target, scale = bound_frames(sites)
        log_w: torch.Tensor | float = 0.0
        log_q: torch.Tensor | float = 0.0
        for side, site in sites:
            lp = site_log_prob(site, relaxed=False)
            if is_validation_enabled():
                check_site_shape(cast(Message, dict(site, log_prob=lp)), self.max_plate_nesting)
            frames = vectorized_frames(site)
            sign = 1.0 if side == "model" else -1.0
            log_w = log_w + sign * sum_to(
                [(frames, lp if per_element else lp * site["scale"])], target
            )
            if side == "guide" and not getattr(site["fn"], "has_rsample", False):
                log_q = log_q + sum_to([(frames, lp)], target)
        return (
            cast(torch.Tensor, self._particles_last(log_w, vectorized)),  # one site at least
            self._particles_last(log_q, vectorized),
            scale,
        )

    def _particles_last(
        self, tensor: torch.Tensor | float, vectorized: bool
    ) -> torch.Tensor | float:
        if not isinstance(tensor, torch.Tensor):
            return tensor
        if vectorized:
            return tensor.movedim(tensor.dim() - self.max_plate_nesting, -1)
        return tensor.unsqueeze(-1)

    def _bound(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(bound, surrogate)`` as scalar tensors (to maximize)."""
        if self.vectorize_particles:
            if self.max_plate_nesting == float("inf"):
                self._guess_max_plate_nesting(model, guide, args, kwargs)
            draws = [self._get_vectorized_trace(model, guide, args, kwargs)]
        else:
            draws = [self._get_trace(model, guide, args, kwargs) for _ in range(self.num_particles)]
        weights = [self._weights(m, g, self.vectorize_particles) for m, g in draws]
        log_w = torch.cat([w for w, _, _ in weights], -1)
        scale = weights[0][2]
        bound = log_w.logsumexp(-1) - math.log(self.num_particles)
        signal = (bound.unsqueeze(-1) - leave_one_out_bounds(log_w)).detach()
        score: torch.Tensor | float = 0.0
        if isinstance(weights[0][1], torch.Tensor):
            # every draw has the same sites, so every log_q is a tensor
            log_q = torch.cat([cast(torch.Tensor, q) for _, q, _ in weights], -1)
            score = (signal * log_q).sum()
        return scale * bound.sum(), scale * (bound.sum() + score)

    def loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> float:
        """:returns: an estimate of the negative K-sample bound.  :rtype: float"""
        with torch.no_grad(), poutine.block(hide_types=["param"]):
            bound, _ = self._bound(model, guide, args, kwargs)
        loss = -bound.item()
        # pyro types its value as numbers.Number, which mypy does not match with a float
        warn_if_nan(loss, "loss")  # type: ignore[call-overload]
        return loss

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Negative bound in value; its gradient is the VIMCO estimator."""
        bound, surrogate = self._bound(model, guide, args, kwargs)
        return -bound.detach() - (surrogate - surrogate.detach())

    def loss_and_grads(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> float:
        """Backpropagates the VIMCO surrogate (skipped when nothing requires a gradient);
        :returns: the negative bound estimate."""
        bound, surrogate = self._bound(model, guide, args, kwargs)
        if surrogate.requires_grad:
            (-surrogate).backward(retain_graph=self.retain_graph)
        loss = -bound.item()
        # pyro types its value as numbers.Number, which mypy does not match with a float
        warn_if_nan(loss, "loss")  # type: ignore[call-overload]
        return loss
