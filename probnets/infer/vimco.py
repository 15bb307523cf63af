import math

import pyro.poutine as poutine
import torch
from pyro.infer import ELBO
from pyro.poutine.util import site_is_subsample
from pyro.util import warn_if_nan

from probnets.infer.util import site_log_prob, sum_to, vectorized_frames


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
    depend on :math:`z_k`. Reparameterized sites enter pathwise through :math:`\nabla w_k`;
    every non-reparameterized site (any distribution with a ``log_prob``) through the
    score term. ``num_particles = K ≥ 2`` particles are vectorized.

    **Which bound.** If every sample site (model and guide) lies in a common plate (e.g.
    a data plate holding all latents) with one common scale, the bound is taken per
    element of that plate on *unscaled* weights and the sum is multiplied by the plate's
    subsampling scale, as the literature does per datapoint. Otherwise (e.g. a global
    latent) the bound is over the whole trace with scaled weights, as Pyro's
    ``RenyiELBO(alpha=0)``.

    Cost per estimate: one vectorized guide and model evaluation of ``K`` particles; no
    learned params. Sites whose infer dict names another estimator raise ``ValueError``.

    :param int num_particles: ``K ≥ 2``.
    :param int max_plate_nesting: optional; guessed by a first run otherwise.

    **References**

    [1] *Variational Inference for Monte Carlo Objectives*, A. Mnih, D. J. Rezende (ICML 2016)

    [2] *Importance Weighted Autoencoders*, Y. Burda, R. Grosse, R. Salakhutdinov (ICLR 2016)
    """

    def __init__(self, num_particles=2, max_plate_nesting=float("inf")):
        if not isinstance(num_particles, int) or num_particles < 2:
            raise ValueError(
                "VIMCO_ELBO needs num_particles >= 2 (leave-one-out baselines), but got "
                "{!r}".format(num_particles)
            )
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
        )

    def _get_trace(self, model, guide, args, kwargs):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        return model_trace, guide_trace

    def _bound(self, model, guide, args, kwargs):
        """Returns ``(bound, surrogate)`` as scalar tensors (to maximize)."""
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        model_trace, guide_trace = self._get_vectorized_trace(model, guide, args, kwargs)
        sites = []
        for side, trace in (("model", model_trace), ("guide", guide_trace)):
            for site in trace.nodes.values():
                if site["type"] == "sample" and not site_is_subsample(site):
                    if side == "guide":
                        estimator = site["infer"].get("estimator", "vimco")
                        if estimator != "vimco":
                            raise ValueError(
                                "site '{}' asks for estimator {!r}, but VIMCO_ELBO treats "
                                "every discrete site with the multi-sample bound; remove "
                                "the infer key or use a per-site ELBO".format(
                                    site["name"], estimator
                                )
                            )
                    sites.append((side, site))
        common = frozenset.intersection(*(vectorized_frames(s) for _, s in sites))
        particle = frozenset(f for f in common if f.name == "num_particles_vectorized")
        # a per-element bound needs one scalar scale (plate subsampling) shared by all sites
        scales = {
            float(s["scale"])
            if not torch.is_tensor(s["scale"]) or s["scale"].numel() == 1 else None
            for _, s in sites
        }
        per_element = len(common) > len(particle) and len(scales) == 1 and None not in scales
        target = common if per_element else particle
        scale = scales.pop() if per_element else 1.0
        log_w, log_q = 0.0, 0.0
        for side, site in sites:
            lp = site_log_prob(site, relaxed=False)
            frames = vectorized_frames(site)
            w = lp if per_element else lp * site["scale"]
            sign = 1.0 if side == "model" else -1.0
            log_w = log_w + sign * sum_to([(frames, w)], target)
            if side == "guide" and not getattr(site["fn"], "has_rsample", False):
                log_q = log_q + sum_to([(frames, lp)], target)
        K = self.num_particles
        pdim = log_w.dim() - self.max_plate_nesting
        log_w = log_w.movedim(pdim, -1)
        bound = log_w.logsumexp(-1) - math.log(K)
        # L_{-k}: w_k replaced by the mean of the others
        others = (log_w.sum(-1, keepdim=True) - log_w) / (K - 1)
        loo = log_w.unsqueeze(-2) + torch.diag_embed(others - log_w)
        bound_minus = loo.logsumexp(-1) - math.log(K)
        signal = (bound.unsqueeze(-1) - bound_minus).detach()
        score = 0.0
        if isinstance(log_q, torch.Tensor):
            log_q = log_q.movedim(log_q.dim() - self.max_plate_nesting, -1)
            score = (signal * log_q).sum()
        return scale * bound.sum(), scale * (bound.sum() + score)

    def loss(self, model, guide, *args, **kwargs):
        """:returns: an estimate of the negative K-sample bound.  :rtype: float"""
        with torch.no_grad(), poutine.block(hide_types=["param"]):
            bound, _ = self._bound(model, guide, args, kwargs)
        loss = -bound.item()
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """Negative bound in value; its gradient is the VIMCO estimator."""
        bound, surrogate = self._bound(model, guide, args, kwargs)
        return -bound.detach() - (surrogate - surrogate.detach())

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """Backpropagates the VIMCO surrogate; :returns: the negative bound estimate."""
        bound, surrogate = self._bound(model, guide, args, kwargs)
        (-surrogate).backward()
        loss = -bound.item()
        warn_if_nan(loss, "loss")
        return loss
