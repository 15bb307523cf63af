"""Machinery shared by :mod:`~probnets.experiments.measure` and
:mod:`~probnets.experiments.track`: one gradient estimate from any object with
``loss_and_grads``, the params it touched, and snapshots of an estimator's Python state."""

import copy
from collections.abc import Callable, Mapping
from typing import Any, cast

import pyro.poutine as poutine
import torch

__all__ = ["EstimatorState", "fresh_estimator", "guide_param_names", "loss_and_grads", "zero_grads"]


def guide_param_names(
    guide: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> list[str]:
    """Names of the params ``guide(*args, **kwargs)`` reads, in the order it reads them."""
    with poutine.block(hide_types=["sample"]), poutine.trace(param_only=True) as tr:
        guide(*args, **kwargs)
    return list(tr.trace.nodes)


def loss_and_grads(
    elbo: Any,
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> tuple[float, dict[str, torch.Tensor]]:
    """One ``elbo.loss_and_grads`` call; returns ``(loss, {name: unconstrained leaf})`` for
    every param touched, their ``.grad`` holding the estimate. ``elbo`` is anything with
    Pyro's ``loss_and_grads(model, guide, *args, **kwargs)`` (a ``pyro.infer.ELBO``)."""
    with poutine.trace(param_only=True) as tr:
        loss = elbo.loss_and_grads(model, guide, *args, **kwargs)
    # a param's value carries .unconstrained(), its leaf in the param store
    nodes = tr.trace.nodes
    leaves = {name: cast(Any, site["value"]).unconstrained() for name, site in nodes.items()}
    return float(loss), leaves


def zero_grads(leaves: Mapping[str, torch.Tensor]) -> None:
    """Drop the gradients of ``{name: leaf}`` (what an optimizer's ``zero_grad`` does)."""
    for leaf in leaves.values():
        leaf.grad = None


def fresh_estimator(estimator: Any) -> Any:
    """An estimator for a new run: call a factory (e.g. a class, or a factory of
    :func:`~probnets.infer.standard_estimators`), or deep-copy an instance (anything with
    ``loss_and_grads``)."""
    if isinstance(estimator, type) or not hasattr(estimator, "loss_and_grads"):
        return estimator()
    return copy.deepcopy(estimator)


def _collect_shared(obj: object, found: dict[int, object], seen: set[int]) -> None:
    """Tensors and modules reachable from an estimator's attributes: they are shared, not
    copied, when its Python state is snapshotted (the param store is restored separately)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (torch.Tensor, torch.nn.Module)):
        found[id(obj)] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _collect_shared(key, found, seen)
            _collect_shared(value, found, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            _collect_shared(value, found, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        _collect_shared(vars(obj), found, seen)


class EstimatorState:
    """Snapshot of an estimator's Python state (running averages, step counters...).

    Tensors and modules the estimator refers to are kept by reference (their values live in
    the param store, which the caller restores); everything else is deep-copied, and
    :meth:`restore` puts a fresh copy back."""

    def __init__(self, elbo: object) -> None:
        self.elbo = elbo
        self.shared: dict[int, object] = {}
        _collect_shared(vars(elbo), self.shared, set())
        self.state = copy.deepcopy(vars(elbo), dict(self.shared))

    def restore(self) -> None:
        """Puts a fresh copy of the snapshot back on the estimator."""
        vars(self.elbo).clear()
        vars(self.elbo).update(copy.deepcopy(self.state, dict(self.shared)))
