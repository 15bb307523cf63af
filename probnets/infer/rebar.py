from typing import Any

from probnets.infer.discrete_elbo import DiscreteELBO


class REBAR_ELBO(DiscreteELBO):
    r"""
    REBAR (Tucker et al. 2017): REINFORCE with a reparameterized Concrete control variate,
    unbiased, with the control variate's scale :math:`\eta` and temperature
    :math:`\lambda` learned by minimizing the estimator's variance.

    For a Bernoulli / one-hot categorical guide site with logits :math:`\ell`, noise
    :math:`u, v \sim U(0,1)`, :math:`z = z(u, \ell)` (logistic resp. Gumbel),
    :math:`b = H(z)` and the conditional :math:`\tilde z = \tilde z(v, b, \ell) \sim p(z\mid b)`
    (see :mod:`probnets.distributions.relaxed`),

    .. math::

        \hat g = \big[f(b) - \eta\, f(\sigma_\lambda(\tilde z))\big]\,\nabla\log q(b)
                 + \eta\,\nabla f(\sigma_\lambda(z)) - \eta\,\nabla f(\sigma_\lambda(\tilde z)),

    where :math:`f` is the site's Rao-Blackwellized downstream cost (ELBO terms whose value
    depends on the site) and :math:`f(\sigma_\lambda(\cdot))` evaluates the same terms with
    the site relaxed. In these relaxed evaluations the sites drawn before it keep their
    first-pass values, discrete sites after it are relaxed at the same :math:`\lambda`
    from their own recorded noise, and continuous sites after it are redrawn with the
    same random numbers in both evaluations; the control variate is then a continuous
    function of :math:`z`, which unbiasedness requires. The site's own
    :math:`\log q(\sigma_\lambda(z))` enters the control variate with its distribution
    parameters held fixed (a function of the value only): its direct
    :math:`\theta`-gradient has zero mean and only adds noise (on the one-Bernoulli toy
    this reproduces the paper's gradient variance at :math:`\eta=1, \lambda=0.5`; see
    ``guides/estimators.md``). :math:`\tilde z` keeps its
    dependence on :math:`\ell` (dropping it biases the estimator, as in a well-known
    PyTorch port; see ``duvenaud/relax`` issue #6).

    Learned params: ``cv.rebar.eta.<param>`` (one :math:`\eta` per guide parameter
    tensor, so :math:`\hat g_P = A_P + \eta_P B_P`) and
    ``cv.rebar.log_temperature.<site>`` (one :math:`\log\lambda` per site).
    :meth:`loss_and_grads` puts :math:`\partial\sum_P\|\hat g_P\|^2/\partial(\eta, \log\lambda)`
    in their ``.grad`` (second-order autograd); since :math:`\mathbb E[\hat g]` does not
    depend on them, this descends the variance.

    Cost per estimate: 1 + 2 × (number of REBAR sites) guide and model evaluations per
    particle, and a double backward pass. Integer ``Categorical`` sites and other
    non-reparameterizable sites get the score function (use ``OneHotCategorical`` for
    REBAR); :meth:`differentiable_loss` is not available.

    :param float init_temperature: initial :math:`\lambda` (paper: 0.5).
    :param float init_eta: initial :math:`\eta` (paper: 1).
    :param bool learn_temperature: descend the variance in :math:`\log\lambda`.
    :param bool learn_eta: descend the variance in :math:`\eta`.
    :param int num_particles: particles averaged per estimate.
    :param max_plate_nesting: optional; guessed by a first run otherwise.
    :param bool cache_dependencies: see :class:`~probnets.infer.discrete_elbo.DiscreteELBO`.
    :param kwargs: Pyro's ``ELBO`` arguments (``vectorize_particles``, ``retain_graph``,
        ``max_iarange_nesting``, ...) with Pyro's meaning; see
        :class:`~probnets.infer.discrete_elbo.DiscreteELBO`.

    **References**

    [1] *REBAR: Low-variance, unbiased gradient estimates for discrete latent variable
        models*, G. Tucker, A. Mnih, C. Maddison, D. Lawson, J. Sohl-Dickstein (NeurIPS 2017)
    """

    default_estimator = "rebar"

    def __init__(
        self,
        init_temperature: float = 0.5,
        init_eta: float = 1.0,
        learn_temperature: bool = True,
        learn_eta: bool = True,
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
            init_eta=init_eta,
            learn_temperature=learn_temperature,
            learn_eta=learn_eta,
            **kwargs,
        )
