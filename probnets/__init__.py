"""probnets: probabilistic neural networks in Pyro.

Subpackages mirror Pyro's namespaces:

- :mod:`probnets.distributions` -- distributions Pyro lacks (hard-concrete, relaxations
  that keep their noise).
- :mod:`probnets.infer` -- gradient estimators for discrete latents, each a Pyro ELBO.
- :mod:`probnets.experiments` -- what compares and evaluates: the estimator-comparison
  harness, its problems, and metrics shared by the tasks and examples.
- :mod:`probnets.nn` -- deterministic building blocks (hypernetworks, HyperLSTM, per-example
  layers, spatial transformer).
- :mod:`probnets.models` -- Pyro models, each with its guide beside it.
- :mod:`probnets.data` -- MNIST with download, checksum and offline fallback; multi-MNIST; toys.
- :mod:`probnets.train` -- the training loop (imported here, so that models' ``fit`` methods
  find their default trainer, :mod:`probnets.models.fitting`, from any import path).
- :mod:`probnets.checkpoint` -- the checkpoint file format; :func:`probnets.load` (from
  :mod:`probnets.loading`) rebuilds the trained model of any checkpoint.
- :mod:`probnets.viz` -- figures.
"""

__version__ = "0.1.0"

__all__ = ["data", "distributions", "infer", "load", "models", "nn", "train", "viz"]
import probnets.train  # noqa: E402,F401  (registers the default trainer of models' fit)
from probnets.loading import load  # noqa: E402
