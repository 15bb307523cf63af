from probnets.distributions.hard_concrete import HardConcrete  # noqa: F401
from probnets.distributions.relaxed import (  # noqa: F401
    bernoulli_conditional_logistic,
    bernoulli_logistic,
    categorical_conditional_gumbel,
    categorical_gumbel,
)
