"""
The per-site estimator protocol.

A :class:`SiteEstimator` differentiates the ELBO through one kind of guide sample site. The
ELBO (:class:`~probnets.infer.discrete_elbo.DiscreteELBO`) resolves one estimator per guide
site (from the site's ``infer["estimator"]`` or the ELBO-wide default, see
:meth:`~probnets.infer.discrete_elbo.DiscreteELBO.plan`) and hands it to the guide pass;
from then on the estimator owns everything about that site:

1. **Sampling** (:meth:`SiteEstimator.sample`): in the first guide pass it draws the site's
   value (hard, relaxed, or left to Pyro for a pathwise site) and returns a
   :class:`SiteRecord` holding whatever later passes need (noise, hard value, logits).
2. **Other passes** (:meth:`SiteEstimator.replay`): estimators such as REBAR or DisARM rerun
   the program with their own site changed (:meth:`EstimatorContext.run_pass`); every site
   drawn after it is redrawn by its own estimator under the new upstream values, hard or
   relaxed at the pass's temperature.
3. **Surrogate** (:meth:`SiteEstimator.surrogate`): given the site's log-density and its
   Rao-Blackwellized downstream cost, a :class:`SiteTerm` whose gradient is the site's part
   of the gradient estimate, plus any regression loss of the estimator's own learned
   baselines.
4. **Control variates descended on the variance** (:meth:`SiteEstimator.variance_terms`):
   estimators whose control-variate parameters minimize the gradient's variance (REBAR,
   RELAX) return their correction to the guide gradient and the parameters to descend.

An estimator keeps its non-parameter state (running averages) on itself
(:meth:`SiteEstimator.state_dict`) and its learned parameters in Pyro's param store under
``cv.<name>.*``. Register a new one with :func:`~probnets.infer.estimators.register_estimator`.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution
from torch.distributions import Distribution, Independent

from probnets.infer.util import Temperature, TraceCosts, expand_to_site, site_batch_mask

if TYPE_CHECKING:  # guide_pass imports this module
    from probnets.infer.guide_pass import GuidePass, ReplayPass


class SiteRecord:
    """
    What the first guide pass decided at one site. Estimators add their own attributes
    (noise, hard value, logits...).

    :ivar str name: the site name.
    :ivar SiteEstimator estimator: the estimator that drew the site.
    :ivar bool relaxed: the value handed to the program is a relaxation (a point inside the
        hypercube / simplex), so its log-densities are the multilinear extensions.
    :ivar bool tracked: the value carries provenance, so the ELBO finds the site's
        Rao-Blackwellized downstream cost (every score-type site).
    """

    def __init__(
        self, name: str, estimator: "SiteEstimator", relaxed: bool = False, tracked: bool = False
    ) -> None:
        self.name = name
        self.estimator = estimator
        self.relaxed = relaxed
        self.tracked = tracked

    if TYPE_CHECKING:  # estimators keep their own attributes on the record (see above)

        def __getattr__(self, name: str) -> Any: ...

        def __setattr__(self, name: str, value: Any) -> None: ...


#: What sets the target site of a later pass: ``(msg, record) -> (value, relaxed)``, or
#: ``None`` to let Pyro draw it (see :meth:`EstimatorContext.run_pass`).
SiteValue = Callable[[dict[str, Any], SiteRecord], "tuple[torch.Tensor, bool] | None"]


class SiteTerm:
    """
    One site's contribution to the surrogate objective.

    :ivar surrogate: a scalar whose gradient is the site's part of the gradient of the ELBO
        (to maximize), summed over particles (the ELBO divides by ``num_particles``).
    :ivar loss: a scalar loss of the estimator's own regression targets (learned baselines),
        minimized alongside; ``0.`` if none.
    :ivar variance_terms: per-site data for :meth:`SiteEstimator.variance_terms`, or ``None``.
    """

    def __init__(
        self,
        surrogate: torch.Tensor | float = 0.0,
        loss: torch.Tensor | float = 0.0,
        variance_terms: Any = None,
    ) -> None:
        self.surrogate = surrogate
        self.loss = loss
        self.variance_terms = variance_terms


class SiteEstimator:
    """
    Base class of per-site gradient estimators (the protocol above). Subclasses set
    :attr:`name` and override :meth:`accepts`, :meth:`sample`, :meth:`replay` and
    :meth:`surrogate`; estimators with variance-descended control variates set
    :attr:`descends_variance` and override :meth:`variance_terms`.

    Constructor arguments of subclasses are their hyper-parameters; an ELBO passes each the
    ELBO-level options whose names its ``__init__`` accepts (see
    :func:`~probnets.infer.estimators.make_estimator`).
    """

    #: the short name used in ``infer={"estimator": name}`` and the registry
    name: str | None = None
    #: the site's control-variate parameters descend the gradient variance (REBAR, RELAX):
    #: :meth:`DiscreteELBO.loss_and_grads` then calls :meth:`variance_terms`
    descends_variance = False

    def accepts(self, fn: Distribution) -> bool:
        """Whether this estimator can differentiate through a site with distribution ``fn``
        (when the ELBO's default estimator does not accept a non-reparameterizable site, the
        ELBO falls back to the score function)."""
        return False

    def check(self, msg: dict[str, Any]) -> None:
        """Raises a ``ValueError`` naming the site if this estimator was asked for at a site
        it cannot handle (called when the site's ``infer`` dict names the estimator)."""
        if not self.accepts(msg["fn"]):
            raise ValueError(
                "site '{}': the {} estimator cannot handle a {}".format(
                    msg["name"], self.name, describe_distribution(msg["fn"])
                )
            )

    def sample(self, msg: dict[str, Any], guide_pass: "GuidePass") -> SiteRecord:
        """
        Draws the site in the first guide pass: sets ``msg["value"]`` (and
        ``msg["done"] = True``) unless Pyro should draw it, tags score-type values with
        ``guide_pass.track(value, msg)``, and returns a :class:`SiteRecord`.
        """
        raise NotImplementedError

    def replay(
        self, msg: dict[str, Any], record: SiteRecord, guide_pass: "ReplayPass"
    ) -> tuple[torch.Tensor, bool] | None:
        """
        The site's value in a later pass of another site's estimator, for a site drawn after
        that pass's target. ``guide_pass.temperature`` is ``None`` for a hard pass (DisARM's
        antithetic pass) or the temperature at which discrete sites are relaxed (REBAR's
        relaxed passes). Returns ``(value, relaxed)``, or ``None`` to let Pyro redraw it.
        """
        return None

    def surrogate(
        self,
        context: "EstimatorContext",
        site: Mapping[str, Any],
        record: SiteRecord,
        log_prob: torch.Tensor,
    ) -> SiteTerm:
        """
        The site's :class:`SiteTerm`. ``log_prob`` is the site's unscaled, masked
        log-density (with provenance removed); ``context`` (:class:`EstimatorContext`) gives
        the downstream cost and can run further passes.
        """
        raise NotImplementedError

    def variance_terms(
        self, terms: Sequence[Any], params: Mapping[str, torch.Tensor], num_particles: int
    ) -> tuple[Sequence[torch.Tensor | None], Sequence[torch.Tensor]]:
        """
        For estimators with :attr:`descends_variance`: given this estimator's
        ``variance_terms`` of every site (all particles), the guide parameters ``params``
        (``{name: unconstrained leaf}``), returns ``(corrections, cv_params)``: per guide
        parameter, the control-variate part of the estimated gradient of the *negative*
        ELBO (a differentiable tensor, or ``None``), and the leaves that descend
        ``Σ_P ‖ĝ_P‖²``. The corrections are listed in the order of ``params``.
        """
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Non-parameter state (running averages) for checkpoints."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`'s values."""


class EstimatorContext:
    """
    What a :class:`SiteEstimator` sees while building its surrogate term: the first pass and
    its costs, and a way to run further passes of the same program.

    :ivar first: the first :class:`~probnets.infer.guide_pass.GuidePass`.
    :ivar costs: its :class:`~probnets.infer.util.TraceCosts`.
    :ivar int num_particles: particles drawn at once (``1`` with sequential particles).
    :ivar int particle_dim: the batch dimension of vectorized particles, or ``None``.
    :ivar bool build_variance_terms: ``False`` when only the surrogate's value and its
        first-order gradient are asked for (``differentiable_loss``).
    """

    def __init__(
        self,
        runner: Callable[..., TraceCosts],
        first: "GuidePass",
        costs: TraceCosts,
        num_particles: int,
        particle_dim: int | None,
        build_variance_terms: bool = True,
    ) -> None:
        self._runner = runner
        self.first = first
        self.costs = costs
        self.num_particles = num_particles
        self.particle_dim = particle_dim
        self.build_variance_terms = build_variance_terms

    def downstream_cost(
        self, site: Mapping[str, Any], costs: TraceCosts | None = None
    ) -> torch.Tensor:
        """
        The Rao-Blackwellized downstream cost of ``site`` (every log-density term whose value
        depends on the site's sample: model ``+``, guide ``−``, scaled), summed over the
        plates the site is not in and broadcast to its batch shape. ``costs`` evaluates the
        same terms in another pass's traces.
        """
        from_costs = self.costs if costs is None else costs
        cost = from_costs.downstream_cost(site["name"], self.costs.dependents)
        return expand_to_site(cost, site)

    def run_pass(
        self,
        target: str,
        value: SiteValue,
        temperature: Temperature | None = None,
        frozen: bool = False,
    ) -> TraceCosts:
        """
        Reruns guide and model with site ``target`` set by ``value(msg, record)`` (returns
        ``(value, relaxed)``); sites before it keep their first-pass values, sites after it
        are redrawn by their own estimators (relaxed at ``temperature`` unless it is
        ``None``), continuous ones by Pyro. ``frozen`` scores the target's own guide
        log-density with detached distribution parameters. Returns the pass's
        :class:`~probnets.infer.util.TraceCosts`.
        """
        return self._runner(self.first, target, value, temperature, frozen)


def describe_distribution(fn: Distribution) -> str:
    """The name of a site's distribution, looking through masks, expansions and
    ``to_event`` wrappers (``Normal (via Independent)``)."""
    event = False
    while isinstance(fn, (Independent, MaskedDistribution, ExpandedDistribution)):
        event = event or isinstance(fn, Independent)
        fn = fn.base_dist
    return type(fn).__name__ + (" (.to_event)" if event else "")


def masked(weight: torch.Tensor, site: Mapping[str, Any], event_dims: int = 0) -> torch.Tensor:
    """``weight`` with the site's masked-out batch elements zeroed."""
    mask = site_batch_mask(site)
    if mask is None:
        return weight
    return weight * mask.reshape(mask.shape + (1,) * event_dims)
