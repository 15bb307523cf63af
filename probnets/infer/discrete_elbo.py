"""
The per-site estimator engine shared by :class:`ScoreFunction_ELBO`,
:class:`Relaxed_ELBO`, :class:`REBAR_ELBO`, :class:`RELAX_ELBO` and :class:`DisARM_ELBO`.

One call draws the guide once (the *first pass*, see :class:`~probnets.infer.util.GuidePass`),
replays the model against it, and builds a surrogate whose gradient is

    Σ pathwise terms                                  (reparameterized and relaxed sites)
  + Σ_{score sites s}   (F_s − b_s) ∇ log q(b_s)          (REINFORCE, Rao-Blackwellized)
  + Σ_{DisARM sites s}  ĝ_{α_s} ∇ α_s                     (antithetic pass per site)
  + Σ_{REBAR/RELAX s}   F_s ∇ log q(b_s) − [c_s(z̃_s) ∇ log q(b_s) − ∇c_s(z_s) + ∇c_s(z̃_s)]

where ``F_s`` is the downstream cost of ``s``. Only the terms whose site requested the
estimator are built, so a model can mix estimators site by site.

The subclasses differ only in their default estimator and hyper-parameters; they are
thin so each carries its own documentation.
"""

import math

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO
from pyro.ops.provenance import detach_provenance
from pyro.util import get_rng_state, set_rng_state, warn_if_nan

from probnets.infer.baselines import Baselines, flatten_event, mlp
from probnets.infer.util import (
    ESTIMATORS,
    RELAXING_ESTIMATORS,
    GuidePass,
    TraceCosts,
    check_temperature,
    expand_to_site,
    param_leaves,
    site_batch_mask,
)


class DiscreteELBO(ELBO):
    """
    Base class: an ELBO whose non-reparameterized Bernoulli / categorical guide sites are
    differentiated by a per-site estimator (see :mod:`probnets.infer.util` for the infer
    keys). Particles are always vectorized over an outermost plate.

    :param int num_particles: number of vectorized particles.
    :param int max_plate_nesting: optional bound on plate nesting (guessed if omitted).
    :param str estimator: default estimator for discrete guide sites.
    :param baseline: ScoreFunction baseline: ``None``, ``"decaying_avg"``, ``"nvil"``, ``"loo"``.
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
        are downstream of which discrete site) found by provenance tracking on an earlier
        step whose traces had the same sites and shapes, instead of tracking provenance
        again. Provenance makes every tensor operation after the first discrete sample go
        through a ``__torch_function__`` wrapper and pytree flattening, about a third of a
        score-function step of AIR. Valid when the program's control flow does not branch
        on sampled values (presence handled by masking, a fixed number of steps, as in
        :class:`~probnets.models.air.AIR`); a branch that changes which sites run changes
        the signature and triggers tracking again, but a branch that only changes which
        tensors feed which site, with the same sites and shapes, would go unnoticed.
        When the signature is new, the same draw is run again with tracking (random state
        rewound), so the estimator stays unbiased; a guide or model with other side effects
        (e.g. batch-norm statistics) would see them twice on such a step.
    """

    default_estimator = "score"

    def __init__(
        self,
        num_particles=1,
        max_plate_nesting=float("inf"),
        estimator=None,
        baseline=None,
        baseline_beta=0.9,
        temperature=None,
        straight_through=False,
        init_temperature=0.5,
        learn_temperature=True,
        init_eta=1.0,
        learn_eta=True,
        relax_rebar_cv=True,
        hidden_size=100,
        cache_dependencies=False,
    ):
        if not isinstance(num_particles, int) or num_particles < 1:
            raise ValueError(
                "num_particles must be a positive int, but got {!r}".format(num_particles)
            )
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
        )
        estimator = self.default_estimator if estimator is None else estimator
        if estimator not in ESTIMATORS:
            raise ValueError(
                "estimator must be one of {}, but got {!r}".format(ESTIMATORS, estimator)
            )
        self.default_estimator = estimator
        if temperature is not None:
            check_temperature(temperature, type(self).__name__)
        self.temperature = temperature
        self._straight_through = straight_through
        check_temperature(init_temperature, "init_temperature of " + type(self).__name__)
        self.init_temperature = float(init_temperature)
        self.learn_temperature = learn_temperature
        self.init_eta = float(init_eta)
        self.learn_eta = learn_eta
        self.relax_rebar_cv = relax_rebar_cv
        self.hidden_size = hidden_size
        self.baselines = Baselines(baseline, baseline_beta, hidden_size)
        self.surrogates = {}  # RELAX networks, one per site
        self.cache_dependencies = bool(cache_dependencies)
        self._dependencies = {}  # trace signature -> dependents, see cache_dependencies

    # site classification ---------------------------------------------------------------

    def _site_estimator(self, msg, kind):
        estimator = msg["infer"].get("estimator", self.default_estimator)
        if estimator == "vimco":
            raise ValueError(
                "site '{}': 'vimco' is a multi-sample bound over all sites, not a per-site "
                "estimator; use VIMCO_ELBO(num_particles=K)".format(msg["name"])
            )
        if estimator not in ESTIMATORS:
            raise ValueError(
                "site '{}': infer['estimator'] must be one of {}, but got {!r}".format(
                    msg["name"], ESTIMATORS, estimator
                )
            )
        if estimator in RELAXING_ESTIMATORS and kind == "categorical":
            raise ValueError(
                "site '{}': the {} estimator relaxes the value to a point on the simplex, "
                "which an integer-valued Categorical cannot hold; use OneHotCategorical "
                "(relaxed one-hot values are passed downstream and scored by contraction "
                "with the log-probs) or infer={{'estimator': 'score'}}".format(
                    msg["name"], estimator
                )
            )
        if estimator == "disarm" and kind != "bernoulli":
            raise ValueError(
                "site '{}': DisARM handles Bernoulli sites only, but the site is {}; use "
                "infer={{'estimator': 'score'}} (or 'rebar' / 'relax' for "
                "OneHotCategorical) for it".format(msg["name"], kind)
            )
        return estimator

    def _site_temperature(self, msg):
        temperature = msg["infer"].get("temperature", self.temperature)
        if temperature is None:
            raise ValueError(
                "site '{}' uses the relaxed estimator but has no temperature: pass "
                "temperature=... to {} or set infer={{'temperature': ...}} at the "
                "site".format(msg["name"], type(self).__name__)
            )
        check_temperature(temperature, "site '{}'".format(msg["name"]))
        return temperature

    # passes ----------------------------------------------------------------------------

    def _wrap(self, model, guide, args, kwargs):
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        return self._vectorized_num_particles(model), self._vectorized_num_particles(guide)

    def _run(self, model, guide, args, kwargs, guide_pass):
        guide_trace = poutine.trace(guide_pass(guide)).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        return TraceCosts(model_trace, guide_trace, guide_pass.relaxed, guide_pass.frozen)

    def _first_pass(self, model, guide, args, kwargs):
        """The hard first pass and its costs, with the dependency structure from provenance
        or, with ``cache_dependencies``, from an earlier pass of the same signature."""
        if self.cache_dependencies and self._dependencies:
            rng = get_rng_state()
            cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
            first = GuidePass(self, "hard", track=False)
            costs = self._run(model, guide, args, kwargs, first)
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
        first = GuidePass(self, "hard")
        costs = first.costs = self._run(model, guide, args, kwargs, first)
        if self.cache_dependencies:
            self._dependencies[costs.signature()] = costs.dependents
        return first, costs

    def _get_trace(self, model, guide, args, kwargs):
        first = GuidePass(self, "hard")
        costs = self._run(model, guide, args, kwargs, first)
        return costs.model_trace, costs.guide_trace

    def _particle_dim(self):
        return -self.max_plate_nesting

    # the estimator ---------------------------------------------------------------------

    def _terms(self, model, guide, args, kwargs, build_cv=True):
        """
        Runs all passes. Returns a dict with ``elbo`` (particle-averaged estimate),
        ``surrogate`` (a loss whose gradient is the estimator without the REBAR/RELAX
        control-variate terms, plus baseline regression losses) and ``cv`` (per
        REBAR/RELAX site: ``logq``, ``c_z``, ``c_zt``), ``guide_params``.
        """
        model, guide = self._wrap(model, guide, args, kwargs)
        first, costs = self._first_pass(model, guide, args, kwargs)
        K = self.num_particles
        surrogate_elbo = 0.0
        baseline_loss = 0.0
        for name, lp in costs.model_lp.items():
            surrogate_elbo = surrogate_elbo + (lp * costs.model_trace.nodes[name]["scale"]).sum()
        cv = {}
        has_cv_sites = False
        for name, lp in costs.guide_lp.items():
            site = costs.guide_trace.nodes[name]
            rec = first.records.get(name)
            if rec is None or rec.estimator == "relaxed":
                # pathwise: the entropy term is differentiated through the value
                surrogate_elbo = surrogate_elbo - (lp * site["scale"]).sum()
                continue
            cost = expand_to_site(costs.downstream_cost(name), site)
            if rec.estimator == "score":
                baseline, loss = self.baselines(site, rec.logits, cost, K, self._particle_dim())
                baseline_loss = baseline_loss + loss
                surrogate_elbo = surrogate_elbo + (lp * (cost - baseline).detach()).sum()
            elif rec.estimator == "disarm":
                surrogate_elbo = surrogate_elbo + self._disarm_term(
                    model, guide, args, kwargs, first, site, rec, cost
                )
            else:
                has_cv_sites = True
                surrogate_elbo = surrogate_elbo + (lp * cost.detach()).sum()
                if build_cv:
                    cv[name] = self._cv_terms(model, guide, args, kwargs, first, site, rec, lp)
        return {
            "elbo": costs.elbo / K,
            "surrogate": -surrogate_elbo / K + baseline_loss,
            "cv": cv,
            "has_cv_sites": has_cv_sites,
            "guide_params": param_leaves(costs.guide_trace),
        }

    def _disarm_term(self, model, guide, args, kwargs, first, site, rec, cost):
        """
        DisARM (Dong, Mnih, Tucker 2020, eq. 6) for logits ``α`` of site ``s``:
        ``ĝ_α = ½ (f(b) − f(b̃)) (−1)^{b̃} 1[b ≠ b̃] σ(|α|)`` with ``b̃ = H(z(1 − u))``.
        """
        with poutine.block():
            anti = GuidePass(self, "antithetic", first, site["name"])
            anti_costs = self._run(model, guide, args, kwargs, anti)
        anti_site = anti_costs.guide_trace.nodes[site["name"]]
        f_anti = expand_to_site(
            anti_costs.downstream_cost(site["name"], first.costs.dependents), site
        )
        b, b_anti = rec.hard, anti_site["value"].detach()
        alpha = rec.logits
        event_dims = alpha.dim() - len(site["fn"].batch_shape)
        diff = (cost - f_anti).detach().reshape(cost.shape + (1,) * event_dims)
        sign = 1.0 - 2.0 * b_anti
        weight = 0.5 * diff * sign * (b != b_anti).to(alpha.dtype) * torch.sigmoid(alpha.abs())
        mask = site_batch_mask(site)
        if mask is not None:
            weight = weight * mask.reshape(mask.shape + (1,) * event_dims)
        return (weight.detach() * alpha).sum()

    def _cv_terms(self, model, guide, args, kwargs, first, site, rec, lp):
        """
        The two relaxed passes of a REBAR / RELAX site ``s``: ``c_s(σ_λ(z))`` and
        ``c_s(σ_λ(z̃))`` with shared noise for every other random choice (the RNG is
        rewound between the passes so continuous downstream sites get the same draws).
        """
        name = site["name"]
        like = rec.logits
        prefix = "cv.{}.".format(rec.estimator)
        log_t = pyro.param(
            prefix + "log_temperature." + name,
            lambda: like.new_tensor(math.log(self.init_temperature)).detach(),
        )
        if not self.learn_temperature:
            log_t = log_t.detach()
        temperature = log_t.exp()
        rng = get_rng_state()  # CPU torch, python and numpy generators
        cuda_rng = torch.cuda.get_rng_state(like.device) if like.is_cuda else None
        out = {"logq": lp, "estimator": rec.estimator, "site": site}
        values = {}
        for mode, key in (("relaxed", "c_z"), ("conditional", "c_zt")):
            set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state(cuda_rng, like.device)
            with poutine.block():
                p = GuidePass(self, mode, first, name, temperature)
                pass_costs = self._run(model, guide, args, kwargs, p)
            out[key] = expand_to_site(
                pass_costs.downstream_cost(name, first.costs.dependents), site
            )
            values[key] = detach_provenance(pass_costs.guide_trace.nodes[name]["value"])
        if rec.estimator == "relax":
            net = self.surrogates.get(name)
            batch_shape = site["fn"].batch_shape
            logits_in = flatten_event(rec.logits.detach(), batch_shape)
            if net is None:
                net = mlp(2 * logits_in.shape[-1], self.hidden_size, like)
                self.surrogates[name] = net
            pyro.module(prefix + "surrogate." + name, net, update_module_params=True)
            if self.relax_rebar_cv:
                eta = pyro.param(
                    prefix + "eta." + name, lambda: like.new_tensor(self.init_eta).detach()
                )
            for key in ("c_z", "c_zt"):
                x = torch.cat([flatten_event(values[key], batch_shape), logits_in], -1)
                c = site["scale"] * net(x).squeeze(-1)
                if self.relax_rebar_cv:
                    c = c + eta * out[key]
                out[key] = c
        return out

    def state_dict(self):
        """Non-parameter state (baseline running moments, temperature) for checkpoints."""
        return {"baselines": self.baselines.state_dict(), "temperature": self.temperature}

    def load_state_dict(self, state):
        self.baselines.load_state_dict(state["baselines"])
        self.temperature = state["temperature"]

    # Pyro ELBO interface ----------------------------------------------------------------

    def loss(self, model, guide, *args, **kwargs):
        """
        :returns: an estimate of the negative ELBO (``num_particles`` samples).
        :rtype: float
        """
        with torch.no_grad(), poutine.block(hide_types=["param"]):
            model, guide = self._wrap(model, guide, args, kwargs)
            costs = self._run(model, guide, args, kwargs, GuidePass(self, "hard"))
        loss = -costs.elbo.item() / self.num_particles
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """
        A scalar whose value is the negative ELBO estimate and whose gradient is the
        estimator (plus baseline regression losses). Not available when a site uses REBAR
        or RELAX: their control-variate parameters descend the gradient *variance*, which
        no scalar loss expresses; use :meth:`loss_and_grads`.
        """
        terms = self._terms(model, guide, args, kwargs, build_cv=False)
        self._reject_cv(terms, "differentiable_loss")
        surrogate = terms["surrogate"]
        return -terms["elbo"].detach() + (surrogate - surrogate.detach())

    def _reject_cv(self, terms, what):
        if terms["has_cv_sites"]:
            raise NotImplementedError(
                "{}.{} is not available when a site uses REBAR or RELAX: their "
                "control-variate parameters descend the gradient variance; use "
                "loss_and_grads".format(type(self).__name__, what)
            )

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """
        Leaves in ``.grad`` the estimated gradient of the negative ELBO for model and guide
        params, the baseline regression gradient for baseline params, and, for REBAR/RELAX
        control-variate params (``cv.*``), the gradient of the single-sample gradient
        variance ``Σ_P ‖ĝ_P‖²`` over guide params ``P`` (second-order autograd).

        :returns: an estimate of the negative ELBO.
        :rtype: float
        """
        terms = self._terms(model, guide, args, kwargs)
        if not terms["cv"]:
            terms["surrogate"].backward()
        else:
            self._backward_with_cv(terms)
        loss = -terms["elbo"].item()
        warn_if_nan(loss, "loss")
        return loss

    def _backward_with_cv(self, terms):
        K = self.num_particles
        params = [p for p in terms["guide_params"].values()]
        names = list(terms["guide_params"].keys())
        # A is taken with autograd.grad, not read off .grad: .grad may hold a scaled gradient
        # (loss scaling seeds every backward pass with S) and REBAR's variance is not linear.
        A = torch.autograd.grad(terms["surrogate"], params, retain_graph=True, allow_unused=True)
        A = [g.detach() if g is not None else torch.zeros_like(p) for g, p in zip(A, params)]
        terms["surrogate"].backward(retain_graph=True)

        def cv_grad(estimator):
            # gradient of the negative ELBO's control-variate part:
            #   c(z̃) ∇log q(b) − ∇c(z) + ∇c(z̃)    (all divided by K)
            sites = [t for t in terms["cv"].values() if t["estimator"] == estimator]
            if not sites:
                return None
            # fully masked sites have constant terms: nothing to differentiate
            outputs, grad_outputs = [], []
            for t in sites:
                if t["logq"].requires_grad:
                    outputs.append(t["logq"])
                    grad_outputs.append(t["c_zt"].expand_as(t["logq"]) / K)
                diff = (t["c_zt"] - t["c_z"]).sum() / K
                if diff.requires_grad:
                    outputs.append(diff)
                    grad_outputs.append(torch.ones_like(diff))
            if not outputs:
                return [torch.zeros_like(p) for p in params]
            grads = torch.autograd.grad(
                outputs, params, grad_outputs, create_graph=True, retain_graph=True,
                allow_unused=True,
            )
            return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]

        rebar, relax = cv_grad("rebar"), cv_grad("relax")
        ghat = list(A)
        cv_params = []
        if rebar is not None:
            for i, (name, p) in enumerate(zip(names, params)):
                eta = pyro.param(
                    "cv.rebar.eta." + name, lambda p=p: p.new_tensor(self.init_eta)
                )
                if not self.learn_eta:
                    eta = eta.detach()
                else:
                    cv_params.append(eta.unconstrained())
                ghat[i] = ghat[i] + eta * rebar[i]
        if relax is not None:
            ghat = [g + r for g, r in zip(ghat, relax)]
        variance = sum((g ** 2).sum() for g in ghat)
        for name in terms["cv"]:
            est = terms["cv"][name]["estimator"]
            store = pyro.get_param_store()
            if self.learn_temperature:
                cv_params.append(
                    store["cv.{}.log_temperature.{}".format(est, name)].unconstrained()
                )
            if est == "relax":
                cv_params.extend(self.surrogates[name].parameters())
                if self.relax_rebar_cv:
                    cv_params.append(store["cv.relax.eta." + name].unconstrained())
        cv_params = list({id(p): p for p in cv_params}.values())
        cv_grads = torch.autograd.grad(variance, cv_params, allow_unused=True) if cv_params else []
        # Accumulated through autograd rather than assigned to .grad, so that whatever wraps
        # the backward passes (loss scaling, gradient hooks) sees these terms as well.
        leaves = params + [p for p, g in zip(cv_params, cv_grads) if g is not None]
        seeds = ([(g - a).detach() for g, a in zip(ghat, A)]
                 + [g.detach() for g in cv_grads if g is not None])
        torch.autograd.backward(leaves, seeds)
