"""Bias, variance and cost of gradient estimators at fixed parameters.

Any Pyro ELBO (``Trace_ELBO``, ``TraceGraph_ELBO`` or a probnets estimator) is treated as a
black box that, given ``(model, guide, *args)``, leaves one stochastic estimate ``g`` of the
gradient of the loss ``-ELBO`` in the ``.grad`` of each param. At *fixed* parameters
:func:`measure` draws ``S`` independent estimates ``g_1..g_S`` and reports, over the ``P``
scalar entries of the chosen params (by default the guide's, whose gradients are the noisy
ones):

* mean gradient ``m = (1/S) sum_s g_s`` and per-entry variance ``v_p`` (unbiased, ``S - 1``);
* ``variance = (1/P) sum_p v_p``, the per-parameter variance averaged over parameters, and
  ``log_variance = ln(variance)`` -- the natural log, the quantity plotted in the REBAR
  (Tucker et al. 2017, Fig. 2-3) and RELAX (Grathwohl et al. 2018, Fig. 3) papers;
* ``snr = (1/P) sum_p |m_p| / sqrt(v_p)``, the per-parameter signal-to-noise ratio of
  Rainforth et al. (2018, "Tighter variational bounds are not necessarily better", eq. 4),
  averaged over entries with non-zero variance;
* against an exact gradient ``e`` (e.g. from :func:`probnets.infer.exact.exact_gradient`):
  ``bias_norm = ||m - e||``, per-entry z-scores ``z_p = (m_p - e_p) / sqrt(v_p / S)``
  summarised by ``bias_z = max_p |z_p|`` and its Bonferroni p-value
  ``min(1, P * erfc(bias_z / sqrt(2)))`` (small p-value: the estimator is biased), and
  ``cosine = <m, e> / (||m|| ||e||)``;
* cost: model executions per estimate (a vectorized particle plate of size ``K`` counts as
  ``K`` evaluations), guide executions, seconds per estimate, and the work-normalized
  variances ``variance x seconds`` and ``variance x evaluations``.

Seconds are wall-clock on whatever machine runs the harness; on a shared CPU compare the
``time_ratio`` column (seconds relative to a reference estimator measured in the same run),
not absolute times.
"""

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from probnets.experiments.counter import EvaluationCounter
from probnets.experiments.report import EstimatorStats, VarianceReport
from probnets.experiments.util import (
    EstimatorState,
    guide_param_names,
    loss_and_grads,
    zero_grads,
)

__all__ = [
    "ADAPTIVE_ESTIMATORS",
    "measure",
    "measure_estimator",
    "set_time_ratios",
    "tune_control_variates",
]

#: Estimators whose control variates or baselines adapt: measure them after tuning.
ADAPTIVE_ESTIMATORS = ("score+avg", "score+avg-site", "nvil", "rebar", "relax")


def tune_control_variates(
    elbo: Any,
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    steps: int,
    lr: float,
) -> None:
    """Run ``steps`` estimator calls with model and guide params fixed, descending only the
    estimator-owned ``cv.*`` params (Adam); running statistics inside the estimator (e.g.
    decaying-average or NVIL centering) adapt as they would in training."""
    optimizer: torch.optim.Optimizer | None = None
    for _ in range(steps):
        _, leaves = loss_and_grads(elbo, model, guide, args, kwargs)
        cv = [leaf for name, leaf in leaves.items() if name.startswith("cv.")]
        if cv:
            if optimizer is None:
                optimizer = torch.optim.Adam(cv, lr=lr)
            optimizer.step()
        zero_grads(leaves)


#: An exact gradient: ``{param name: tensor}``.
Gradient = Mapping[str, torch.Tensor]


class _RunningMoments:
    """Welford's running mean and sum of squared deviations, O(P) memory for any number of
    samples (Welford 1962)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, g: torch.Tensor) -> None:
        self.count += 1
        if self.mean is None or self.m2 is None:
            self.mean = g.clone()
            self.m2 = torch.zeros_like(g)
        else:
            delta = g - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (g - self.mean)

    def variance(self) -> torch.Tensor:
        """Unbiased per-entry variance (divides by ``count - 1``)."""
        assert self.m2 is not None, "no samples yet"
        return self.m2 / max(self.count - 1, 1)


def _flat_gradient(leaves: Mapping[str, torch.Tensor], params: Sequence[str]) -> torch.Tensor:
    """The ``.grad`` of ``params`` (zero where a param got none), flattened, in float64."""
    grads = [leaves[p].grad for p in params]
    return torch.cat(
        [
            (torch.zeros_like(leaves[p]) if g is None else g).detach().reshape(-1).double()
            for p, g in zip(params, grads)
        ]
    )


def _warm_up(
    name: str,
    elbo: Any,
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    params: Sequence[str],
) -> dict[str, torch.Tensor]:
    """The first call may create params (guide params, estimator control variates); returns
    the values every sample starts from."""
    _, leaves = loss_and_grads(elbo, model, guide, args, kwargs)
    zero_grads(leaves)
    missing = [p for p in params if p not in leaves]
    if missing:
        raise ValueError(
            f"params {missing} are not touched by estimator '{name}'; available: {sorted(leaves)}"
        )
    return {k: v.detach().clone() for k, v in leaves.items()}


def _draw_estimates(
    elbo: Any,
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    num_samples: int,
    params: Sequence[str],
    snapshot: Mapping[str, torch.Tensor],
) -> tuple[_RunningMoments, float, float, dict[str, torch.Tensor]]:
    """``num_samples`` estimates, each from the params in ``snapshot`` and the estimator's
    current Python state. Returns ``(moments, mean loss, seconds per estimate, leaves)``."""
    # Estimators may update params or running statistics inside loss_and_grads (e.g.
    # decaying-average baselines); every sample starts from the snapshot so all samples are
    # drawn at the same point.
    state = EstimatorState(elbo)
    moments = _RunningMoments()
    seconds = 0.0
    loss_sum = 0.0
    for _ in range(num_samples):
        start = time.perf_counter()
        loss, leaves = loss_and_grads(elbo, model, guide, args, kwargs)
        seconds += time.perf_counter() - start
        loss_sum += loss
        moments.update(_flat_gradient(leaves, params))
        zero_grads(leaves)
        with torch.no_grad():
            for k, v in snapshot.items():
                if k in leaves:
                    leaves[k].copy_(v)
        state.restore()
    return moments, loss_sum / num_samples, seconds / num_samples, leaves


def _signal_to_noise(mean: torch.Tensor, var: torch.Tensor) -> float:
    nonzero = var > 0
    if not nonzero.any():
        return float("inf")
    return float((mean[nonzero].abs() / var[nonzero].sqrt()).mean())


def _bias_statistics(
    mean: torch.Tensor,
    var: torch.Tensor,
    count: int,
    exact: Gradient,
    params: Sequence[str],
    dtype: torch.dtype,
) -> dict[str, float | None]:
    """``bias_norm``, ``bias_z``, ``bias_p_value`` and ``cosine`` of the mean gradient against
    the exact one (see the module docstring)."""
    e = torch.cat([exact[p].detach().reshape(-1).double().cpu() for p in params])
    m = mean.cpu()
    diff = m - e
    stderr = (var.cpu() / count).sqrt()
    tiny = torch.finfo(torch.float64).tiny
    # An entry with zero sample variance is biased iff its mean differs from the exact value
    # by more than rounding in the params' dtype.
    tol = 64 * torch.finfo(dtype).eps * torch.maximum(e.abs(), m.abs()).clamp(min=tiny)
    z = torch.where(
        stderr > 0,
        diff.abs() / stderr.clamp(min=tiny),
        torch.where(diff.abs() > tol, torch.full_like(diff, float("inf")), torch.zeros_like(diff)),
    )
    bias_z = float(z.max())
    denom = float(m.norm() * e.norm())
    return {
        "bias_norm": float(diff.norm()),
        "bias_z": bias_z,
        "bias_p_value": min(1.0, z.numel() * math.erfc(bias_z / math.sqrt(2))),
        "cosine": float(m @ e) / denom if denom > 0 else None,
    }


def measure_estimator(
    name: str,
    elbo: Any,
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    num_samples: int,
    params: Sequence[str],
    exact: Gradient | None,
) -> EstimatorStats:
    """:class:`~probnets.experiments.report.EstimatorStats` of one estimator at the current
    params: ``num_samples`` estimates of the gradient of ``params``, compared with ``exact``
    (``{name: tensor}`` or ``None``). Params and the estimator's Python state are restored
    after every sample, so nothing moves."""
    model_counter = EvaluationCounter()
    guide_counter = EvaluationCounter()
    counted_model, counted_guide = model_counter(model), guide_counter(guide)
    snapshot = _warm_up(name, elbo, counted_model, counted_guide, args, kwargs, params)
    model_counter.reset()
    guide_counter.reset()
    moments, loss, per_second, leaves = _draw_estimates(
        elbo, counted_model, counted_guide, args, kwargs, num_samples, params, snapshot
    )

    mean, var = moments.mean, moments.variance()
    assert mean is not None  # num_samples >= 1
    sizes = [leaves[p].numel() for p in params]
    variance = float(var.mean())
    evals = model_counter.evaluations / num_samples
    stats = EstimatorStats(
        name=name,
        num_samples=num_samples,
        num_params=int(mean.numel()),
        loss=loss,
        mean_grad_norm=float(mean.norm()),
        variance=variance,
        log_variance=math.log(variance) if variance > 0 else float("-inf"),
        snr=_signal_to_noise(mean, var),
        evals_per_estimate=evals,
        guide_evals_per_estimate=guide_counter.evaluations / num_samples,
        seconds_per_estimate=per_second,
        work_variance_seconds=variance * per_second,
        work_variance_evals=variance * evals,
        variance_by_param={p: float(chunk.mean()) for p, chunk in zip(params, var.split(sizes))},
        mean_grad={
            p: chunk.reshape(leaves[p].shape) for p, chunk in zip(params, mean.split(sizes))
        },
    )
    if exact is not None:
        dtype = leaves[params[0]].dtype
        for key, value in _bias_statistics(mean, var, moments.count, exact, params, dtype).items():
            setattr(stats, key, value)
    return stats


def set_time_ratios(stats: Mapping[str, EstimatorStats], reference: str) -> None:
    """Set each ``EstimatorStats.time_ratio`` in ``{name: stats}`` to its seconds per estimate
    over those of ``stats[reference]``."""
    ref_seconds = stats[reference].seconds_per_estimate
    for s in stats.values():
        s.time_ratio = s.seconds_per_estimate / ref_seconds if ref_seconds > 0 else float("nan")


def _check_estimators(estimators: object) -> None:
    if not isinstance(estimators, dict) or not estimators:
        raise TypeError(
            f"estimators must be a non-empty dict {{name: ELBO}}, got {type(estimators).__name__}"
        )
    for name, elbo in estimators.items():
        if not hasattr(elbo, "loss_and_grads"):
            raise TypeError(
                f"estimators['{name}'] must have loss_and_grads (a Pyro ELBO), "
                f"got {type(elbo).__name__}"
            )


def _exact_norm(exact: Gradient, params: Sequence[str]) -> float:
    return float(torch.cat([exact[p].detach().reshape(-1).double() for p in params]).norm())


def measure(
    estimators: dict[str, Any],
    model: Callable[..., Any],
    guide: Callable[..., Any],
    *args: Any,
    num_samples: int = 1000,
    params: Sequence[str] | None = None,
    exact: Gradient | Callable[[], Gradient] | None = None,
    cv_tune_steps: int = 0,
    cv_lr: float = 1e-2,
    reference: str | None = None,
    **kwargs: Any,
) -> VarianceReport:
    """Measure bias, variance and cost of each estimator at the current (fixed) params.

    :param dict estimators: ``{name: ELBO instance}``; each needs ``loss_and_grads``.
    :param model, guide: Pyro callables; ``*args``/``**kwargs`` are passed to both.
    :param int num_samples: independent gradient estimates per estimator (>= 2).
    :param params: names of the params whose gradient is measured; default: every param the
        guide reads.
    :param exact: ``{name: tensor}`` exact gradient of ``-ELBO`` (e.g. from
        :func:`~probnets.infer.exact.exact_gradient`), or a zero-argument callable
        returning it; enables the bias columns.
    :param int cv_tune_steps: before measuring, descend the estimator-owned ``cv.*``
        params (e.g. REBAR's eta and temperature) for this many Adam steps at learning rate
        ``cv_lr`` with model and guide params fixed; running statistics (decaying-average
        and NVIL baselines) adapt during these steps too. During measurement nothing is
        updated: params and the estimator's Python state are restored after every sample.
    :param str reference: estimator whose seconds per estimate define ``time_ratio``
        (default: the first).
    :rtype: ~probnets.experiments.report.VarianceReport
    """
    _check_estimators(estimators)
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an int >= 2, got {num_samples!r}")
    if reference is not None and reference not in estimators:
        raise ValueError(f"reference must be one of {list(estimators)}, got {reference!r}")
    if params is None:
        params = guide_param_names(guide, args, kwargs)
    names = list(params)
    if not names:
        raise ValueError("params is empty: the guide reads no params; pass params=[...]")

    results: dict[str, EstimatorStats] = {}
    exact_norm = None
    for name, elbo in estimators.items():
        if cv_tune_steps:
            tune_control_variates(elbo, model, guide, args, kwargs, cv_tune_steps, cv_lr)
        exact_value = exact() if callable(exact) else exact
        if exact_value is not None:
            exact_norm = _exact_norm(exact_value, names)
        results[name] = measure_estimator(
            name, elbo, model, guide, args, kwargs, num_samples, names, exact_value
        )
        results[name].cv_tune_steps = cv_tune_steps
    reference = reference or next(iter(results))
    set_time_ratios(results, reference)
    return VarianceReport(
        estimators=results,
        params=names,
        num_samples=num_samples,
        exact_norm=exact_norm,
        meta={"reference": reference, "log": "natural", "cv_tune_steps": cv_tune_steps},
    )
