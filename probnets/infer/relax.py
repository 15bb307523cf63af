from typing import Any

from probnets.infer.discrete_elbo import DiscreteELBO


class RELAX_ELBO(DiscreteELBO):
    r"""
    RELAX (Grathwohl et al. 2018): REBAR's estimator with a learned surrogate
    :math:`c_\phi` as control variate,

    .. math::

        \hat g = \big[f(b) - c_\phi(\tilde z)\big]\,\nabla\log q(b)
                 + \nabla c_\phi(z) - \nabla c_\phi(\tilde z),

    unbiased for any differentiable :math:`c_\phi`. Here, per site,
    :math:`c_\phi(z) = \mathrm{scale}\cdot r_\phi\big(\sigma_\lambda(z), \ell\big)
    + \eta\, f(\sigma_\lambda(z))`: an MLP :math:`r_\phi` over the relaxed sample and the
    site's (detached) logits, plus, with ``rebar_cv=True`` (the paper's RELAX+REBAR
    variant), :math:`\eta` times the relaxed downstream cost evaluated as in
    :class:`~probnets.infer.rebar.REBAR_ELBO`. :math:`\phi`, :math:`\eta` and
    :math:`\log\lambda` descend the single-sample variance
    :math:`\sum_P \|\hat g_P\|^2` over guide params (second-order autograd).

    Learned params: ``cv.relax.surrogate.<site>`` (module), ``cv.relax.eta.<site>``,
    ``cv.relax.log_temperature.<site>``.

    Cost per estimate: 1 + 2 × (number of RELAX sites) guide and model evaluations per
    particle (needed for the relaxed samples even with ``rebar_cv=False``), two
    surrogate-network evaluations per site, and a double backward pass. Integer
    ``Categorical`` and other non-reparameterizable sites get the score function;
    :meth:`differentiable_loss` is not available.

    :param float init_temperature: initial :math:`\lambda`.
    :param bool rebar_cv: add :math:`\eta f(\sigma_\lambda(\cdot))` to the surrogate.
    :param int hidden_size: hidden units of :math:`r_\phi`.
    :param bool learn_temperature: descend the variance in :math:`\log\lambda`.
    :param int num_particles: particles averaged per estimate.
    :param max_plate_nesting: optional; guessed by a first run otherwise.
    :param bool cache_dependencies: see :class:`~probnets.infer.discrete_elbo.DiscreteELBO`.
    :param kwargs: Pyro's ``ELBO`` arguments (``vectorize_particles``, ``retain_graph``,
        ``max_iarange_nesting``, ...) with Pyro's meaning; see
        :class:`~probnets.infer.discrete_elbo.DiscreteELBO`.

    **References**

    [1] *Backpropagation through the Void: Optimizing control variates for black-box
        gradient estimation*, W. Grathwohl, D. Choi, Y. Wu, G. Roeder, D. Duvenaud (ICLR 2018)
    """

    default_estimator = "relax"

    def __init__(
        self,
        init_temperature: float = 0.5,
        rebar_cv: bool = True,
        hidden_size: int = 100,
        learn_temperature: bool = True,
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        cache_dependencies: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            cache_dependencies=cache_dependencies,
            init_temperature=init_temperature,
            learn_temperature=learn_temperature,
            relax_rebar_cv=rebar_cv,
            hidden_size=hidden_size,
            **kwargs,
        )
