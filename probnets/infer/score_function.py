from typing import Any

from probnets.infer.baselines import BaselineName
from probnets.infer.discrete_elbo import DiscreteELBO


class ScoreFunction_ELBO(DiscreteELBO):
    r"""
    The ELBO with score-function (REINFORCE) gradients for every non-reparameterizable
    guide site (discrete, continuous without ``rsample``, users' own distributions),
    Rao-Blackwellized per site, with optional baselines: a superset of Pyro's
    ``TraceGraph_ELBO``. Reparameterizable sites use pathwise gradients.

    For a non-reparameterized guide site :math:`s` with downstream cost
    :math:`F_s = \sum_{t \succeq s} [\log p_t - \log q_t]` (only the terms whose value
    depends on the sample of :math:`s`, see :mod:`probnets.infer.util`) and a baseline
    :math:`b_s` that does not depend on that sample,

    .. math::

        \hat g = \nabla_{\rm path}\,\big[\log p(x, z) - \log q(z)\big]
                 + \sum_s \big(F_s - b_s\big)\, \nabla \log q(z_s \mid \cdot),

    an unbiased estimate of :math:`\nabla\,\mathrm{ELBO}` (Williams 1992; Ranganath et al.
    2014; Schulman et al. 2015).

    Baselines (``baseline=``; per site through ``infer={"baseline": {...}}``, see
    :mod:`probnets.infer.baselines`):

    - ``None``: plain REINFORCE;
    - ``"decaying_avg"``: running mean of the per-datapoint unscaled cost, one per batch
      element of the site (as Pyro's ``use_decaying_avg_baseline``);
    - ``"decaying_avg_site"``: one running mean for the whole site, over its batch elements
      (for comparison: on a plate whose elements differ it tracks none of them);
    - ``"nvil"``: input-dependent learned baseline (Mnih & Gregor 2014), an MLP over the
      site's detached logits (or ``nn_baseline(nn_baseline_input)``), regressing the
      centred, variance-normalized, *unscaled* cost; params ``cv.nvil.<site>``;
    - ``"loo"``: leave-one-out over ``num_particles > 1`` particles drawn together
      (``vectorize_particles=True``);
    - ``baseline_value`` in the site's infer dict: a user tensor in unscaled units, which
      is also regressed on the cost (so its params learn).

    Cost per estimate: one guide and one model evaluation per particle; learned params only
    for ``"nvil"``.

    :param int num_particles: particles (gradient averaged over them).
    :param baseline: one of ``None``, ``"decaying_avg"``, ``"decaying_avg_site"``,
        ``"nvil"``, ``"loo"``.
    :param float baseline_beta: decay of the running averages.
    :param int hidden_size: hidden units of the automatic NVIL networks.
    :param max_plate_nesting: optional; guessed by a first run otherwise.
    :param bool cache_dependencies: see :class:`~probnets.infer.discrete_elbo.DiscreteELBO`.
    :param kwargs: Pyro's ``ELBO`` arguments (``vectorize_particles``, ``retain_graph``,
        ``max_iarange_nesting``, ...) with Pyro's meaning; see
        :class:`~probnets.infer.discrete_elbo.DiscreteELBO`.

    **References**

    [1] *Simple statistical gradient-following algorithms for connectionist reinforcement
        learning*, R. J. Williams (1992)

    [2] *Gradient Estimation Using Stochastic Computation Graphs*, J. Schulman, N. Heess,
        T. Weber, P. Abbeel (NeurIPS 2015)

    [3] *Neural Variational Inference and Learning in Belief Networks*, A. Mnih, K. Gregor
        (ICML 2014)
    """

    default_estimator = "score"

    def __init__(
        self,
        num_particles: int = 1,
        baseline: BaselineName | None = None,
        baseline_beta: float = 0.9,
        hidden_size: int = 100,
        max_plate_nesting: float = float("inf"),
        cache_dependencies: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            cache_dependencies=cache_dependencies,
            baseline=baseline,
            baseline_beta=baseline_beta,
            hidden_size=hidden_size,
            **kwargs,
        )
