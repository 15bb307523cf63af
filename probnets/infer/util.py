"""
Shared machinery of the probnets gradient estimators: tracing passes, per-site
classification, log-densities at relaxed values, and Rao-Blackwellized downstream costs.

Every estimator here is an ELBO over an ordinary Pyro model and guide. A guide sample
site is classified when it is drawn:

- reparameterized (``fn.has_rsample``): pathwise gradient, always;
- ``Bernoulli``, ``Categorical`` or ``OneHotCategorical`` without ``rsample``: the estimator
  named by ``site["infer"].get("estimator", elbo_default)``;
- anything else that cannot be reparameterized: ``ValueError``.

**Infer-dict keys** read at guide sample sites (all optional)::

    pyro.sample("z", dist.Bernoulli(logits=...), infer={
        "estimator": "score" | "relaxed" | "rebar" | "relax" | "disarm",   # overrides the ELBO's
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

import torch
import torch.nn.functional as F
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution
from pyro.distributions.util import scale_and_mask
from pyro.ops.provenance import detach_provenance, get_provenance, track_provenance
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from probnets.distributions import relaxed as R

ESTIMATORS = ("score", "relaxed", "rebar", "relax", "disarm")
RELAXING_ESTIMATORS = ("relaxed", "rebar", "relax")


# ----------------------------------------------------------------------------------------
# distributions at discrete sites
# ----------------------------------------------------------------------------------------


def discrete_kind(fn):
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


def discrete_logits(fn):
    """
    Logits of a discrete site, broadcast to the shape of its value (with a trailing
    category dimension for integer ``Categorical`` sites). Gradients flow to the logits.
    """
    leaf = fn
    while isinstance(
        leaf, (MaskedDistribution, ExpandedDistribution, torch.distributions.Independent)
    ):
        leaf = leaf.base_dist
    logits = leaf.logits
    shape = fn.batch_shape + fn.event_shape
    if isinstance(leaf, torch.distributions.Categorical):
        shape = shape + logits.shape[-1:]
    return logits.expand(shape)


def multilinear_log_prob(fn, value, detach_params=False):
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
    logits = fn.logits.detach() if detach_params else fn.logits
    if isinstance(fn, torch.distributions.Bernoulli):
        logits, value = torch.broadcast_tensors(logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none")
    if isinstance(fn, torch.distributions.OneHotCategorical):
        return (value * logits.log_softmax(-1)).sum(-1)
    raise TypeError(
        "multilinear_log_prob expected fn to be a Bernoulli or OneHotCategorical "
        "(optionally masked / expanded / to_event), but got {}".format(type(fn).__name__)
    )


def site_batch_mask(site):
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


def check_temperature(temperature, where):
    if isinstance(temperature, bool) or not isinstance(
        temperature, (numbers.Real, torch.Tensor)
    ):
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
# per-site record and the guide-side messenger
# ----------------------------------------------------------------------------------------


def _reparam_noise(kind, logits, u):
    if kind == "bernoulli":
        return R.bernoulli_logistic(logits, u)
    return R.categorical_gumbel(logits, u)


def _hard(kind, z):
    return R.bernoulli_hard(z) if kind == "bernoulli" else R.categorical_hard(z)


def _relax(kind, z, temperature):
    if kind == "bernoulli":
        return R.relax_bernoulli(z, temperature)
    return R.relax_categorical(z, temperature)


def _conditional(kind, logits, b, v):
    if kind == "bernoulli":
        return R.bernoulli_conditional_logistic(logits, b, v)
    return R.categorical_conditional_gumbel(logits, b, v)


class SiteRecord:
    """
    What a guide pass decided at one discrete site: the estimator, the noise ``u`` (and
    ``v`` for REBAR/RELAX) and the value handed to the rest of the program.
    """

    def __init__(self, name, kind, estimator):
        self.name = name
        self.kind = kind
        self.estimator = estimator
        self.u = None
        self.v = None
        self.logits = None
        self.hard = None  # hard sample, one-hot for categorical kinds
        self.relaxed_value = False  # whether the value handed on is relaxed (incl. ST)
        self.temperature = None
        self.straight_through = False


class GuidePass(Messenger):
    """
    Draws the guide's non-reparameterized discrete sites with explicit noise.

    ``mode="hard"``: the first pass. Score / REBAR / RELAX / DisARM sites get a hard sample
    ``b = H(z(u))`` with provenance ``{name}``; relaxed sites get ``σ_λ(z(u))`` (or its
    straight-through version). Records noise so later passes can reuse it.

    ``mode in ("relaxed", "conditional", "antithetic")``: a pass for one ``target`` site.
    Sites drawn before it replay their first-pass values; the target gets
    ``σ_λ(z)``, ``σ_λ(z̃)`` or the antithetic hard sample ``H(z(1 − u))``; discrete sites after
    it are recomputed from their recorded noise under the new upstream values (relaxed
    at ``temperature`` in the relaxed passes so the control variate stays continuous in
    ``z``; hard in the antithetic pass); continuous sites after it are redrawn.
    """

    def __init__(self, elbo, mode="hard", first=None, target=None, temperature=None,
                 track=True):
        super().__init__()
        self.elbo = elbo
        self.mode = mode
        self.track = track  # tag first-pass values with provenance
        self.first = first  # the first pass: its records, site order and values
        self.records = {} if first is None else first.records
        self.target = target
        self.temperature = temperature
        self.order = {}
        self.values = {}
        self.relaxed = set()  # names whose value this pass relaxed
        # In the relaxed passes the target's own log q(σ_λ(z)) is a function of the value
        # only: its direct θ-dependence has zero mean and would only add noise to ∇c.
        self.frozen = {target} if mode in ("relaxed", "conditional") else set()

    def _pyro_sample(self, msg):
        if site_is_subsample(msg):
            # later passes must see the first pass's minibatch
            if self.mode != "hard" and msg["name"] in self.first.values:
                msg["value"] = self.first.values[msg["name"]]
                msg["done"] = True
            return
        if msg["is_observed"]:
            return
        if self.mode == "hard":
            self.order[msg["name"]] = len(self.order)
            return self._hard(msg)
        return self._pass(msg)

    def _pyro_post_sample(self, msg):
        if self.mode == "hard" and (site_is_subsample(msg) or not msg["is_observed"]):
            self.values[msg["name"]] = detach_provenance(msg["value"])

    # first pass ------------------------------------------------------------------------

    def _hard(self, msg):
        fn = msg["fn"]
        kind = discrete_kind(fn)
        if getattr(fn, "has_rsample", False) and kind is None:
            return
        if kind is None:
            raise ValueError(
                "site '{}': {} is neither reparameterizable nor one of Bernoulli, "
                "Categorical, OneHotCategorical, so no estimator here can "
                "differentiate through it".format(msg["name"], type(fn).__name__)
            )
        estimator = self.elbo._site_estimator(msg, kind)
        rec = SiteRecord(msg["name"], kind, estimator)
        logits = discrete_logits(fn)
        rec.logits = detach_provenance(logits)
        rec.u = torch.rand(logits.shape, dtype=logits.dtype, device=logits.device)
        # the first-pass value keeps the provenance of its logits: a cost that depends on
        # this value depends on every upstream site its distribution depends on
        z = _reparam_noise(kind, logits, rec.u)
        hard = _hard(kind, z.detach())
        rec.hard = detach_provenance(hard)
        if estimator == "relaxed":
            rec.temperature = self.elbo._site_temperature(msg)
            rec.straight_through = bool(
                msg["infer"].get("straight_through", self.elbo._straight_through)
            )
            value = _relax(kind, z, rec.temperature)
            if rec.straight_through:
                value = rec.hard + value - value.detach()
            rec.relaxed_value = True
            self.relaxed.add(msg["name"])
        else:
            value = hard
            if kind == "categorical":
                value = value.argmax(-1)
            if estimator in ("rebar", "relax"):
                rec.v = torch.rand(logits.shape, dtype=logits.dtype, device=logits.device)
            if self.track:
                value = track_provenance(value, frozenset({msg["name"]}))
        self.records[msg["name"]] = rec
        msg["value"] = value
        msg["done"] = True

    # later passes ----------------------------------------------------------------------

    def _pass(self, msg):
        name = msg["name"]
        target = self.records[self.target]
        rec = self.records.get(name)
        order = self.first.order
        if name in order and order[name] < order[target.name]:
            msg["value"] = self.first.values[name]
            msg["done"] = True
            if rec is not None and rec.relaxed_value:
                self.relaxed.add(name)
            return
        if rec is None:
            kind = discrete_kind(msg["fn"])
            if kind is not None and not getattr(msg["fn"], "has_rsample", False):
                raise ValueError(
                    "site '{}' appeared in a {} pass for site '{}' but not in the first "
                    "pass; the estimators need static structure downstream of a "
                    "REBAR / RELAX / DisARM site".format(name, self.mode, target.name)
                )
            return  # continuous downstream site: redrawn
        logits = discrete_logits(msg["fn"])
        kind = rec.kind
        if name == target.name:
            if self.mode == "relaxed":
                value = _relax(kind, _reparam_noise(kind, logits, rec.u), self.temperature)
            elif self.mode == "conditional":
                z = _conditional(kind, logits, rec.hard, rec.v)
                value = _relax(kind, z, self.temperature)
            else:  # antithetic
                value = R.bernoulli_hard(R.bernoulli_logistic(logits, 1 - rec.u))
            if self.mode != "antithetic":
                self.relaxed.add(name)
        elif self.mode in ("relaxed", "conditional"):
            if kind == "categorical":
                raise ValueError(
                    "site '{}' is an integer Categorical downstream of {} site '{}'; its "
                    "control variate needs a continuous relaxation of every discrete "
                    "site after it. Use OneHotCategorical for '{}'".format(
                        name, target.estimator.upper(), target.name, name
                    )
                )
            value = _relax(kind, _reparam_noise(kind, logits, rec.u), self.temperature)
            self.relaxed.add(name)
        else:
            z = _reparam_noise(kind, logits, rec.u)
            hard = _hard(kind, z.detach())
            if rec.estimator == "relaxed":
                value = _relax(kind, z, rec.temperature)
                if rec.straight_through:
                    value = hard + value - value.detach()
                self.relaxed.add(name)
            else:
                value = hard.argmax(-1) if kind == "categorical" else hard
        msg["value"] = value
        msg["done"] = True


# ----------------------------------------------------------------------------------------
# log-densities and costs
# ----------------------------------------------------------------------------------------


def vectorized_frames(site):
    return frozenset(f for f in site["cond_indep_stack"] if f.vectorized)


def site_log_prob(site, relaxed, detach_params=False):
    """
    Unscaled, masked log-density of a sample site summed over event dims; ``relaxed``
    selects the multilinear extension for sites whose value is relaxed.
    """
    if relaxed:
        lp = multilinear_log_prob(site["fn"], site["value"], detach_params)
    else:
        lp = site["fn"].log_prob(site["value"])
    return scale_and_mask(lp, mask=site["mask"])


def sum_to(costs, target_frames):
    """
    Sums ``(frames, tensor)`` cost terms over every plate not in ``target_frames``,
    keeping dims, and adds them up (broadcasting).
    """
    total = 0.0
    for frames, value in costs:
        for f in frames:
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

    def __init__(self, model_trace, guide_trace, relaxed_names, frozen=()):
        self.model_trace = model_trace
        self.guide_trace = guide_trace
        self.model_lp, self.guide_lp = {}, {}
        self.terms = {}
        self.dependents = {}
        elbo = 0.0
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

    def signature(self):
        """The structure of the traces: ``(side, name, shape, observed)`` of every sample
        site in execution order. Equal signatures mean the same sites with the same shapes;
        with control flow that does not branch on sampled values they also mean the same
        dependency structure (see ``cache_dependencies`` of
        :class:`~probnets.infer.discrete_elbo.DiscreteELBO`)."""
        return tuple(
            (side, name, tuple(site["value"].shape), site["is_observed"])
            for side, trace in (("guide", self.guide_trace), ("model", self.model_trace))
            for name, site in trace.nodes.items()
            if site["type"] == "sample"
        )

    def downstream_cost(self, name, dependents=None):
        """
        Rao-Blackwellized cost of site ``name``, summed to its plates: the terms listed in
        ``dependents`` (default: this pass's own provenance).
        """
        if dependents is None:
            dependents = self.dependents
        keys = dependents.get(name, [])
        site = self.guide_trace.nodes[name]
        return sum_to([self.terms[k] for k in keys if k in self.terms], vectorized_frames(site))


def expand_to_site(tensor, site):
    """Broadcasts a per-element tensor to the site's batch shape (right-aligned)."""
    shape = site["fn"].batch_shape
    if isinstance(tensor, numbers.Number):
        return site["value"].new_full(shape, tensor)
    while tensor.dim() > len(shape) and tensor.shape[0] == 1:
        tensor = tensor.squeeze(0)
    return tensor.expand(torch.broadcast_shapes(tensor.shape, shape))


def param_leaves(*traces):
    """Unconstrained leaf tensors of all param sites in the traces, deduplicated, in order."""
    out, seen = {}, set()
    for trace in traces:
        for name, site in trace.nodes.items():
            if site["type"] != "param":
                continue
            value = site["value"]
            leaf = value.unconstrained() if hasattr(value, "unconstrained") else value
            if leaf.requires_grad and id(leaf) not in seen:
                seen.add(id(leaf))
                out[name] = leaf
    return out
