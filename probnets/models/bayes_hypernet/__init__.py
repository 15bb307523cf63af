"""Bayesian hypernetworks: priors over hypernetwork embeddings, SVI over them, and the
predictive uncertainty that results (see :class:`BayesianHypernet`)."""

from probnets.models.bayes_hypernet.generators import (
    InputUnitGenerator,
    LayerGenerator,
    UnitGenerator,
)
from probnets.models.bayes_hypernet.gp_reference import GaussianProcessRegression
from probnets.models.bayes_hypernet.guides import AutoAffineIAFNormal, make_guide
from probnets.models.bayes_hypernet.metrics import auroc, expected_calibration_error
from probnets.models.bayes_hypernet.model import (
    BayesianHypernet,
    ClassificationPrediction,
    RegressionPrediction,
)
from probnets.models.bayes_hypernet.target import mlp_forward, parse_target

__all__ = [
    "AutoAffineIAFNormal",
    "BayesianHypernet",
    "ClassificationPrediction",
    "GaussianProcessRegression",
    "InputUnitGenerator",
    "LayerGenerator",
    "RegressionPrediction",
    "UnitGenerator",
    "auroc",
    "expected_calibration_error",
    "make_guide",
    "mlp_forward",
    "parse_target",
]
