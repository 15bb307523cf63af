"""
Gradient estimators for discrete latent variables, each a Pyro ELBO usable with
``pyro.infer.SVI`` and the probnets ``Trainer``. Each ELBO differentiates every guide site by
a per-site estimator (:mod:`probnets.infer.estimators`; new ones join through
:func:`register_estimator`). See :mod:`probnets.infer.util` for the per-site ``infer`` keys
(``estimator``, ``temperature``, ``straight_through``, ``baseline``) that let one model
train under every estimator without edits.
"""

from probnets.infer.disarm import DisARM_ELBO
from probnets.infer.discrete_elbo import DiscreteELBO
from probnets.infer.estimators import (
    SiteEstimator,
    SiteRecord,
    SiteTerm,
    register_estimator,
    registered_estimators,
    unregister_estimator,
)
from probnets.infer.rebar import REBAR_ELBO
from probnets.infer.registry import standard_estimators
from probnets.infer.relax import RELAX_ELBO
from probnets.infer.relaxed import Relaxed_ELBO
from probnets.infer.score_function import ScoreFunction_ELBO
from probnets.infer.vimco import VIMCO_ELBO

__all__ = [
    "DiscreteELBO",
    "DisARM_ELBO",
    "REBAR_ELBO",
    "RELAX_ELBO",
    "Relaxed_ELBO",
    "ScoreFunction_ELBO",
    "VIMCO_ELBO",
    "SiteEstimator",
    "SiteRecord",
    "SiteTerm",
    "register_estimator",
    "registered_estimators",
    "standard_estimators",
    "unregister_estimator",
]
