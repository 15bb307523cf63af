"""
Shared machinery of the probnets gradient estimators: discrete sites and their noise,
log-densities at relaxed values, and Rao-Blackwellized downstream costs.

Every estimator here is an ELBO over an ordinary Pyro model and guide. Each guide sample
site gets one :class:`~probnets.infer.estimators.SiteEstimator` when it is drawn (see
:meth:`~probnets.infer.discrete_elbo.DiscreteELBO.plan`):

- the one named by ``site["infer"]["estimator"]``, which must accept the site;
- else pathwise if the distribution has ``rsample``;
- else the ELBO's default estimator if it accepts the site (DisARM: Bernoulli; REBAR,
  RELAX, relaxed: Bernoulli and ``OneHotCategorical``; score function: anything);
- else the score function, which takes any distribution with a ``log_prob``.

**Infer-dict keys** read at guide sample sites (all optional)::

    pyro.sample("z", dist.Bernoulli(logits=...), infer={
        "estimator": "score" | "relaxed" | "rebar" | "relax" | "disarm" | "reparameterized"
                     | a registered name | a SiteEstimator instance,   # overrides the ELBO's
        "temperature": 0.5,         # relaxed sites: overrides elbo.temperature
        "straight_through": False,  # relaxed sites: hard forward value, relaxed backward
        "baseline": {               # score-function sites (Pyro-compatible keys)
            "use_decaying_avg_baseline": True, "baseline_beta": 0.9,
            "nn_baseline": module, "nn_baseline_input": x,
            "baseline_value": tensor,   # per-datapoint, UNSCALED cost units
        },
    })

A site under ``poutine.mask`` (or with a masked distribution) contributes neither its
log-density nor a score term for its masked-out elements.

**Rao-Blackwellization.** As in Pyro's ``TraceGraph_ELBO``, the value of every
non-reparameterized guide site carries provenance
(:mod:`pyro.ops.provenance`); the downstream cost of a site is the sum of those log-density
terms (model ``+``, guide ``−``, scaled by plate subsampling) whose provenance contains
it, summed to the site's own vectorized plates. Elements of a plate only see their own
costs.

**Categorical sites and relaxations.** A relaxation of a categorical is a point on the
simplex. ``OneHotCategorical`` sites pass it downstream as is, and their log-density at a
relaxed value ``ẑ`` is the contraction ``Σ_k ẑ_k log π_k`` (for Bernoulli:
``ẑ log θ + (1 − ẑ) log(1 − θ)``): the multilinear extension of the discrete log-mass, exact
at the vertices. An integer-valued ``Categorical`` site cannot take a simplex value
without changing the model code that consumes it, so the relaxation-based estimators
(``relaxed``, ``rebar``, ``relax``) reject it with a ``ValueError``; use
``OneHotCategorical`` there, or ``"score"`` for that site.
"""

import numbers
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution
from pyro.distributions.util import scale_and_mask
from pyro.ops.provenance import detach_provenance, get_provenance
from pyro.poutine.indep_messenger import CondIndepStackFrame
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch.distributions import Distribution

from probnets.distributions import relaxed as R

#: The discrete site kinds of :func:`discrete_kind`.
DiscreteKind = Literal["bernoulli", "one_hot", "categorical"]
#: A relaxation temperature: a float, or a scalar tensor when it is learned.
Temperature = float | torch.Tensor
#: A key of :attr:`TraceCosts.terms`: ``("model" | "guide", site name)``.
TermKey = tuple[str, str]
_Discrete = (
    torch.distributions.Bernoulli
    | torch.distributions.OneHotCategorical
    | torch.distributions.Categorical
)

# ----------------------------------------------------------------------------------------
# distributions at discrete sites
# ----------------------------------------------------------------------------------------


def discrete_kind(fn: Distribution) -> DiscreteKind | None:
    """
    Returns ``"bernoulli"``, ``"one_hot"`` or ``"categorical"`` for a (possibly masked,
    expanded or ``to_event``-wrapped) discrete distribution, else ``None``.
    """
    while isinstance(
        fn, (MaskedDistribution, ExpandedDistribution, torch.distributions.Independent)
    ):
        fn = fn.base_dist
    if isinstance(fn, torch.distributions.Bernoulli):
        return "bernoulli"
    if isinstance(fn, torch.distributions.OneHotCategorical):
        return "one_hot"
    if isinstance(fn, torch.distributions.Categorical):
        return "categorical"
    return None


def discrete_logits(fn: Distribution) -> torch.Tensor:
    """
    Logits of a discrete site, broadcast to the shape of its value (with a trailing
    category dimension for integer ``Categorical`` sites). Gradients flow to the logits.
    """
    leaf = fn
    while isinstance(
        leaf, (MaskedDistribution, ExpandedDistribution, torch.distributions.Independent)
    ):
        leaf = leaf.base_dist
    logits = cast(_Discrete, leaf).logits
    shape = fn.batch_shape + fn.event_shape
    if isinstance(leaf, torch.distributions.Categorical):
        shape = shape + logits.shape[-1:]
    return logits.expand(shape)


def multilinear_log_prob(
    fn: Distribution, value: torch.Tensor, detach_params: bool = False
) -> torch.Tensor:
    """
    Log-density of a Bernoulli / one-hot categorical site at a possibly relaxed value:
    the multilinear extension ``ẑ log θ + (1 − ẑ) log(1 − θ)`` resp. ``Σ_k ẑ_k log π_k``,
    with the same masking and ``to_event`` summation as ``fn.log_prob``. Bypasses
    support validation on purpose: relaxed values lie inside the hypercube / simplex.
    ``detach_params`` keeps the dependence on ``value`` only.
    """
    if isinstance(fn, MaskedDistribution):
        lp = multilinear_log_prob(fn.base_dist, value, detach_params)
        return scale_and_mask(lp, mask=fn._mask)
    if isinstance(fn, torch.distributions.Independent):
        lp = multilinear_log_prob(fn.base_dist, value, detach_params)
        n = fn.reinterpreted_batch_ndims
        return lp.sum(tuple(range(-n, 0))) if n else lp
    if isinstance(fn, ExpandedDistribution):
        lp = multilinear_log_prob(fn.base_dist, value, detach_params)
        return lp.expand(torch.broadcast_shapes(lp.shape, fn.batch_shape))
    logits = cast(_Discrete, fn).logits
    logits = logits.detach() if detach_params else logits
    if isinstance(fn, torch.distributions.Bernoulli):
        logits, value = torch.broadcast_tensors(logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none")
    if isinstance(fn, torch.distributions.OneHotCategorical):
        return (value * logits.log_softmax(-1)).sum(-1)
    raise TypeError(
        "multilinear_log_prob expected fn to be a Bernoulli or OneHotCategorical "
        "(optionally masked / expanded / to_event), but got {}".format(type(fn).__name__)
    )


def site_batch_mask(site: Mapping[str, Any]) -> torch.Tensor | None:
    """
    The element mask of a site as a float tensor broadcastable to its batch shape, or
    ``None`` if nothing is masked. Combines ``poutine.mask`` and ``fn.mask(...)``.
    """
    masks = []
    if site["mask"] is not None:
        masks.append(site["mask"])
    fn = site["fn"]
    while isinstance(fn, (MaskedDistribution, ExpandedDistribution)):
        if isinstance(fn, MaskedDistribution):
            masks.append(fn._mask)
        fn = fn.base_dist
    out = None
    for m in masks:
        if m is True:
            continue
        m = torch.as_tensor(m, device=site["value"].device)
        out = m if out is None else out & m
    return None if out is None else out.to(site["value"].dtype)


def check_temperature(temperature: float | torch.Tensor, where: str) -> None:
    """Raises a ``TypeError`` / ``ValueError`` (prefixed by ``where``) unless
    ``temperature`` is a positive real number or a one-element tensor."""
    if isinstance(temperature, bool) or not isinstance(temperature, (numbers.Real, torch.Tensor)):
        raise TypeError(
            "{} expected temperature to be a positive float, but got {!r}".format(
                where, temperature
            )
        )
    if isinstance(temperature, torch.Tensor) and temperature.numel() != 1:
        raise ValueError(
            "{} expected a scalar temperature, but got shape {}".format(
                where, tuple(temperature.shape)
            )
        )
    if not float(temperature) > 0:
        raise ValueError(
            "{} expected temperature > 0, but got {}".format(where, float(temperature))
        )


# ----------------------------------------------------------------------------------------
# noise-based draws of discrete sites
# ----------------------------------------------------------------------------------------


def _reparam_noise(kind: DiscreteKind, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    if kind == "bernoulli":
        return R.bernoulli_logistic(logits, u)
    return R.categorical_gumbel(logits, u)


def _hard(kind: DiscreteKind, z: torch.Tensor) -> torch.Tensor:
    return R.bernoulli_hard(z) if kind == "bernoulli" else R.categorical_hard(z)


def _relax(kind: DiscreteKind, z: torch.Tensor, temperature: Temperature) -> torch.Tensor:
    if kind == "bernoulli":
        return R.relax_bernoulli(z, temperature)
    return R.relax_categorical(z, temperature)


def _conditional(
    kind: DiscreteKind, logits: torch.Tensor, b: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    if kind == "bernoulli":
        return R.bernoulli_conditional_logistic(logits, b, v)
    return R.categorical_conditional_gumbel(logits, b, v)


def logistic_or_gumbel(kind: DiscreteKind, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The reparameterized noise ``z(u, ℓ)`` of a Bernoulli (logistic) or categorical
    (Gumbel-max) site, whose hard threshold :func:`hard_value` is a sample of the site."""
    return _reparam_noise(kind, logits, u)


def hard_value(kind: DiscreteKind, z: torch.Tensor) -> torch.Tensor:
    """``H(z)``: ``1[z > 0]`` for a Bernoulli, the one-hot argmax for a categorical."""
    return _hard(kind, z)


def relaxed_value(kind: DiscreteKind, z: torch.Tensor, temperature: Temperature) -> torch.Tensor:
    """``σ_λ(z)``: the Concrete relaxation of ``H(z)`` at temperature ``λ``."""
    return _relax(kind, z, temperature)


def conditional_noise(
    kind: DiscreteKind, logits: torch.Tensor, b: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """``z̃ ~ p(z | H(z) = b)`` from uniform noise ``v``, differentiable in ``logits``."""
    return _conditional(kind, logits, b, v)


# ----------------------------------------------------------------------------------------
# log-densities and costs
# ----------------------------------------------------------------------------------------


def vectorized_frames(site: Mapping[str, Any]) -> frozenset[CondIndepStackFrame]:
    """The vectorized plates (``pyro.plate`` frames with a batch dim) the site lies in."""
    return frozenset(f for f in site["cond_indep_stack"] if f.vectorized)


def site_log_prob(
    site: Mapping[str, Any], relaxed: bool, detach_params: bool = False
) -> torch.Tensor:
    """
    Unscaled, masked log-density of a sample site summed over event dims; ``relaxed``
    selects the multilinear extension for sites whose value is relaxed.
    """
    if relaxed:
        lp = multilinear_log_prob(site["fn"], site["value"], detach_params)
    else:
        lp = site["fn"].log_prob(site["value"])
    return scale_and_mask(lp, mask=site["mask"])


def sum_to(
    costs: Iterable[tuple[Collection[CondIndepStackFrame], torch.Tensor]],
    target_frames: Collection[CondIndepStackFrame],
) -> torch.Tensor | float:
    """
    Sums ``(frames, tensor)`` cost terms over every plate not in ``target_frames``,
    keeping dims, and adds them up (broadcasting).
    """
    total: torch.Tensor | float = 0.0
    for frames, value in costs:
        for f in frames:
            assert f.dim is not None  # vectorized plates only
            if f not in target_frames and value.dim() >= -f.dim and value.shape[f.dim] != 1:
                value = value.sum(f.dim, keepdim=True)
        total = total + value
    return total


class TraceCosts:
    """
    Log-density terms of one (model, guide) trace pair.

    Attributes: ``elbo`` (scalar tensor, scaled and summed), ``model_lp`` and
    ``guide_lp`` (name -> unscaled masked log-density), ``terms`` (``(side, name)`` ->
    ``(frames, scaled cost)`` with model terms ``+`` and guide terms ``−``), and
    ``dependents`` (site name -> keys of ``terms`` whose provenance contains it; only the
    first pass tracks provenance, later passes reuse its dependency structure).
    Guide sites in ``frozen`` are scored with detached distribution parameters.
    """

    def __init__(
        self,
        model_trace: Trace,
        guide_trace: Trace,
        relaxed_names: Collection[str],
        frozen: Collection[str] = (),
    ) -> None:
        self.model_trace = model_trace
        self.guide_trace = guide_trace
        self.model_lp: dict[str, torch.Tensor] = {}
        self.guide_lp: dict[str, torch.Tensor] = {}
        self.terms: dict[TermKey, tuple[frozenset[CondIndepStackFrame], torch.Tensor]] = {}
        self.dependents: dict[str, list[TermKey]] = {}
        elbo: torch.Tensor | float = 0.0
        for side, trace, sign, store in (
            ("model", model_trace, 1.0, self.model_lp),
            ("guide", guide_trace, -1.0, self.guide_lp),
        ):
            for name, site in trace.nodes.items():
                if site["type"] != "sample" or site_is_subsample(site):
                    continue
                relaxed = name in relaxed_names and not site["is_observed"]
                lp = site_log_prob(site, relaxed, side == "guide" and name in frozen)
                provenance = get_provenance(lp)
                lp = detach_provenance(lp)
                store[name] = lp
                cost = sign * scale_and_mask(lp, site["scale"])
                self.terms[side, name] = (vectorized_frames(site), cost)
                for key in provenance:
                    self.dependents.setdefault(key, []).append((side, name))
                elbo = elbo + cost.sum()
        self.elbo = elbo if isinstance(elbo, torch.Tensor) else torch.tensor(float(elbo))

    def signature(self) -> tuple[tuple[str, str, tuple[int, ...], bool], ...]:
        """The structure of the traces: ``(side, name, shape, observed)`` of every sample
        site in execution order. Equal signatures mean the same sites with the same shapes;
        with control flow that does not branch on sampled values they also mean the same
        dependency structure (see ``cache_dependencies`` of
        :class:`~probnets.infer.discrete_elbo.DiscreteELBO`)."""
        return tuple(
            (side, name, tuple(cast(torch.Tensor, site["value"]).shape), site["is_observed"])
            for side, trace in (("guide", self.guide_trace), ("model", self.model_trace))
            for name, site in trace.nodes.items()
            if site["type"] == "sample"
        )

    def downstream_cost(
        self, name: str, dependents: Mapping[str, list[TermKey]] | None = None
    ) -> torch.Tensor | float:
        """
        Rao-Blackwellized cost of site ``name``, summed to its plates: the terms listed in
        ``dependents`` (default: this pass's own provenance).
        """
        if dependents is None:
            dependents = self.dependents
        keys = dependents.get(name, [])
        site = self.guide_trace.nodes[name]
        return sum_to([self.terms[k] for k in keys if k in self.terms], vectorized_frames(site))


def expand_to_site(tensor: torch.Tensor | float, site: Mapping[str, Any]) -> torch.Tensor:
    """Broadcasts a per-element tensor to the site's batch shape (right-aligned)."""
    shape = site["fn"].batch_shape
    if not isinstance(tensor, torch.Tensor):  # a number
        return site["value"].new_full(shape, tensor)
    while tensor.dim() > len(shape) and tensor.shape[0] == 1:
        tensor = tensor.squeeze(0)
    return tensor.expand(torch.broadcast_shapes(tensor.shape, shape))


def param_leaves(*traces: Trace) -> dict[str, torch.Tensor]:
    """Unconstrained leaf tensors of all param sites in the traces, deduplicated, in order."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for trace in traces:
        for name, site in trace.nodes.items():
            if site["type"] != "param":
                continue
            value: Any = site["value"]  # a tensor, constrained ones with .unconstrained()
            leaf = value.unconstrained() if hasattr(value, "unconstrained") else value
            if leaf.requires_grad and id(leaf) not in seen:
                seen.add(id(leaf))
                out[name] = leaf
    return out
