from probnets.distributions.hard_concrete import HardConcrete  # noqa: F401
