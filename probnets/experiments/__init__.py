"""Experiments: what compares and evaluates models and estimators.

- The variance harness: :func:`measure` (bias, variance and cost of gradient estimators at
  fixed params), :func:`track` (the same along each estimator's training run) and
  :func:`run_variance` (both, written to a directory), over a :class:`Problem`; the results
  are :class:`VarianceReport` and :class:`TrackingReport`, whose figures
  :mod:`probnets.viz.variance` draws.
- The estimator-comparison problems: :func:`toy_problem`, :func:`plate_problem`,
  :func:`sbn_problem`, :func:`air_problem`.
- Metrics and settings shared by the tasks and examples: :mod:`probnets.experiments.air`
  (``make_elbo``, ``evaluate_counts``) and :mod:`probnets.experiments.bayes_hypernet`
  (``gap_metrics``, ``classification_metrics``, ``out_of_distribution``, ``mnist_arrays``).
"""

from probnets.experiments.counter import PARTICLE_PLATE_NAMES, EvaluationCounter
from probnets.experiments.measure import ADAPTIVE_ESTIMATORS, measure
from probnets.experiments.problem import Problem
from probnets.experiments.problems import air_problem, plate_problem, sbn_problem, toy_problem
from probnets.experiments.report import EstimatorStats, TrackingReport, VarianceReport
from probnets.experiments.run import run_variance
from probnets.experiments.track import track

__all__ = [
    "ADAPTIVE_ESTIMATORS",
    "PARTICLE_PLATE_NAMES",
    "EstimatorStats",
    "EvaluationCounter",
    "Problem",
    "TrackingReport",
    "VarianceReport",
    "air_problem",
    "measure",
    "run_variance",
    "sbn_problem",
    "plate_problem",
    "toy_problem",
    "track",
]
