from typing import Any

from probnets.infer.discrete_elbo import DiscreteELBO


class Relaxed_ELBO(DiscreteELBO):
    r"""
    The Concrete / Gumbel-softmax relaxed ELBO (Maddison et al. 2017; Jang et al. 2017).

    Each discrete guide site is drawn as its relaxation with noise :math:`u \sim U(0,1)`:
    Bernoulli :math:`\hat z = \sigma((\mathrm{logit}\,u + \ell)/\lambda)`, one-hot
    categorical :math:`\hat z = \mathrm{softmax}((\ell - \log(-\log u))/\lambda)`, and the
    relaxed value flows through the rest of the guide and the model. Log-densities of
    Bernoulli / one-hot sites (model and guide) at :math:`\hat z` are the multilinear
    extensions :math:`\hat z\log\theta + (1-\hat z)\log(1-\theta)` and
    :math:`\sum_k \hat z_k \log\pi_k`, exact at the vertices. The estimator is the
    pathwise gradient of

    .. math::

        \mathcal L_\lambda = \mathbb E_u\big[\log p(x, \hat z) - \log q(\hat z)\big],

    which is biased for the ELBO; the bias vanishes as :math:`\lambda \to 0` while the
    variance grows. With ``straight_through=True`` the forward value is the hard sample
    :math:`H(z)` and the backward pass uses :math:`\nabla \hat z` (Bengio et al. 2013;
    Jang et al. 2017): the ELBO value is then that of the discrete model.

    ``temperature`` is a plain attribute, so a schedule may set it every step
    (e.g. ``Anneal(elbo, "temperature", ...)``); a site may override it with
    ``infer={"temperature": ...}``. Integer ``Categorical`` sites (which cannot hold a
    relaxed value) and other non-reparameterizable sites get the score function; use
    ``OneHotCategorical`` to relax a categorical (see :mod:`probnets.infer.util`).

    Cost per estimate: one guide and one model evaluation per particle; no learned params.

    :param float temperature: relaxation temperature :math:`\lambda > 0`.
    :param bool straight_through: hard forward values, relaxed gradients.
    :param int num_particles: particles averaged per estimate.
    :param max_plate_nesting: optional; guessed by a first run otherwise.
    :param kwargs: Pyro's ``ELBO`` arguments (``vectorize_particles``, ``retain_graph``,
        ``max_iarange_nesting``, ...) with Pyro's meaning; see
        :class:`~probnets.infer.discrete_elbo.DiscreteELBO`.

    **References**

    [1] *The Concrete Distribution*, C. Maddison, A. Mnih, Y. W. Teh (ICLR 2017)

    [2] *Categorical Reparameterization with Gumbel-Softmax*, E. Jang, S. Gu, B. Poole (ICLR 2017)
    """

    default_estimator = "relaxed"

    def __init__(
        self,
        temperature: float,
        straight_through: bool = False,
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        **kwargs: Any,
    ) -> None:
        if temperature is None:
            raise ValueError(
                "Relaxed_ELBO expected temperature to be a positive float, but got None"
            )
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            temperature=temperature,
            straight_through=straight_through,
            **kwargs,
        )
