"""Exact ELBO and ELBO gradient by brute-force enumeration of a guide's discrete sites.

This is the oracle the variance harness (:mod:`probnets.experiments`) measures bias
against. It is deliberately naive -- one model and one guide execution per joint
configuration -- so that it shares no code path with the estimators it checks (in
particular it does not use Pyro's ``TraceEnum_ELBO``).
"""

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import pyro.poutine as poutine
import torch
from torch.distributions import Distribution
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample

__all__ = ["exact_elbo", "exact_gradient", "enumerate_guide_configurations"]


class _SetValues(Messenger):
    """Sets the value of named sample sites, like ``poutine.replay`` from a dict.

    Unlike ``poutine.condition`` the sites stay latent, so the resulting guide trace can be
    replayed into the model as usual.
    """

    def __init__(self, values: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["name"] in self.values:
            msg["value"] = self.values[msg["name"]]
            msg["done"] = True


def _element_support(site: Mapping[str, Any]) -> tuple[torch.Tensor, int]:
    """Per-element support of an enumerable site: a tensor ``(K, *event_shape)`` and the
    number of independent elements whose joint values must be enumerated."""
    fn = site["fn"]
    # Independent / masked / expanded wrappers hide enumerate_support; their base has it.
    while not fn.has_enumerate_support and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    if not fn.has_enumerate_support:
        raise ValueError(
            f"exact enumeration needs every latent guide site to be discrete and "
            f"enumerable; site '{site['name']}' has distribution "
            f"{type(site['fn']).__name__}"
        )
    event_shape = fn.event_shape
    support = fn.enumerate_support(expand=False)
    support = support.reshape((support.shape[0],) + event_shape)
    value_shape = site["value"].shape
    event_dim = len(event_shape)
    num_elements = math.prod(value_shape[: len(value_shape) - event_dim])
    return support, num_elements


def enumerate_guide_configurations(
    guide: Callable[..., Any], *args: Any, max_configurations: int = 4096, **kwargs: Any
) -> Iterator[dict[str, Any]]:
    """Yield every joint configuration of the guide's latent discrete sites.

    The guide is run once to discover its sites (and, for subsampled plates, the subsample,
    which is then held fixed). Each configuration is a dict ``{site name: value}`` that can be
    passed to the internal value-setting handler.

    :raises ValueError: if a latent guide site is not enumerable (e.g. a Normal), or if the
        number of joint configurations exceeds ``max_configurations``.
    """
    with torch.no_grad(), poutine.block(hide_types=["param"]):
        trace = poutine.trace(guide).get_trace(*args, **kwargs)
    fixed = {}
    sites = []
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        if isinstance(site["fn"], _Subsample):
            fixed[name] = site["value"]
            continue
        support, num_elements = _element_support(site)
        sites.append((name, support, num_elements, site["value"].shape))  # type: ignore[union-attr]
    total = 1
    for _, support, num_elements, _ in sites:
        total *= support.shape[0] ** num_elements
        if total > max_configurations:
            detail = ", ".join(f"'{n}': {s.shape[0]}^{k}" for n, s, k, _ in sites)
            raise ValueError(
                f"exact enumeration is only for small models: the guide's discrete sites "
                f"({detail}) have more than max_configurations={max_configurations} joint "
                f"configurations"
            )
    choices = [
        itertools.product(range(support.shape[0]), repeat=num_elements)
        for _, support, num_elements, _ in sites
    ]
    for combo in itertools.product(*choices):
        values = dict(fixed)
        for (name, support, _, shape), idx in zip(sites, combo):
            index = torch.tensor(idx, dtype=torch.long, device=support.device)
            values[name] = support[index].reshape(shape)
        yield values


def _enumerated_elbo(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    *args: Any,
    max_configurations: int = 4096,
    **kwargs: Any,
) -> torch.Tensor:
    """Differentiable exact ELBO: sum over configurations c of
    q(c) [log p(x, c) - log q(c)], with the site scales of subsampled plates applied to the
    log-densities (as every Pyro ELBO does) but not to the weight q(c)."""
    elbo: torch.Tensor | float = 0.0
    for values in enumerate_guide_configurations(
        guide, *args, max_configurations=max_configurations, **kwargs
    ):
        guide_trace = poutine.trace(_SetValues(values)(guide)).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        for name, site in model_trace.nodes.items():
            if (
                site["type"] == "sample"
                and not site["is_observed"]
                and name not in guide_trace.nodes
            ):
                raise ValueError(
                    f"exact enumeration needs every latent model site to be in the guide; "
                    f"model site '{name}' is not"
                )
        model_trace.compute_log_prob()
        guide_trace.compute_log_prob()
        log_weight: torch.Tensor | float = 0.0
        integrand: torch.Tensor | float = 0.0
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample" or isinstance(site["fn"], _Subsample):
                continue
            # The weight is the probability of the configuration: mask and scale are about
            # how a site enters the objective, not about how it is distributed.
            fn, value = cast(Distribution, site["fn"]), cast(torch.Tensor, site["value"])
            log_weight = log_weight + fn.log_prob(value).sum()
            integrand = integrand - site["log_prob_sum"]
        for site in model_trace.nodes.values():
            if site["type"] == "sample" and not isinstance(site["fn"], _Subsample):
                integrand = integrand + site["log_prob_sum"]
        elbo = elbo + torch.exp(cast(torch.Tensor, log_weight)) * integrand
    return cast(torch.Tensor, elbo)  # a sum over one configuration at least


def exact_elbo(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    *args: Any,
    max_configurations: int = 4096,
    **kwargs: Any,
) -> float:
    """The ELBO ``E_q[log p(x, z) - log q(z)]`` computed exactly by enumerating every joint
    configuration of the guide's discrete sites (one model + guide execution each).

    Only for small models: all latent sites must be discrete and in the guide. Subsampled
    plates keep the subsample drawn by the first guide run, so the result is exact given that
    subsample. Returns a float.
    """
    with torch.no_grad():
        value = _enumerated_elbo(
            model, guide, *args, max_configurations=max_configurations, **kwargs
        )
    return float(value)


def exact_gradient(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    *args: Any,
    params: Sequence[str] | None = None,
    max_configurations: int = 4096,
    **kwargs: Any,
) -> dict[str, torch.Tensor]:
    """The exact gradient of the loss ``-ELBO`` (the quantity every probnets / Pyro ELBO's
    ``loss_and_grads`` leaves in ``.grad``) with respect to ``params``.

    :param params: names of Pyro params (as in the param store); by default every param the
        guide reads. The gradient is taken with respect to each param's *unconstrained*
        tensor, which is the leaf that ``loss_and_grads`` fills.
    :returns: dict ``{name: tensor}`` with each param's shape, dtype and device.
    :raises ValueError: if the space is too large or a latent site cannot be enumerated, or a
        requested param is not read by the model or guide.
    """
    with poutine.trace(param_only=True) as param_capture:
        loss = -_enumerated_elbo(
            model, guide, *args, max_configurations=max_configurations, **kwargs
        )
    touched = {
        name: site["value"].unconstrained()  # type: ignore[union-attr]
        for name, site in param_capture.trace.nodes.items()
    }
    if params is None:
        with poutine.block(hide_types=["sample"]), poutine.trace(param_only=True) as tr:
            guide(*args, **kwargs)
        params = list(tr.trace.nodes)
    missing = [name for name in params if name not in touched]
    if missing:
        raise ValueError(
            f"params {missing} are not read by the model or guide; available: {sorted(touched)}"
        )
    leaves = [touched[name] for name in params]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return {
        name: torch.zeros_like(leaf) if g is None else g
        for name, leaf, g in zip(params, leaves, grads)
    }
