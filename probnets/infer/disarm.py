from typing import Any

from probnets.infer.discrete_elbo import DiscreteELBO


class DisARM_ELBO(DiscreteELBO):
    r"""
    The DisARM estimator (Dong, Mnih, Tucker 2020), the Rao-Blackwellized form of ARM
    (Yin & Zhou 2019), for Bernoulli guide sites.

    For a Bernoulli site with logits :math:`\alpha` drawn as
    :math:`b = H(\mathrm{logit}\,u + \alpha)`,
    its antithetic partner is :math:`\tilde b = H(\mathrm{logit}(1-u) + \alpha)`. With
    :math:`f` the site's downstream cost evaluated once with :math:`b` and once with
    :math:`\tilde b` (everything upstream fixed, downstream discrete sites reusing their
    noise),

    .. math::

        \hat g_{\alpha_i} = \tfrac12\,\big(f(b) - f(\tilde b)\big)\,
            (-1)^{\tilde b_i}\, \mathbf 1[b_i \ne \tilde b_i]\,\sigma(|\alpha_i|),

    an unbiased estimate of :math:`\nabla_\alpha \mathbb E[f(b)]`, chained to the guide
    parameters through :math:`\alpha`. Sites with several independent Bernoulli units
    (``to_event``) share one antithetic pair of vectors.

    Cost per estimate: 1 + (number of DisARM sites) guide and model evaluations per
    particle; no learned params. Other non-reparameterizable sites get the
    score function; asking for DisARM at a non-Bernoulli site raises ``ValueError``.

    :param int num_particles: particles averaged per estimate.
    :param max_plate_nesting: optional; guessed by a first run otherwise.
    :param bool cache_dependencies: see :class:`~probnets.infer.discrete_elbo.DiscreteELBO`.
    :param kwargs: Pyro's ``ELBO`` arguments (``vectorize_particles``, ``retain_graph``,
        ``max_iarange_nesting``, ...) with Pyro's meaning; see
        :class:`~probnets.infer.discrete_elbo.DiscreteELBO`.

    **References**

    [1] *DisARM: An Antithetic Gradient Estimator for Binary Latent Variables*,
        Z. Dong, A. Mnih, G. Tucker (NeurIPS 2020)

    [2] *ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary Networks*,
        M. Yin, M. Zhou (ICLR 2019)
    """

    default_estimator = "disarm"

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        cache_dependencies: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            cache_dependencies=cache_dependencies,
            **kwargs,
        )
