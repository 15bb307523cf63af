"""Distributions Pyro lacks: the hard-concrete gate (:class:`HardConcrete`) and the
relaxations of Bernoulli and categorical samples that keep their noise, as REBAR and RELAX
need (:mod:`probnets.distributions.relaxed`)."""

from probnets.distributions.hard_concrete import HardConcrete
from probnets.distributions.relaxed import (
    bernoulli_conditional_logistic,
    bernoulli_hard,
    bernoulli_logistic,
    categorical_conditional_gumbel,
    categorical_gumbel,
    categorical_hard,
    relax_bernoulli,
    relax_categorical,
)

__all__ = [
    "HardConcrete",
    "bernoulli_conditional_logistic",
    "bernoulli_hard",
    "bernoulli_logistic",
    "categorical_conditional_gumbel",
    "categorical_gumbel",
    "categorical_hard",
    "relax_bernoulli",
    "relax_categorical",
]
