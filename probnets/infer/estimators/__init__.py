"""
Per-site gradient estimators (:class:`SiteEstimator` and one class per estimator) and the
table that names them.

The names are what ``infer={"estimator": name}`` and an ELBO's ``estimator=`` argument
accept. A user-defined estimator is registered once with :func:`register_estimator` and is
then usable at any site, by any probnets ELBO, and listed by
:func:`probnets.infer.standard_estimators` (so ``probnets variance`` compares it).
"""

import inspect
from typing import Any

from probnets.infer.estimators.base import (
    EstimatorContext,
    SiteEstimator,
    SiteRecord,
    SiteTerm,
    describe_distribution,
    masked,
)
from probnets.infer.estimators.disarm import DisARM
from probnets.infer.estimators.discrete import DiscreteNoiseEstimator, DiscreteRecord
from probnets.infer.estimators.rebar import REBAR
from probnets.infer.estimators.relax import RELAX
from probnets.infer.estimators.relaxed import Relaxed
from probnets.infer.estimators.reparameterized import Reparameterized
from probnets.infer.estimators.score_function import ScoreFunction

_REGISTRY: dict[str, type[SiteEstimator]] = {}


def register_estimator(
    estimator_class: type[SiteEstimator], name: str | None = None
) -> type[SiteEstimator]:
    """
    Makes a :class:`SiteEstimator` subclass available by name to every probnets ELBO (as
    ``estimator=name`` or ``infer={"estimator": name}``) and to
    :func:`~probnets.infer.standard_estimators`.

    :param type estimator_class: a subclass of :class:`SiteEstimator`.
    :param str name: defaults to ``estimator_class.name``.
    :returns: ``estimator_class`` (so it can decorate the class).
    """
    if not (isinstance(estimator_class, type) and issubclass(estimator_class, SiteEstimator)):
        raise TypeError(
            "register_estimator expected a subclass of SiteEstimator, but got {!r}".format(
                estimator_class
            )
        )
    name = estimator_class.name if name is None else name
    if not isinstance(name, str) or not name:
        raise ValueError(
            "register_estimator expected a non-empty str name (or a class attribute "
            "`name`), but got {!r}".format(name)
        )
    _REGISTRY[name] = estimator_class
    return estimator_class


def unregister_estimator(name: str) -> None:
    """Removes the estimator registered as ``name`` (``KeyError`` if there is none)."""
    del _REGISTRY[name]


def registered_estimators() -> dict[str, type[SiteEstimator]]:
    """``{name: SiteEstimator subclass}`` of every registered estimator."""
    return dict(_REGISTRY)


def estimator_class(name: str, where: str = "estimator") -> type[SiteEstimator]:
    """The class registered as ``name``; ``ValueError`` listing the names otherwise."""
    if name == "vimco":
        raise ValueError(
            "{}: 'vimco' is a multi-sample bound over all sites, not a per-site "
            "estimator; use VIMCO_ELBO(num_particles=K)".format(where)
        )
    if name not in _REGISTRY:
        raise ValueError(
            "{} must be one of {} (or a SiteEstimator instance), but got {!r}".format(
                where, tuple(_REGISTRY), name
            )
        )
    return _REGISTRY[name]


def make_estimator(cls: type[SiteEstimator], options: dict[str, Any]) -> SiteEstimator:
    """``cls(**options)`` with only the options its ``__init__`` accepts (the ELBO-level
    hyper-parameters reach the estimators that take them)."""
    if cls.__init__ is object.__init__:
        return cls()
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return cls(**options)
    return cls(**{k: v for k, v in options.items() if k in parameters})


for _cls in (Reparameterized, ScoreFunction, Relaxed, REBAR, RELAX, DisARM):
    register_estimator(_cls)

__all__ = [
    "DisARM",
    "DiscreteNoiseEstimator",
    "DiscreteRecord",
    "EstimatorContext",
    "REBAR",
    "RELAX",
    "Relaxed",
    "Reparameterized",
    "ScoreFunction",
    "SiteEstimator",
    "SiteRecord",
    "SiteTerm",
    "describe_distribution",
    "masked",
    "estimator_class",
    "make_estimator",
    "register_estimator",
    "registered_estimators",
    "unregister_estimator",
]
