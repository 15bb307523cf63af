"""The estimators of :mod:`probnets.infer` by short name, the one table every command line
(``probnets train sbn|air|gated --estimator``, ``probnets variance``) and benchmark resolves
names through."""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import pyro.infer
from pyro.infer import ELBO

from probnets.infer.disarm import DisARM_ELBO
from probnets.infer.discrete_elbo import DiscreteELBO
from probnets.infer.estimators import registered_estimators
from probnets.infer.rebar import REBAR_ELBO
from probnets.infer.relax import RELAX_ELBO
from probnets.infer.relaxed import Relaxed_ELBO
from probnets.infer.score_function import ScoreFunction_ELBO
from probnets.infer.vimco import VIMCO_ELBO

# site estimators that the table of standard_estimators lists under other names
_BUILT_IN = ("reparameterized", "score", "relaxed", "rebar", "relax", "disarm")


def standard_estimators(
    names: Sequence[str] | None = None, temperature: float = 0.5, num_particles: int = 2
) -> dict[str, Callable[[], ELBO]]:
    """``{name: factory}`` of the estimators compared by default (factories, so every run
    gets a fresh estimator):

    ``score`` REINFORCE without baseline; ``score+avg`` with a decaying-average baseline
    per batch element; ``score+avg-site`` with one decaying average per site;
    ``nvil`` with a learned input-dependent baseline (Mnih & Gregor 2014); ``loo`` with
    ``num_particles`` samples and leave-one-out baselines; ``relaxed`` Concrete / Gumbel-
    softmax at ``temperature`` (biased; also the initial temperature of ``rebar`` and ``relax``);
    ``rebar-fixed`` REBAR with eta = 1 and the relaxation held at ``temperature`` (the
    paper's untuned REBAR; at the default 0.5 its fixed setting); ``rebar`` REBAR with eta
    and temperature learned from there; ``relax`` RELAX;
    ``vimco`` the ``num_particles``-sample bound with leave-one-out baselines (a different
    objective); ``disarm`` DisARM (two antithetic evaluations); ``tracegraph`` Pyro's own
    ``TraceGraph_ELBO``, as the reference. Then every estimator a user registered with
    :func:`~probnets.infer.register_estimator`, by its name, as
    ``DiscreteELBO(estimator=name)``.

    The multi-particle estimators draw their particles at once (``vectorize_particles=True``).

    :param names: subset (and order) of the names above; default all.
    """
    vectorized: dict[str, Any] = dict(num_particles=num_particles, vectorize_particles=True)
    table = {
        "score": lambda: ScoreFunction_ELBO(),
        "score+avg": lambda: ScoreFunction_ELBO(baseline="decaying_avg"),
        "score+avg-site": lambda: ScoreFunction_ELBO(baseline="decaying_avg_site"),
        "nvil": lambda: ScoreFunction_ELBO(baseline="nvil"),
        "loo": lambda: ScoreFunction_ELBO(baseline="loo", **vectorized),
        "relaxed": lambda: Relaxed_ELBO(temperature=temperature),
        "rebar-fixed": lambda: REBAR_ELBO(
            init_temperature=temperature, learn_eta=False, learn_temperature=False
        ),
        "rebar": lambda: REBAR_ELBO(init_temperature=temperature),
        "relax": lambda: RELAX_ELBO(init_temperature=temperature),
        "vimco": lambda: VIMCO_ELBO(**vectorized),
        "disarm": lambda: DisARM_ELBO(),
        "tracegraph": lambda: pyro.infer.TraceGraph_ELBO(),
    }
    for name in registered_estimators():
        if name not in table and name not in _BUILT_IN:
            table[name] = functools.partial(DiscreteELBO, estimator=name)
    if names is None:
        return table
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown estimator names {unknown}; choose from {list(table)}")
    return {n: table[n] for n in names}


__all__ = ["standard_estimators"]
