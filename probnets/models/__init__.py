"""Pyro models, each with its guide beside it.

- :class:`AIR` -- Attend, Infer, Repeat (and DAIR): scenes as a variable number of objects.
- :class:`NeuronDAG`, :class:`LayerDAG` -- stochastic gated connectivity
  (:mod:`probnets.models.gated`).
- :class:`BayesianHypernet` -- a prior over hypernetwork embeddings
  (:mod:`probnets.models.bayes_hypernet`).
- :class:`SigmoidBeliefNet`, :class:`VAE`, :class:`ToyBernoulli` -- the discrete and continuous
  latent-variable models the estimators are compared on.

The submodules hold the helpers of each model (metrics, structures, problems for the variance
harness); the classes are re-exported here.
"""

from probnets.models.air import AIR, AIRInference
from probnets.models.bayes_hypernet import (
    AutoAffineIAFNormal,
    BayesianHypernet,
    ClassificationPrediction,
    GaussianProcessRegression,
    InputUnitGenerator,
    LayerGenerator,
    RegressionPrediction,
    UnitGenerator,
)
from probnets.models.gated import (
    BernoulliPrior,
    BetaBernoulliPrior,
    CostPenalty,
    GatedNetwork,
    LayerDAG,
    MaskedNetwork,
    NeuronDAG,
)
from probnets.models.sbn import SigmoidBeliefNet
from probnets.models.toy import ToyBernoulli
from probnets.models.vae import VAE

__all__ = [
    "AIR",
    "AIRInference",
    "AutoAffineIAFNormal",
    "BayesianHypernet",
    "BernoulliPrior",
    "BetaBernoulliPrior",
    "ClassificationPrediction",
    "CostPenalty",
    "GatedNetwork",
    "GaussianProcessRegression",
    "InputUnitGenerator",
    "LayerDAG",
    "LayerGenerator",
    "MaskedNetwork",
    "NeuronDAG",
    "RegressionPrediction",
    "SigmoidBeliefNet",
    "ToyBernoulli",
    "UnitGenerator",
    "VAE",
]
