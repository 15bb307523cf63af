"""
The per-site estimator engine shared by :class:`ScoreFunction_ELBO`,
:class:`Relaxed_ELBO`, :class:`REBAR_ELBO`, :class:`RELAX_ELBO` and :class:`DisARM_ELBO`.

One estimate draws the guide once (the *first pass*, :class:`~probnets.infer.guide_pass.
GuidePass`), each latent site by the :class:`~probnets.infer.estimators.SiteEstimator` the
ELBO's :meth:`~DiscreteELBO.plan` resolved for it, replays the model against it, and sums
the sites' surrogate terms:

    Σ pathwise terms                                  (reparameterized and relaxed sites)
  + Σ_{score sites s}   (F_s − b_s) ∇ log q(z_s)          (REINFORCE, Rao-Blackwellized)
  + Σ_{DisARM sites s}  ĝ_{α_s} ∇ α_s                     (antithetic pass per site)
  + Σ_{REBAR/RELAX s}   F_s ∇ log q(b_s) − [c_s(z̃_s) ∇ log q(b_s) − ∇c_s(z_s) + ∇c_s(z̃_s)]

where ``F_s`` is the downstream cost of ``s``. Every term is built by the site's estimator,
so a model can mix estimators site by site and a new estimator is one new class (see
:func:`~probnets.infer.estimators.register_estimator`).
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import pyro.poutine as poutine
import torch
from pyro.infer import ELBO
from pyro.poutine.runtime import Message
from pyro.poutine.trace_struct import Trace
from pyro.infer.util import is_validation_enabled
from pyro.util import (
    check_if_enumerated,
    check_model_guide_match,
    check_site_shape,
    get_rng_state,
    set_rng_state,
    warn_if_nan,
)

from probnets.infer.baselines import BaselineName
from probnets.infer.estimators import (
    EstimatorContext,
    SiteEstimator,
    estimator_class,
    make_estimator,
)
from probnets.infer.estimators.base import SiteValue
from probnets.infer.guide_pass import GuidePass, ReplayPass
from probnets.infer.util import (
    Temperature,
    TermKey,
    TraceCosts,
    check_temperature,
    param_leaves,
)

if TYPE_CHECKING:
    from probnets.infer.baselines import Baselines


class DiscreteELBO(ELBO):
    """
    An ELBO whose guide sites are each differentiated by a per-site estimator
    (:class:`~probnets.infer.estimators.SiteEstimator`), a drop-in for Pyro's
    ``TraceGraph_ELBO``.

    **Which estimator a guide site gets** (:meth:`plan`, resolved once per site): the one
    named by its ``infer={"estimator": ...}`` (a registered name or a ``SiteEstimator``
    instance), which must accept the site; otherwise pathwise if the distribution has
    ``rsample``; otherwise the ELBO's default ``estimator`` if it accepts the site (e.g.
    DisARM takes Bernoulli sites); otherwise the score function, which takes any
    distribution with a ``log_prob``.

    Pyro's ``ELBO`` arguments keep Pyro's meaning: particles are drawn one after the other
    unless ``vectorize_particles=True`` (then in an outermost plate, ``max_plate_nesting``
    guessed if not given); with ``pyro.enable_validation()`` the model and guide are checked
    as Pyro's ELBOs check them (``check_model_guide_match``, ``check_site_shape``, the
    enumeration warning); ``retain_graph`` is passed to the backward pass;
    ``strict_enumeration_warning``, ``ignore_jit_warnings``, ``jit_options`` and
    ``tail_adaptive_beta`` are stored for compatibility (they configure Pyro's enumerating,
    JIT and tail-adaptive ELBOs, which these are not).

    :param int num_particles: number of particles averaged per estimate.
    :param max_plate_nesting: bound on plate nesting, an int (the default ``inf``: guessed
        when needed).
    :param max_iarange_nesting: deprecated alias of ``max_plate_nesting`` (as in Pyro).
    :param bool vectorize_particles: draw the particles at once in an outermost plate.
    :param bool strict_enumeration_warning: stored (Pyro's enumeration ELBOs use it).
    :param bool ignore_jit_warnings: stored (Pyro's JIT ELBOs use it).
    :param dict jit_options: stored (Pyro's JIT ELBOs use it).
    :param bool retain_graph: keep the autograd graph after :meth:`loss_and_grads`.
    :param float tail_adaptive_beta: stored (Pyro's ``TraceTailAdaptive_ELBO`` uses it).
    :param estimator: default estimator of non-reparameterizable guide sites: a registered
        name (``"score"``, ``"relaxed"``, ``"rebar"``, ``"relax"``, ``"disarm"`` or a user's)
        or a :class:`~probnets.infer.estimators.SiteEstimator` instance.
    :param baseline: score-function baseline: ``None``, ``"decaying_avg"``,
        ``"decaying_avg_site"``, ``"nvil"``, ``"loo"``.
    :param float baseline_beta: decay of running averages of the baselines.
    :param temperature: temperature of relaxed sites (``None`` unless relaxed sites exist).
    :param bool straight_through: hard forward values for relaxed sites.
    :param float init_temperature: initial learned temperature of REBAR/RELAX sites.
    :param bool learn_temperature: learn the REBAR/RELAX temperatures.
    :param bool learn_eta: learn the REBAR η (else fixed at ``init_eta``).
    :param float init_eta: initial REBAR η.
    :param bool relax_rebar_cv: RELAX control variate ``c_φ + η f(σ_λ(·))`` instead of ``c_φ``.
    :param int hidden_size: hidden units of NVIL and RELAX networks.
    :param bool cache_dependencies: reuse the dependency structure (which log-density terms
        are downstream of which site) found by provenance tracking on an earlier step whose
        traces had the same sites and shapes, instead of tracking provenance again.
        Provenance makes every tensor operation after the first tracked sample go through a
        ``__torch_function__`` wrapper and pytree flattening, a large part of a
        score-function step of AIR. Valid when the program's control flow does not branch
        on sampled values (presence handled by masking, a fixed number of steps, as in
        :class:`~probnets.models.air.AIR`); a branch that changes which sites run changes
        the signature and triggers tracking again, but a branch that only changes which
        tensors feed which site, with the same sites and shapes, would go unnoticed.
        When the signature is new, the same draw is run again with tracking (random state
        rewound), so the estimator stays unbiased; a guide or model with other side effects
        (e.g. batch-norm statistics) would see them twice on such a step.
    """

    default_estimator: str | SiteEstimator = "score"

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        max_iarange_nesting: int | None = None,
        vectorize_particles: bool = False,
        strict_enumeration_warning: bool = True,
        ignore_jit_warnings: bool = False,
        jit_options: dict[str, Any] | None = None,
        retain_graph: bool | None = None,
        tail_adaptive_beta: float = -1.0,
        estimator: str | SiteEstimator | None = None,
        baseline: BaselineName | None = None,
        baseline_beta: float = 0.9,
        temperature: float | None = None,
        straight_through: bool = False,
        init_temperature: float = 0.5,
        learn_temperature: bool = True,
        init_eta: float = 1.0,
        learn_eta: bool = True,
        relax_rebar_cv: bool = True,
        hidden_size: int = 100,
        cache_dependencies: bool = False,
    ) -> None:
        if (
            isinstance(num_particles, bool)
            or not isinstance(num_particles, int)
            or num_particles < 1
        ):
            raise ValueError(
                "num_particles must be a positive int, but got {!r}".format(num_particles)
            )
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            max_iarange_nesting=max_iarange_nesting,
            vectorize_particles=bool(vectorize_particles),
            strict_enumeration_warning=strict_enumeration_warning,
            ignore_jit_warnings=ignore_jit_warnings,
            jit_options=jit_options,
            retain_graph=retain_graph,
            tail_adaptive_beta=tail_adaptive_beta,
        )
        if temperature is not None:
            check_temperature(temperature, type(self).__name__)
        check_temperature(init_temperature, "init_temperature of " + type(self).__name__)
        self._options: dict[str, Any] = dict(
            baseline=baseline,
            baseline_beta=baseline_beta,
            hidden_size=hidden_size,
            temperature=temperature,
            straight_through=straight_through,
            init_temperature=init_temperature,
            learn_temperature=learn_temperature,
            init_eta=init_eta,
            learn_eta=learn_eta,
            rebar_cv=relax_rebar_cv,
        )
        self.estimators: dict[str, SiteEstimator] = {}  # name -> this ELBO's estimator
        # (site name, requested estimator, distribution) -> SiteEstimator
        self._plans: dict[tuple[Any, ...], SiteEstimator] = {}
        default = self.default_estimator if estimator is None else estimator
        self.default_estimator = default
        self.estimator_for(default, "estimator")  # checks the name and the options now
        self.estimator_for("score")  # the fallback; checks the baseline options now
        self.cache_dependencies = bool(cache_dependencies)
        # trace signature -> dependents, see cache_dependencies
        self._dependencies: dict[tuple[Any, ...], dict[str, list[TermKey]]] = {}

    # estimators and the per-site plan ----------------------------------------------------

    def estimator_for(self, spec: str | SiteEstimator, where: str = "estimator") -> SiteEstimator:
        """This ELBO's :class:`~probnets.infer.estimators.SiteEstimator` for ``spec`` (a
        registered name, made once with the ELBO's options, or an instance, used as is)."""
        if isinstance(spec, SiteEstimator):
            return spec
        estimator = self.estimators.get(spec)
        if estimator is None:
            cls = estimator_class(spec, where)
            estimator = self.estimators[spec] = make_estimator(cls, self._options)
        return estimator

    def plan(self, msg: dict[str, Any]) -> SiteEstimator:
        """
        The estimator of guide site ``msg``: the one its ``infer["estimator"]`` names (which
        must accept the site), else pathwise for a distribution with ``rsample``, else the
        ELBO's default if it accepts the site, else the score function. Resolved once per
        site name, requested estimator and distribution type.
        """
        fn = msg["fn"]
        requested = msg["infer"].get("estimator")
        key = (
            msg["name"],
            requested,
            type(fn),
            getattr(fn, "has_rsample", False),
            self.default_estimator,
        )
        try:
            return self._plans[key]
        except (KeyError, TypeError):
            pass
        if requested is not None:
            estimator = self.estimator_for(
                requested, "site '{}': infer['estimator']".format(msg["name"])
            )
            estimator.check(msg)
        elif getattr(fn, "has_rsample", False):
            estimator = self.estimator_for("reparameterized")
        else:
            estimator = self.estimator_for(self.default_estimator)
            if not estimator.accepts(fn):
                estimator = self.estimator_for("score")
        try:
            self._plans[key] = estimator
        except TypeError:  # an unhashable infer value: resolve again next time
            pass
        return estimator

    @property
    def temperature(self) -> float | None:
        """Temperature of relaxed sites (a plain attribute a schedule may set)."""
        return self._options["temperature"]

    @temperature.setter
    def temperature(self, value: float | None) -> None:
        if value is not None:
            check_temperature(value, type(self).__name__)
        self._options["temperature"] = value
        if "relaxed" in self.estimators:
            self.estimators["relaxed"].temperature = value  # type: ignore[attr-defined]

    @property
    def baselines(self) -> "Baselines":
        """The score-function estimator's baselines
        (:class:`~probnets.infer.baselines.Baselines`)."""
        return self.estimator_for("score").baselines  # type: ignore[attr-defined]

    # passes ----------------------------------------------------------------------------

    def _vectorized(self) -> bool:
        return self.vectorize_particles and self.num_particles > 1

    def _wrap(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Callable[..., Any], Callable[..., Any]]:
        if not self._vectorized():
            return model, guide
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        return self._vectorized_num_particles(model), self._vectorized_num_particles(guide)

    def _run(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        guide_pass: GuidePass | ReplayPass,
        validate: bool = False,
    ) -> TraceCosts:
        guide_trace = poutine.trace(guide_pass(guide)).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        if validate:  # before any log-density, as Pyro's ELBOs check
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        return TraceCosts(model_trace, guide_trace, guide_pass.relaxed, guide_pass.frozen)

    def _replay(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        first: GuidePass,
        target: str,
        value: SiteValue,
        temperature: Temperature | None,
        frozen: bool,
    ) -> TraceCosts:
        with poutine.block():
            replay = ReplayPass(first, target, value, temperature, frozen)
            return self._run(model, guide, args, kwargs, replay)

    def _checked_run(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        guide_pass: GuidePass,
    ) -> TraceCosts:
        validate = is_validation_enabled()
        costs = self._run(model, guide, args, kwargs, guide_pass, validate)
        if not costs.model_lp and not costs.guide_lp:
            raise ValueError(
                "{}: the model and guide have no sample sites, so there is no ELBO to "
                "estimate; add pyro.sample statements (observed sites in the model, latent "
                "ones in both)".format(type(self).__name__)
            )
        if validate:
            self._validate(costs)
        return costs

    def _validate(self, costs: TraceCosts) -> None:
        """Pyro's checks of each site's shape against its plates and of enumeration
        requests, as its ELBOs run them under validation."""
        for trace, log_probs in (
            (costs.model_trace, costs.model_lp),
            (costs.guide_trace, costs.guide_lp),
        ):
            for name, lp in log_probs.items():
                site = cast(Message, dict(trace.nodes[name], log_prob=lp))
                check_site_shape(site, self.max_plate_nesting)
        check_if_enumerated(costs.guide_trace)

    def _first_pass(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[GuidePass, TraceCosts]:
        """The first pass and its costs, with the dependency structure from provenance or,
        with ``cache_dependencies``, from an earlier pass of the same signature."""
        if self.cache_dependencies and self._dependencies:
            rng = get_rng_state()
            cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
            first = GuidePass(self.plan, track=False)
            costs = self._checked_run(model, guide, args, kwargs, first)
            dependents = self._dependencies.get(costs.signature())
            if dependents is not None:
                costs.dependents = dependents
                first.costs = costs
                return first, costs
            # A new structure: run the same draw again with provenance (the random state
            # rewound), so the sample used is the one whose structure was new; drawing
            # afresh instead would favour the structures already cached.
            set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
        first = GuidePass(self.plan)
        costs = first.costs = self._checked_run(model, guide, args, kwargs, first)
        if self.cache_dependencies:
            self._dependencies[costs.signature()] = costs.dependents
        return first, costs

    def _get_trace(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Trace, Trace]:
        """One particle's model and guide traces (first pass), as Pyro's ELBOs return."""
        costs = self._checked_run(model, guide, args, kwargs, GuidePass(self.plan))
        return costs.model_trace, costs.guide_trace

    # the estimator ---------------------------------------------------------------------

    def _particle_terms(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        build_cv: bool,
    ) -> tuple[TraceCosts, torch.Tensor | float, torch.Tensor | float, list[Any], bool]:
        """One first pass (all particles, if vectorized) and every site's term."""
        first, costs = self._first_pass(model, guide, args, kwargs)
        vectorized = self._vectorized()
        context = EstimatorContext(
            functools.partial(self._replay, model, guide, args, kwargs),
            first,
            costs,
            num_particles=self.num_particles,
            particle_dim=-self.max_plate_nesting if vectorized else None,
            build_variance_terms=build_cv,
        )
        surrogate_elbo: torch.Tensor | float = 0.0
        loss: torch.Tensor | float = 0.0
        for name, lp in costs.model_lp.items():
            surrogate_elbo = surrogate_elbo + (lp * costs.model_trace.nodes[name]["scale"]).sum()
        variance_terms: list[tuple[SiteEstimator, Any]] = []
        descends = False
        for name, lp in costs.guide_lp.items():
            site = costs.guide_trace.nodes[name]
            record = first.records.get(name)
            if record is None:  # an observed guide site
                surrogate_elbo = surrogate_elbo - (lp * site["scale"]).sum()
                continue
            term = record.estimator.surrogate(context, site, record, lp)
            surrogate_elbo = surrogate_elbo + term.surrogate
            loss = loss + term.loss
            descends = descends or record.estimator.descends_variance
            if term.variance_terms is not None:
                variance_terms.append((record.estimator, term.variance_terms))
        return costs, surrogate_elbo, loss, variance_terms, descends

    def _terms(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        build_cv: bool = True,
    ) -> dict[str, Any]:
        """
        Runs all passes of all particles. Returns a dict with ``elbo`` (particle-averaged
        estimate), ``surrogate`` (a loss whose gradient is the estimator without the
        variance-descended control-variate terms, plus baseline regression losses),
        ``variance_terms`` (``[(estimator, [per-site data])]``), ``descends_variance`` and
        ``guide_params``.
        """
        model, guide = self._wrap(model, guide, args, kwargs)
        draws = 1 if self._vectorized() else self.num_particles
        elbo: torch.Tensor | float = 0.0
        surrogate_elbo: torch.Tensor | float = 0.0
        loss: torch.Tensor | float = 0.0
        descends = False
        groups: dict[int, tuple[SiteEstimator, list[Any]]] = {}
        guide_params: dict[str, torch.Tensor] = {}
        for _ in range(draws):
            costs, s, l, cv, d = self._particle_terms(model, guide, args, kwargs, build_cv)
            elbo = elbo + costs.elbo
            surrogate_elbo, loss, descends = surrogate_elbo + s, loss + l, descends or d
            for estimator, data in cv:
                groups.setdefault(id(estimator), (estimator, []))[1].append(data)
            guide_params.update(param_leaves(costs.guide_trace))
        K = self.num_particles
        return {
            "elbo": elbo / K,
            "surrogate": -surrogate_elbo / K + loss,
            "variance_terms": list(groups.values()),
            "descends_variance": descends,
            "guide_params": guide_params,
        }

    def state_dict(self) -> dict[str, Any]:
        """Non-parameter state (baseline running averages, temperature) for checkpoints."""
        return {
            "estimators": {name: e.state_dict() for name, e in self.estimators.items()},
            "temperature": self.temperature,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`'s values (and the baselines of older checkpoints)."""
        if "baselines" in state:  # checkpoints from before per-site estimator classes
            state = {
                "estimators": {"score": {"baselines": state["baselines"]}},
                "temperature": state["temperature"],
            }
        for name, estimator_state in state["estimators"].items():
            self.estimator_for(name).load_state_dict(estimator_state)
        self.temperature = state["temperature"]

    # Pyro ELBO interface ----------------------------------------------------------------

    def loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> float:
        """
        :returns: an estimate of the negative ELBO (``num_particles`` samples).
        :rtype: float
        """
        elbo = 0.0
        with torch.no_grad(), poutine.block(hide_types=["param"]):
            model, guide = self._wrap(model, guide, args, kwargs)
            for _ in range(1 if self._vectorized() else self.num_particles):
                costs = self._checked_run(model, guide, args, kwargs, GuidePass(self.plan))
                elbo += costs.elbo.item()
        loss = -elbo / self.num_particles
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """
        A scalar whose value is the negative ELBO estimate and whose gradient is the
        estimator (plus baseline regression losses). Not available when a site uses REBAR
        or RELAX: their control-variate parameters descend the gradient *variance*, which
        no scalar loss expresses; use :meth:`loss_and_grads`.
        """
        terms = self._terms(model, guide, args, kwargs, build_cv=False)
        if terms["descends_variance"]:
            raise NotImplementedError(
                "{}.differentiable_loss is not available when a site uses REBAR or RELAX: "
                "their control-variate parameters descend the gradient variance; use "
                "loss_and_grads".format(type(self).__name__)
            )
        surrogate = terms["surrogate"]
        return -terms["elbo"].detach() + (surrogate - surrogate.detach())

    def loss_and_grads(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> float:
        """
        Leaves in ``.grad`` the estimated gradient of the negative ELBO for model and guide
        params, the baseline regression gradient for baseline params, and, for REBAR/RELAX
        control-variate params (``cv.*``), the gradient of the single-sample gradient
        variance ``Σ_P ‖ĝ_P‖²`` over guide params ``P`` (second-order autograd). Does no
        backward pass when nothing requires a gradient.

        :returns: an estimate of the negative ELBO.
        :rtype: float
        """
        terms = self._terms(model, guide, args, kwargs)
        surrogate = terms["surrogate"]
        if terms["variance_terms"] and terms["guide_params"]:
            self._backward_with_cv(terms)
        elif torch.is_tensor(surrogate) and surrogate.requires_grad:
            surrogate.backward(retain_graph=self.retain_graph)
        loss = -terms["elbo"].item()
        warn_if_nan(loss, "loss")
        return loss

    def _backward_with_cv(self, terms: dict[str, Any]) -> None:
        params = terms["guide_params"]
        leaves = list(params.values())
        A = self._first_order_backward(terms["surrogate"], leaves)
        ghat, cv_params = list(A), []
        for estimator, data in terms["variance_terms"]:
            corrections, ps = estimator.variance_terms(data, params, self.num_particles)
            ghat = [g if c is None else g + c for g, c in zip(ghat, corrections)]
            cv_params.extend(ps)
        variance = cast(torch.Tensor, sum((g**2).sum() for g in ghat))  # ghat is not empty
        cv_params = list({id(p): p for p in cv_params}.values())
        cv_grads: Sequence[torch.Tensor | None] = []
        if cv_params and variance.requires_grad:
            cv_grads = torch.autograd.grad(
                variance, cv_params, allow_unused=True, retain_graph=bool(self.retain_graph)
            )
        # Accumulated through autograd rather than assigned to .grad, so that whatever wraps
        # the backward passes (loss scaling, gradient hooks) sees these terms as well.
        targets = leaves + [p for p, g in zip(cv_params, cv_grads) if g is not None]
        seeds = [(g - a).detach() for g, a in zip(ghat, A)] + [
            g.detach() for g in cv_grads if g is not None
        ]
        torch.autograd.backward(targets, seeds)

    @staticmethod
    def _first_order_backward(
        surrogate: torch.Tensor | float, leaves: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Backpropagates the surrogate and returns its gradient ``A`` per leaf (zeros where
        unused). ``A`` is taken with ``autograd.grad``, not read off ``.grad``: ``.grad`` may
        hold a scaled gradient (loss scaling seeds every backward pass with ``S``) and
        REBAR's variance is not linear in it."""
        if not (torch.is_tensor(surrogate) and surrogate.requires_grad):
            return [torch.zeros_like(p) for p in leaves]
        grads = torch.autograd.grad(surrogate, leaves, retain_graph=True, allow_unused=True)
        surrogate.backward(retain_graph=True)
        return [torch.zeros_like(p) if g is None else g.detach() for g, p in zip(grads, leaves)]


__all__ = ["DiscreteELBO"]
