"""Machinery shared by :mod:`~probnets.experiments.measure` and
:mod:`~probnets.experiments.track`: one gradient estimate from any object with
``loss_and_grads``, the params it touched, and snapshots of an estimator's Python state."""

import copy

import pyro.poutine as poutine
import torch

__all__ = ["EstimatorState", "fresh_estimator", "guide_param_names", "loss_and_grads", "zero_grads"]


def guide_param_names(guide, args, kwargs):
    """Names of the params ``guide(*args, **kwargs)`` reads, in the order it reads them."""
    with poutine.block(hide_types=["sample"]), poutine.trace(param_only=True) as tr:
        guide(*args, **kwargs)
    return list(tr.trace.nodes)


def loss_and_grads(elbo, model, guide, args, kwargs):
    """One ``elbo.loss_and_grads`` call; returns ``(loss, {name: unconstrained leaf})`` for
    every param touched, their ``.grad`` holding the estimate."""
    with poutine.trace(param_only=True) as tr:
        loss = elbo.loss_and_grads(model, guide, *args, **kwargs)
    leaves = {name: site["value"].unconstrained() for name, site in tr.trace.nodes.items()}
    return float(loss), leaves


def zero_grads(leaves):
    """Drop the gradients of ``{name: leaf}`` (what an optimizer's ``zero_grad`` does)."""
    for leaf in leaves.values():
        leaf.grad = None


def fresh_estimator(estimator):
    """An estimator for a new run: call a factory (e.g. a class), or deep-copy an instance."""
    if isinstance(estimator, type) or not hasattr(estimator, "loss_and_grads"):
        return estimator()
    return copy.deepcopy(estimator)


def _collect_shared(obj, found, seen):
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

    def __init__(self, elbo):
        self.elbo = elbo
        self.shared = {}
        _collect_shared(vars(elbo), self.shared, set())
        self.state = copy.deepcopy(vars(elbo), dict(self.shared))

    def restore(self):
        vars(self.elbo).clear()
        vars(self.elbo).update(copy.deepcopy(self.state, dict(self.shared)))
