"""A whole estimator comparison on one :class:`~probnets.experiments.problem.Problem`: every
estimator measured at the initial params, optionally tracked along training, the results
written to a directory. Figures are the caller's: :func:`probnets.viz.variance.plot_variance_run`
draws them from the returned reports (``probnets variance`` does)."""

import os
from collections.abc import Callable, Mapping
from typing import Any

import pyro

from probnets.experiments.measure import measure, set_time_ratios
from probnets.experiments.problem import Problem
from probnets.experiments.report import (
    EstimatorStats,
    TrackingReport,
    VarianceReport,
    atomic_write_text,
)
from probnets.experiments.track import track
from probnets.experiments.util import fresh_estimator

__all__ = ["run_variance"]


def _tune_steps(cv_tune_steps: int | dict[str, int], name: str) -> int:
    return cv_tune_steps.get(name, 0) if isinstance(cv_tune_steps, dict) else cv_tune_steps


def _measure_initial(
    problem_factory: Callable[[], Problem],
    estimators: Mapping[str, Any],
    num_samples: int,
    cv_tune_steps: int | dict[str, int],
    cv_lr: float,
    seed: int,
    progress: Callable[[str, Any], object] | None,
) -> VarianceReport:
    """Each estimator measured on its own fresh problem (param store cleared, seeded)."""
    stats: dict[str, EstimatorStats] = {}
    for name, estimator in estimators.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        problem = problem_factory()
        report = measure(
            {name: fresh_estimator(estimator)},
            problem.model,
            problem.guide,
            *problem.args,
            num_samples=num_samples,
            params=problem.params,
            exact=problem.exact,
            cv_tune_steps=_tune_steps(cv_tune_steps, name),
            cv_lr=cv_lr,
        )
        stats[name] = report.estimators[name]
        if progress is not None:
            progress(name, stats[name])
    reference = next(iter(stats))
    set_time_ratios(stats, reference)
    return VarianceReport(
        estimators=stats,
        params=report.params,
        num_samples=num_samples,
        exact_norm=report.exact_norm,
        meta={
            "problem": problem.name,
            "reference": reference,
            "log": "natural",
            "seed": seed,
        },
    )


def run_variance(
    problem_factory: Callable[[], Problem],
    estimators: dict[str, Any],
    out_dir: str | os.PathLike[str],
    num_samples: int = 1000,
    cv_tune_steps: int | dict[str, int] = 0,
    cv_lr: float = 1e-2,
    track_steps: int = 0,
    track_every: int = 100,
    track_samples: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
    progress: Callable[[str, Any], object] | None = None,
) -> tuple[VarianceReport, TrackingReport | None]:
    """Measure, optionally track along training, and write the results to ``out_dir``.

    Writes ``variance.txt`` (the table) and ``variance.json``; with ``track_steps > 0`` also
    ``tracking.txt`` and ``tracking.json``. Every file is written to a temporary name and
    renamed. :func:`probnets.viz.variance.plot_variance_run` adds the figures.

    :param problem_factory: ``() -> Problem`` (see :class:`~probnets.experiments.Problem`).
    :param dict estimators: ``{name: ELBO instance or zero-argument factory}``; each is
        measured on a fresh problem (param store cleared, seeded) at its initial params.
    :param cv_tune_steps: steps of control-variate tuning before measuring (see
        :func:`~probnets.experiments.measure`): an int for every estimator, or
        ``{name: int}`` so that e.g. a learned and an untuned REBAR can be compared in one
        table.
    :param track_steps, track_every, track_samples, lr: the training runs of :func:`track`
        (``lr`` for model and guide params, ``cv_lr`` for ``cv.*`` params).
    :param progress: optional ``callable(name, item)``, called with each estimator's
        ``EstimatorStats`` and with each tracking record (a dict).
    :returns: ``(VarianceReport, TrackingReport or None)``.
    """
    if not isinstance(estimators, dict) or not estimators:
        raise TypeError(
            f"estimators must be a non-empty dict {{name: ELBO or factory}}, "
            f"got {type(estimators).__name__}"
        )
    os.makedirs(out_dir, exist_ok=True)
    variance = _measure_initial(
        problem_factory, estimators, num_samples, cv_tune_steps, cv_lr, seed, progress
    )
    atomic_write_text(os.path.join(out_dir, "variance.txt"), variance.table() + "\n")
    variance.save_json(os.path.join(out_dir, "variance.json"))

    tracking = None
    if track_steps > 0:
        tracking = track(
            estimators,
            problem_factory,
            track_steps,
            track_every,
            num_samples=track_samples,
            lr=lr,
            cv_lr=cv_lr,
            seed=seed,
            progress=progress,
        )
        tracking.meta["problem"] = variance.meta["problem"]
        atomic_write_text(os.path.join(out_dir, "tracking.txt"), tracking.table() + "\n")
        tracking.save_json(os.path.join(out_dir, "tracking.json"))
    return variance, tracking
