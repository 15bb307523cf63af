"""What a :class:`~probnets.train.Trainer` minimises: an ELBO or a deterministic loss.

An objective is called with a batch tuple, fills the parameters' ``.grad`` and returns
``(loss, named_parameters)``: the loss as a float and the ``{name: leaf tensor}`` it reached.
Finding parameters by name on every call is what lets estimators and models register
parameters lazily (REBAR's ``cv.*`` control variates, AIR's baseline network) and still be
trained and checkpointed. Besides ``__call__`` an objective provides:

- ``modules``: the :class:`torch.nn.Module` objects whose ``state_dict`` (buffers included)
  is checkpointed;
- ``named_state()`` / ``state_constraints()`` / ``load_named_state(values, codes)``: the
  parameters that live outside those modules (Pyro's param store), with their constraints;
- ``state_dict()`` / ``load_state_dict(state)``: the estimator's own state, if any;
- ``diagnose(batch)``: the sample sites involved in a bad step (a parameter outside its
  constraint, a non-finite value or density), for the bad-step guard's message.

:class:`Objective` states this protocol for type checkers.
"""

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, cast

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.poutine import Trace

from probnets.checkpoint import (
    decode_constraint,
    encode_constraint,
    get_rng_state,
    set_rng_state,
)
from probnets.train.sampler import Batch

ConstraintCode: TypeAlias = tuple[Any, ...]
"""A parameter constraint as a checkpoint stores it
(:func:`probnets.checkpoint.encode_constraint`)."""


class Objective(Protocol):
    """What a :class:`~probnets.train.Trainer` minimises (see :mod:`probnets.train.objectives`):
    :class:`SVIObjective`, :class:`LossObjective`, or any class with these members."""

    @property
    def modules(self) -> Sequence[torch.nn.Module]:
        """The modules whose ``state_dict`` is checkpointed."""
        ...

    def __call__(self, batch: Batch) -> tuple[float, dict[str, torch.Tensor]]:
        """Fill the parameters' ``.grad``; return the loss and ``{name: leaf tensor}``."""
        ...

    def named_state(self) -> dict[str, torch.Tensor]:
        """The parameters outside :attr:`modules` by name (unconstrained values)."""
        ...

    def state_constraints(self) -> dict[str, ConstraintCode]:
        """Their constraints, encoded for the checkpoint."""
        ...

    def load_named_state(
        self, values: Mapping[str, torch.Tensor], codes: Mapping[str, ConstraintCode]
    ) -> None:
        """Restore :meth:`named_state` and :meth:`state_constraints`."""
        ...

    def state_dict(self) -> dict[str, Any] | None:
        """The estimator's own state (``None``: it has none)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restore :meth:`state_dict`'s result (``None``: nothing to restore)."""
        ...

    def diagnose(self, batch: Batch) -> list[str]:
        """The sample sites involved in a bad step, for the guard's message."""
        ...


def param_leaf(value: torch.Tensor) -> torch.Tensor:
    """The tensor the optimizer updates behind the value of a ``param`` site.

    For a constrained parameter the site's value is ``transform_to(constraint)(leaf)``, and
    Pyro's param store attaches a weak reference to the unconstrained leaf to it as
    ``value.unconstrained`` (``ParamStoreDict.__getitem__``); :class:`pyro.infer.SVI` finds its
    parameters the same way. There is no other public route from a trace to the leaf, so this
    is the one place that relies on the attribute (pinned by ``tests/train/test_parts.py``).
    """
    unconstrained = getattr(value, "unconstrained", None)
    return unconstrained() if unconstrained is not None else value


def bound_modules(*fns: Callable[..., Any]) -> list[torch.nn.Module]:
    """The :class:`torch.nn.Module` objects that ``fns`` are bound methods of."""
    modules: list[torch.nn.Module] = []
    for fn in fns:
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, torch.nn.Module) and owner not in modules:
            modules.append(owner)
    return modules


class SVIObjective:
    """The gradient of an ELBO, ``elbo.loss_and_grads(model_fn, guide_fn, *batch)``.

    Parameters are the ``param`` sites of the call's trace (unconstrained values), so
    parameters the ELBO itself registers are trained too.

    :param model_fn: the Pyro model, called as ``model_fn(*batch)``.
    :param guide_fn: the guide, called the same way.
    :param elbo: a Pyro ELBO (anything with ``loss_and_grads``), e.g. one of
        :mod:`probnets.infer`'s estimators. Its ``state_dict()``, if any, is checkpointed.
    :param modules: further modules whose state (buffers) is checkpointed; modules owning
        ``model_fn`` / ``guide_fn`` as bound methods are found automatically.
    """

    def __init__(
        self,
        model_fn: Callable[..., Any],
        guide_fn: Callable[..., Any],
        elbo: ELBO,
        modules: Iterable[torch.nn.Module] = (),
    ) -> None:
        if not hasattr(elbo, "loss_and_grads"):
            raise TypeError(f"elbo must be a Pyro ELBO with loss_and_grads, got {type(elbo)}")
        if not (callable(model_fn) and callable(guide_fn)):
            raise TypeError(
                f"model_fn and guide_fn must be callable, got {model_fn!r} and {guide_fn!r}"
            )
        self.model_fn, self.guide_fn, self.elbo = model_fn, guide_fn, elbo
        self.modules = bound_modules(model_fn, guide_fn)
        self.modules += [m for m in modules if m not in self.modules]

    def __call__(self, batch: Batch) -> tuple[float, dict[str, torch.Tensor]]:
        """``elbo.loss_and_grads(model_fn, guide_fn, *batch)``; returns the loss and the
        unconstrained leaves of the ``param`` sites it reached."""
        with poutine.trace(param_only=True) as capture:
            loss = self.elbo.loss_and_grads(self.model_fn, self.guide_fn, *batch)
        return float(loss), {
            name: param_leaf(cast(torch.Tensor, site["value"]))
            for name, site in capture.trace.nodes.items()
        }

    def named_state(self) -> dict[str, torch.Tensor]:
        """Copies of the param store's unconstrained values."""
        store = pyro.get_param_store()
        return {name: value.detach().clone() for name, value in store.named_parameters()}

    def state_constraints(self) -> dict[str, ConstraintCode]:
        """The param store's constraints, encoded."""
        constraints = pyro.get_param_store().get_state()["constraints"]
        return {
            name: encode_constraint(constraint, name) for name, constraint in constraints.items()
        }

    def load_named_state(
        self, values: Mapping[str, torch.Tensor], codes: Mapping[str, ConstraintCode]
    ) -> None:
        """Copy ``values`` into the param store's parameters, inserting those it lacks."""
        store = pyro.get_param_store()
        current = dict(store.named_parameters())
        missing: dict[str, torch.Tensor] = {}
        for name, value in values.items():
            if name in current:
                copy_into(current[name], value, name)
            else:
                missing[name] = value
        if missing:
            # Parameters the initialization pass did not create: insert them exactly
            # (unconstrained values), not through pyro.param, which would round-trip them
            # through the constraint's transform.
            device = next(iter(current.values())).device if current else torch.device("cpu")
            store.set_state(
                {
                    "params": {n: v.to(device).requires_grad_() for n, v in missing.items()},
                    "constraints": {n: decode_constraint(codes[n]) for n in missing},
                }
            )

    def state_dict(self) -> dict[str, Any] | None:
        """The ELBO's ``state_dict()``, if it has one."""
        return self.elbo.state_dict() if hasattr(self.elbo, "state_dict") else None

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restore the ELBO's state (``None``: nothing to restore)."""
        if state is not None and hasattr(self.elbo, "load_state_dict"):
            self.elbo.load_state_dict(state)

    def diagnose(self, batch: Batch) -> list[str]:
        """The sample sites of a bad step, as ``"guide:z (parameter scale)"``: those whose
        distribution has a parameter outside its constraint, whose value or whose
        log-density is not finite.

        The guide and the model (replayed on the guide's samples) are traced again with
        distribution validation off, so a site whose distribution failed validation is
        reached and named, and the random state is restored afterwards, so diagnosing a step
        does not change the draws of the steps that follow.
        """
        rng = get_rng_state()
        try:
            with pyro.validation_enabled(False), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                guide_trace = poutine.trace(self.guide_fn).get_trace(*batch)
                model_trace = poutine.trace(
                    poutine.replay(self.model_fn, trace=guide_trace)
                ).get_trace(*batch)
        except Exception as error:  # the diagnosis must not hide the original failure
            return [f"(tracing failed: {type(error).__name__}: {_first_line(error)})"]
        finally:
            set_rng_state(rng)
        return _invalid_sites("guide", guide_trace) + _invalid_sites("model", model_trace)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _invalid_parameters(fn: Any) -> list[str]:
    """The names of ``fn``'s parameters that violate their constraints (``fn`` may wrap a
    base distribution, as ``.expand`` and ``.to_event`` do)."""
    while not hasattr(fn, "arg_constraints") or not fn.arg_constraints:
        fn = getattr(fn, "base_dist", None)
        if fn is None:
            return []
    bad = []
    for name, constraint in fn.arg_constraints.items():
        value = fn.__dict__.get(name)  # lazily computed parameters (probs of logits) skipped
        if not torch.is_tensor(value) or constraint is None:
            continue
        try:
            valid = bool(constraint.check(value).all()) and bool(
                torch.isfinite(value).all() or not value.is_floating_point()
            )
        except (RuntimeError, ValueError, TypeError):  # a constraint that cannot be checked
            continue
        if not valid:
            bad.append(name)
    return bad


def _invalid_sites(where: str, trace: Trace) -> list[str]:
    bad = []
    for name, site in trace.nodes.items():
        if site["type"] != "sample":
            continue
        distribution: Any = site["fn"]  # a sample site's fn is its distribution
        parameters = _invalid_parameters(distribution)
        if parameters:
            bad.append(f"{where}:{name} (parameter {', '.join(parameters)})")
            continue
        value = site["value"]
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            bad.append(f"{where}:{name} (value)")
            continue
        try:
            log_prob = distribution.log_prob(value)
        except Exception:  # a distribution that cannot score its value names no site
            continue
        if not torch.isfinite(log_prob).all():
            bad.append(f"{where}:{name} (log-density)")
    return bad


class LossObjective:
    """The gradient of a deterministic loss ``objective_fn(*batch) -> scalar tensor``.

    :param objective_fn: the loss of one batch.
    :param module: the :class:`torch.nn.Module` trained; its parameters that require a
        gradient are optimised (named as in ``module.named_parameters()``) and its state is
        checkpointed.
    """

    def __init__(self, objective_fn: Callable[..., torch.Tensor], module: torch.nn.Module) -> None:
        if not callable(objective_fn):
            raise TypeError(f"objective_fn must be callable, got {objective_fn!r}")
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module)}")
        self.objective_fn, self.module = objective_fn, module
        self.modules = [module]

    def __call__(self, batch: Batch) -> tuple[float, dict[str, torch.Tensor]]:
        """``objective_fn(*batch).backward()``; returns the loss and the module's trainable
        parameters."""
        loss = self.objective_fn(*batch)
        if not torch.is_tensor(loss) or loss.dim() != 0:
            raise ValueError(f"objective_fn must return a scalar tensor, got {loss!r}")
        loss.backward()
        return loss.item(), {n: p for n, p in self.module.named_parameters() if p.requires_grad}

    def named_state(self) -> dict[str, torch.Tensor]:
        """Nothing: every parameter lives in :attr:`module`."""
        return {}

    def state_constraints(self) -> dict[str, ConstraintCode]:
        return {}

    def load_named_state(
        self, values: Mapping[str, torch.Tensor], codes: Mapping[str, ConstraintCode]
    ) -> None:
        pass

    def state_dict(self) -> None:
        return None

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        pass

    def diagnose(self, batch: Batch) -> list[str]:
        """Nothing: a deterministic loss has no sample sites."""
        return []


def copy_into(target: torch.Tensor, value: torch.Tensor, name: str) -> None:
    """Copy a checkpointed ``value`` into the live tensor ``target``, checking the shape."""
    if target.shape != value.shape:
        raise ValueError(
            f"checkpoint parameter {name!r} has shape {tuple(value.shape)} but the model's has "
            f"{tuple(target.shape)}: was the checkpoint written with other model options?"
        )
    with torch.no_grad():
        target.copy_(value)


__all__ = [
    "Batch",
    "ConstraintCode",
    "LossObjective",
    "Objective",
    "SVIObjective",
    "bound_modules",
    "param_leaf",
]
