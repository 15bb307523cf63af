"""Gradient variance along training: each estimator trains its own copy of a problem and is
measured (:func:`~probnets.experiments.measure.measure_estimator`) every few steps."""

from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.optim

from probnets.experiments.measure import measure_estimator
from probnets.experiments.problem import Problem
from probnets.experiments.report import TrackingReport
from probnets.experiments.util import (
    fresh_estimator,
    guide_param_names,
    loss_and_grads,
    zero_grads,
)

__all__ = ["track"]

#: The scalar fields of an ``EstimatorStats`` a tracking record keeps.
SCALAR_FIELDS = (
    "loss",
    "variance",
    "log_variance",
    "snr",
    "mean_grad_norm",
    "bias_norm",
    "bias_z",
    "cosine",
    "evals_per_estimate",
    "seconds_per_estimate",
)


def _record(
    name: str,
    elbo: Any,
    problem: Problem,
    step: int,
    losses: Sequence[float],
    num_samples: int,
) -> dict[str, Any]:
    """One tracking record: the estimator measured at the problem's fixed ``args``, the mean
    training loss since the previous record and the problem's metrics."""
    stats = measure_estimator(
        name,
        elbo,
        problem.model,
        problem.guide,
        problem.args,
        {},
        num_samples,
        problem.params or guide_param_names(problem.guide, problem.args, {}),
        problem.exact() if problem.exact is not None else None,
    )
    record: dict[str, Any] = {"step": step}
    record["train_loss"] = sum(losses) / len(losses) if losses else None
    record.update({k: getattr(stats, k) for k in SCALAR_FIELDS})
    if problem.evaluate is not None:
        record.update({f"metric.{k}": float(v) for k, v in problem.evaluate().items()})
    return record


def _track_one(
    name: str,
    elbo: Any,
    problem: Problem,
    steps: int,
    every: int,
    num_samples: int,
    lr: float,
    cv_lr: float,
    progress: Callable[[str, Any], object] | None,
) -> list[dict[str, Any]]:
    """Train ``problem`` with ``elbo`` for ``steps`` Adam steps, recording every ``every``."""
    optim = pyro.optim.Adam(  # type: ignore[attr-defined]  # made at import, unseen by mypy
        lambda param_name: {"lr": cv_lr if param_name.startswith("cv.") else lr}
    )
    records: list[dict[str, Any]] = []
    losses: list[float] = []
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            records.append(_record(name, elbo, problem, step, losses, num_samples))
            losses = []
            if progress is not None:
                progress(name, records[-1])
        if step < steps:
            loss, leaves = loss_and_grads(
                elbo, problem.model, problem.guide, problem.batch_args(step), {}
            )
            # What pyro.infer.SVI.step does, for any object with loss_and_grads.
            optim(set(leaves.values()))
            zero_grads(leaves)
            losses.append(loss)
    return records


def track(
    estimators: dict[str, Any],
    problem_factory: Callable[[], Problem],
    steps: int,
    every: int,
    num_samples: int = 100,
    lr: float = 1e-3,
    cv_lr: float = 1e-2,
    seed: int = 0,
    progress: Callable[[str, Any], object] | None = None,
) -> TrackingReport:
    """Train a fresh problem with each estimator and measure that estimator every ``every``
    steps (and at the end) at the problem's fixed ``args``.

    :param dict estimators: ``{name: ELBO instance (deep-copied per run) or factory}``.
    :param problem_factory: ``() -> Problem``, called after clearing the param store and
        seeding, so every estimator starts from the same initial params.
    :param lr, cv_lr: Adam learning rates for model/guide params and for ``cv.*`` params.
    :param progress: optional ``callable(name, record)`` called after each measurement.
    :rtype: ~probnets.experiments.report.TrackingReport
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1, got {every!r}")
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, estimator in estimators.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        problem = problem_factory()
        runs[name] = _track_one(
            name,
            fresh_estimator(estimator),
            problem,
            steps,
            every,
            num_samples,
            lr,
            cv_lr,
            progress,
        )
    return TrackingReport(
        runs=runs,
        meta={
            "steps": steps,
            "every": every,
            "num_samples": num_samples,
            "lr": lr,
            "cv_lr": cv_lr,
            "seed": seed,
            "log": "natural",
        },
    )
