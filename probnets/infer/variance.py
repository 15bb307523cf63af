"""The estimator-comparison harness: bias, variance and cost of gradient estimators.

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

:func:`track` repeats the measurement every ``every`` steps along a training run of each
estimator; :func:`run_variance` runs both on a :class:`Problem` and writes a table, JSON and
figures to a directory.
"""

import copy
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch

import pyro
import pyro.infer
import pyro.optim
import pyro.poutine as poutine
from pyro.poutine.messenger import Messenger

__all__ = [
    "EstimatorStats",
    "EvaluationCounter",
    "Problem",
    "TrackingReport",
    "VarianceReport",
    "measure",
    "run_variance",
    "track",
]

#: Estimators whose control variates or baselines adapt: measure them after tuning.
ADAPTIVE_ESTIMATORS = ("score+avg", "nvil", "rebar", "relax")

#: Names of plates that ELBOs use to vectorize particles; Pyro's is the first.
PARTICLE_PLATE_NAMES = ("num_particles_vectorized",)

#: Mean gradients with more entries than this are summarised (norm only) in JSON.
MAX_JSON_VECTOR = 4096


class EvaluationCounter(Messenger):
    """Counts how often the function it wraps is executed.

    ``executions`` counts calls; ``evaluations`` counts function evaluations, where a call
    inside a vectorized particle plate (see :data:`PARTICLE_PLATE_NAMES`) of size ``K``
    counts as ``K``. Use as ``counter = EvaluationCounter(); counted = counter(model)``.
    """

    def __init__(self, particle_plates=PARTICLE_PLATE_NAMES):
        super().__init__()
        self.particle_plates = tuple(particle_plates)
        self.executions = 0
        self.evaluations = 0
        self._particles = 1

    def reset(self):
        self.executions = 0
        self.evaluations = 0

    def __enter__(self):
        self.executions += 1
        self._particles = 1
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        self.evaluations += self._particles
        return super().__exit__(exc_type, exc_value, traceback)

    def _pyro_post_sample(self, msg):
        # Post-processing sees the complete plate stack, including plates entered outside
        # the wrapped function (which is where ELBOs put their particle plate).
        for frame in msg["cond_indep_stack"]:
            if frame.name in self.particle_plates and frame.size is not None:
                self._particles = max(self._particles, frame.size)


@dataclass
class Problem:
    """A model/guide pair with what the harness needs to measure and train it.

    :param name: short name used in reports and file names.
    :param model, guide: Pyro callables taking ``*args``.
    :param args: the fixed arguments at which gradient variance is measured.
    :param batch: ``step -> args`` for training runs (default: always ``args``).
    :param exact: ``() -> {param name: exact gradient of -ELBO}`` at the current params, or
        ``None`` when no exact gradient is available.
    :param params: names of the params whose gradients are measured (default: the guide's).
    :param evaluate: ``() -> {metric: float}`` recorded along training runs (e.g. the exact
        loss of the toy problem, a held-out ELBO).
    """

    name: str
    model: Callable
    guide: Callable
    args: tuple = ()
    batch: Optional[Callable[[int], tuple]] = None
    exact: Optional[Callable[[], dict]] = None
    params: Optional[list] = None
    evaluate: Optional[Callable[[], dict]] = None

    def batch_args(self, step):
        return self.args if self.batch is None else self.batch(step)


@dataclass
class EstimatorStats:
    """Statistics of one estimator at fixed parameters (see the module docstring)."""

    name: str
    num_samples: int
    num_params: int
    loss: float
    mean_grad_norm: float
    variance: float
    log_variance: float
    snr: float
    evals_per_estimate: float
    guide_evals_per_estimate: float
    seconds_per_estimate: float
    work_variance_seconds: float
    work_variance_evals: float
    time_ratio: float = float("nan")
    cv_tune_steps: int = 0
    bias_norm: Optional[float] = None
    bias_z: Optional[float] = None
    bias_p_value: Optional[float] = None
    cosine: Optional[float] = None
    variance_by_param: dict = field(default_factory=dict)
    mean_grad: dict = field(default_factory=dict, repr=False)

    def to_dict(self):
        out = asdict(self)
        if self.num_params <= MAX_JSON_VECTOR:
            out["mean_grad"] = {
                k: v.detach().cpu().double().tolist() for k, v in self.mean_grad.items()
            }
        else:
            out["mean_grad"] = None
        return out

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        mean_grad = data.pop("mean_grad") or {}
        return cls(
            **data,
            mean_grad={k: torch.tensor(v, dtype=torch.float64) for k, v in mean_grad.items()},
        )


def _atomic_write_text(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _fmt(value, width, precision=4):
    """Right-justified, never wider than ``width`` (precision drops to fit)."""
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float) and math.isfinite(value):
        for p in range(precision, 0, -1):
            text = f"{value:.{p}g}"
            if len(text) < width:
                break
        return text.rjust(width)
    return str(value).rjust(width)


@dataclass
class VarianceReport:
    """Per-estimator :class:`EstimatorStats` at one parameter setting, plus metadata."""

    estimators: dict
    params: list
    num_samples: int
    exact_norm: Optional[float] = None
    meta: dict = field(default_factory=dict)

    _COLUMNS = (
        ("estimator", 22, None),
        ("log_var", 9, "log_variance"),
        ("variance", 10, "variance"),
        ("snr", 8, "snr"),
        ("bias_norm", 10, "bias_norm"),
        ("bias_z", 8, "bias_z"),
        ("cosine", 8, "cosine"),
        ("evals", 6, "evals_per_estimate"),
        ("ms/est", 8, None),
        ("t_ratio", 8, "time_ratio"),
        ("var*s", 10, "work_variance_seconds"),
    )

    def table(self):
        """A fixed-width table, one row per estimator (log is natural)."""
        header = " ".join(
            (name.ljust(w) if attr is None and name == "estimator" else name.rjust(w))
            for name, w, attr in self._COLUMNS
        )
        lines = [header, "-" * len(header)]
        for stats in self.estimators.values():
            cells = []
            for name, width, attr in self._COLUMNS:
                if name == "estimator":
                    cells.append(stats.name[:width].ljust(width))
                elif name == "ms/est":
                    cells.append(_fmt(1e3 * stats.seconds_per_estimate, width, 3))
                else:
                    cells.append(_fmt(getattr(stats, attr), width))
            lines.append(" ".join(cells))
        notes = [
            f"{self.num_samples} gradient samples per estimator over "
            f"{next(iter(self.estimators.values())).num_params if self.estimators else 0} "
            f"parameters ({', '.join(self.params)}); log = natural log of the "
            f"per-parameter variance averaged over parameters.",
            "t_ratio: seconds per estimate relative to "
            f"'{self.meta.get('reference', '?')}' in the same run (absolute times are noisy "
            "on a shared CPU).",
        ]
        if self.exact_norm is not None:
            notes.append(
                f"bias against the exact gradient (norm {self.exact_norm:.4g}); bias_z = "
                "max |z| over parameters (~N(0,1) per parameter if unbiased)."
            )
        return "\n".join(lines + notes)

    def __str__(self):
        return self.table()

    def to_dict(self):
        return {
            "estimators": {k: v.to_dict() for k, v in self.estimators.items()},
            "params": list(self.params),
            "num_samples": self.num_samples,
            "exact_norm": self.exact_norm,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data):
        return cls(
            estimators={
                k: EstimatorStats.from_dict(v) for k, v in data["estimators"].items()
            },
            params=list(data["params"]),
            num_samples=data["num_samples"],
            exact_norm=data["exact_norm"],
            meta=data.get("meta", {}),
        )

    def save_json(self, path):
        """Write the report as JSON (to a temporary file, then renamed)."""
        _atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load_json(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))


def _guide_param_names(guide, args, kwargs):
    with poutine.block(hide_types=["sample"]), poutine.trace(param_only=True) as tr:
        guide(*args, **kwargs)
    return list(tr.trace.nodes)


def _call(elbo, model, guide, args, kwargs):
    """One ``loss_and_grads`` call; returns (loss, {name: unconstrained leaf})."""
    with poutine.trace(param_only=True) as tr:
        loss = elbo.loss_and_grads(model, guide, *args, **kwargs)
    leaves = {name: site["value"].unconstrained() for name, site in tr.trace.nodes.items()}
    return float(loss), leaves


def _zero(leaves):
    for leaf in leaves.values():
        leaf.grad = None


def _tune_control_variates(elbo, model, guide, args, kwargs, steps, lr):
    """Run ``steps`` estimator calls with model and guide params fixed, descending only the
    estimator-owned ``cv.*`` params (Adam); running statistics inside the estimator (e.g.
    decaying-average or NVIL centering) adapt as they would in training."""
    optimizer = None
    for _ in range(steps):
        _, leaves = _call(elbo, model, guide, args, kwargs)
        cv = [leaf for name, leaf in leaves.items() if name.startswith("cv.")]
        if cv:
            if optimizer is None:
                optimizer = torch.optim.Adam(cv, lr=lr)
            optimizer.step()
        _zero(leaves)


def _collect_shared(obj, found, seen):
    """Tensors and modules reachable from an estimator's attributes: they are shared, not
    copied, when its Python state is snapshotted (the param store is restored separately)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (torch.Tensor, torch.nn.Module)):
        found[id(obj)] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _collect_shared(key, found, seen)
            _collect_shared(value, found, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            _collect_shared(value, found, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        _collect_shared(vars(obj), found, seen)


class _EstimatorState:
    """Snapshot of an estimator's Python state (running averages, step counters...)."""

    def __init__(self, elbo):
        self.elbo = elbo
        self.shared = {}
        _collect_shared(vars(elbo), self.shared, set())
        self.state = copy.deepcopy(vars(elbo), dict(self.shared))

    def restore(self):
        vars(self.elbo).clear()
        vars(self.elbo).update(copy.deepcopy(self.state, dict(self.shared)))


def _measure_one(name, elbo, model, guide, args, kwargs, num_samples, params, exact):
    model_counter = EvaluationCounter()
    guide_counter = EvaluationCounter()
    counted_model, counted_guide = model_counter(model), guide_counter(guide)
    # The first call may create params (guide params, estimator control variates).
    _, leaves = _call(elbo, counted_model, counted_guide, args, kwargs)
    _zero(leaves)
    missing = [p for p in params if p not in leaves]
    if missing:
        raise ValueError(
            f"params {missing} are not touched by estimator '{name}'; "
            f"available: {sorted(leaves)}"
        )
    # Estimators may update params or running statistics inside loss_and_grads (e.g.
    # decaying-average baselines); every sample starts from this snapshot so all samples are
    # drawn at the same point.
    snapshot = {k: v.detach().clone() for k, v in leaves.items()}
    state = _EstimatorState(elbo)
    model_counter.reset()
    guide_counter.reset()

    count = 0
    mean = None
    m2 = None
    seconds = 0.0
    loss_sum = 0.0
    for _ in range(num_samples):
        start = time.perf_counter()
        loss, leaves = _call(elbo, counted_model, counted_guide, args, kwargs)
        seconds += time.perf_counter() - start
        loss_sum += loss
        g = torch.cat(
            [
                (
                    leaves[p].grad
                    if leaves[p].grad is not None
                    else torch.zeros_like(leaves[p])
                )
                .detach()
                .reshape(-1)
                .double()
                for p in params
            ]
        )
        # Welford's update keeps memory O(P) for large models.
        count += 1
        if mean is None:
            mean = g.clone()
            m2 = torch.zeros_like(g)
        else:
            delta = g - mean
            mean += delta / count
            m2 += delta * (g - mean)
        _zero(leaves)
        with torch.no_grad():
            for k, v in snapshot.items():
                if k in leaves:
                    leaves[k].copy_(v)
        state.restore()

    var = m2 / max(count - 1, 1)
    shapes = [leaves[p].shape for p in params]
    sizes = [leaves[p].numel() for p in params]
    mean_by_param = {
        p: chunk.reshape(shape)
        for p, chunk, shape in zip(params, mean.split(sizes), shapes)
    }
    var_by_param = {p: float(chunk.mean()) for p, chunk in zip(params, var.split(sizes))}

    variance = float(var.mean())
    nonzero = var > 0
    snr = (
        float((mean[nonzero].abs() / var[nonzero].sqrt()).mean())
        if nonzero.any()
        else float("inf")
    )
    per_second = seconds / num_samples
    evals = model_counter.evaluations / num_samples
    stats = EstimatorStats(
        name=name,
        num_samples=num_samples,
        num_params=int(mean.numel()),
        loss=loss_sum / num_samples,
        mean_grad_norm=float(mean.norm()),
        variance=variance,
        log_variance=math.log(variance) if variance > 0 else float("-inf"),
        snr=snr,
        evals_per_estimate=evals,
        guide_evals_per_estimate=guide_counter.evaluations / num_samples,
        seconds_per_estimate=per_second,
        work_variance_seconds=variance * per_second,
        work_variance_evals=variance * evals,
        variance_by_param=var_by_param,
        mean_grad=mean_by_param,
    )
    if exact is not None:
        e = torch.cat([exact[p].detach().reshape(-1).double().cpu() for p in params])
        m = mean.cpu()
        diff = m - e
        stderr = (var.cpu() / count).sqrt()
        # An entry with zero sample variance is biased iff its mean differs from the exact
        # value by more than rounding in the params' dtype.
        eps = torch.finfo(leaves[params[0]].dtype).eps
        tol = 64 * eps * torch.maximum(e.abs(), m.abs()).clamp(min=torch.finfo(torch.float64).tiny)
        z = torch.where(
            stderr > 0,
            diff.abs() / stderr.clamp(min=torch.finfo(torch.float64).tiny),
            torch.where(
                diff.abs() > tol, torch.full_like(diff, float("inf")), torch.zeros_like(diff)
            ),
        )
        bias_z = float(z.max())
        denom = float(m.norm() * e.norm())
        stats.bias_norm = float(diff.norm())
        stats.bias_z = bias_z
        stats.bias_p_value = min(1.0, z.numel() * math.erfc(bias_z / math.sqrt(2)))
        stats.cosine = float(m @ e) / denom if denom > 0 else None
    return stats


def measure(
    estimators,
    model,
    guide,
    *args,
    num_samples=1000,
    params=None,
    exact=None,
    cv_tune_steps=0,
    cv_lr=1e-2,
    reference=None,
    **kwargs,
):
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
    :rtype: VarianceReport
    """
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
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an int >= 2, got {num_samples!r}")
    if reference is not None and reference not in estimators:
        raise ValueError(f"reference must be one of {list(estimators)}, got {reference!r}")
    if params is None:
        params = _guide_param_names(guide, args, kwargs)
    params = list(params)
    if not params:
        raise ValueError("params is empty: the guide reads no params; pass params=[...]")

    results = {}
    exact_norm = None
    for name, elbo in estimators.items():
        if cv_tune_steps:
            _tune_control_variates(elbo, model, guide, args, kwargs, cv_tune_steps, cv_lr)
        exact_value = exact() if callable(exact) else exact
        if exact_value is not None:
            exact_norm = float(
                torch.cat([exact_value[p].detach().reshape(-1).double() for p in params]).norm()
            )
        results[name] = _measure_one(
            name, elbo, model, guide, args, kwargs, num_samples, params, exact_value
        )
        results[name].cv_tune_steps = cv_tune_steps
    reference = reference or next(iter(results))
    ref_seconds = results[reference].seconds_per_estimate
    for stats in results.values():
        stats.time_ratio = (
            stats.seconds_per_estimate / ref_seconds if ref_seconds > 0 else float("nan")
        )
    return VarianceReport(
        estimators=results,
        params=params,
        num_samples=num_samples,
        exact_norm=exact_norm,
        meta={"reference": reference, "log": "natural", "cv_tune_steps": cv_tune_steps},
    )


@dataclass
class TrackingReport:
    """Variance measurements along each estimator's own training run.

    ``runs[name]`` is a list of records ``{"step", "train_loss", <metrics>, <EstimatorStats
    scalar fields>}``; ``train_loss`` averages the training losses since the previous
    record.
    """

    runs: dict
    meta: dict = field(default_factory=dict)

    def table(self, keys=("train_loss", "log_variance", "snr")):
        """Final record of each run, fixed width."""
        extra = sorted(
            {k for recs in self.runs.values() for k in recs[-1] if k.startswith("metric.")}
        )
        columns = list(keys) + extra
        header = "estimator".ljust(22) + " " + "step".rjust(6) + " " + " ".join(
            c.replace("metric.", "")[:14].rjust(14) for c in columns
        )
        lines = [header, "-" * len(header)]
        for name, records in self.runs.items():
            last = records[-1]
            lines.append(
                name[:22].ljust(22)
                + " "
                + str(last["step"]).rjust(6)
                + " "
                + " ".join(_fmt(last.get(c), 14) for c in columns)
            )
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def to_dict(self):
        return {"runs": self.runs, "meta": self.meta}

    @classmethod
    def from_dict(cls, data):
        return cls(runs=data["runs"], meta=data.get("meta", {}))

    def save_json(self, path):
        _atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load_json(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))


_SCALAR_FIELDS = (
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


def _fresh(estimator):
    """An estimator for a new run: call a factory (e.g. a class), or deep-copy an instance."""
    if isinstance(estimator, type) or not hasattr(estimator, "loss_and_grads"):
        return estimator()
    return copy.deepcopy(estimator)


def track(
    estimators,
    problem_factory,
    steps,
    every,
    num_samples=100,
    lr=1e-3,
    cv_lr=1e-2,
    seed=0,
    progress=None,
):
    """Train a fresh problem with each estimator and measure that estimator every ``every``
    steps (and at the end) at the problem's fixed ``args``.

    :param dict estimators: ``{name: ELBO instance (deep-copied per run) or factory}``.
    :param problem_factory: ``() -> Problem``, called after clearing the param store and
        seeding, so every estimator starts from the same initial params.
    :param lr, cv_lr: Adam learning rates for model/guide params and for ``cv.*`` params.
    :param progress: optional ``callable(name, record)`` called after each measurement.
    :rtype: TrackingReport
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1, got {every!r}")
    runs = {}
    for name, estimator in estimators.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        problem = problem_factory()
        elbo = _fresh(estimator)
        optim = pyro.optim.Adam(
            lambda param_name: {"lr": cv_lr if param_name.startswith("cv.") else lr}
        )
        records = []
        losses = []
        for step in range(steps + 1):
            if step % every == 0 or step == steps:
                stats = _measure_one(
                    name,
                    elbo,
                    problem.model,
                    problem.guide,
                    problem.args,
                    {},
                    num_samples,
                    problem.params
                    or _guide_param_names(problem.guide, problem.args, {}),
                    problem.exact() if problem.exact is not None else None,
                )
                record = {"step": step}
                record["train_loss"] = sum(losses) / len(losses) if losses else None
                record.update({k: getattr(stats, k) for k in _SCALAR_FIELDS})
                if problem.evaluate is not None:
                    record.update(
                        {f"metric.{k}": float(v) for k, v in problem.evaluate().items()}
                    )
                records.append(record)
                losses = []
                if progress is not None:
                    progress(name, record)
            if step < steps:
                loss, leaves = _call(
                    elbo, problem.model, problem.guide, problem.batch_args(step), {}
                )
                # What pyro.infer.SVI.step does, for any object with loss_and_grads.
                optim(set(leaves.values()))
                _zero(leaves)
                losses.append(loss)
        runs[name] = records
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


def run_variance(
    problem_factory,
    estimators,
    out_dir,
    num_samples=1000,
    cv_tune_steps=0,
    cv_lr=1e-2,
    track_steps=0,
    track_every=100,
    track_samples=100,
    lr=1e-3,
    seed=0,
    figures=True,
    progress=None,
):
    """Measure, optionally track along training, and write the results to ``out_dir``.

    Writes ``variance.txt`` (the table), ``variance.json``, ``variance.png`` (log-variance
    bars); with ``track_steps > 0`` also ``tracking.txt``, ``tracking.json`` and
    ``tracking_log_variance.png`` / ``tracking_<metric>.png``. Figures are drawn by
    :mod:`probnets.viz.variance`, imported only when ``figures=True``.

    :param problem_factory: ``() -> Problem`` (see :class:`Problem`).
    :param dict estimators: ``{name: ELBO instance or zero-argument factory}``; each is
        measured on a fresh problem (param store cleared, seeded) at its initial params.
    :param cv_tune_steps: steps of control-variate tuning before measuring (see
        :func:`measure`): an int for every estimator, or ``{name: int}`` so that e.g. a
        learned and an untuned REBAR can be compared in one table.
    :returns: ``(VarianceReport, TrackingReport or None)``.
    """
    os.makedirs(out_dir, exist_ok=True)
    stats = {}
    problem = None
    for name, estimator in estimators.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        problem = problem_factory()
        report = measure(
            {name: _fresh(estimator)},
            problem.model,
            problem.guide,
            *problem.args,
            num_samples=num_samples,
            params=problem.params,
            exact=problem.exact,
            cv_tune_steps=(
                cv_tune_steps.get(name, 0)
                if isinstance(cv_tune_steps, dict)
                else cv_tune_steps
            ),
            cv_lr=cv_lr,
        )
        stats[name] = report.estimators[name]
        if progress is not None:
            progress(name, stats[name])
    ref = next(iter(stats.values())).seconds_per_estimate
    for s in stats.values():
        s.time_ratio = s.seconds_per_estimate / ref if ref > 0 else float("nan")
    variance_report = VarianceReport(
        estimators=stats,
        params=report.params,
        num_samples=num_samples,
        exact_norm=report.exact_norm,
        meta={
            "problem": problem.name,
            "reference": next(iter(stats)),
            "log": "natural",
            "seed": seed,
        },
    )
    _atomic_write_text(os.path.join(out_dir, "variance.txt"), variance_report.table() + "\n")
    variance_report.save_json(os.path.join(out_dir, "variance.json"))

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
        tracking.meta["problem"] = problem.name
        _atomic_write_text(os.path.join(out_dir, "tracking.txt"), tracking.table() + "\n")
        tracking.save_json(os.path.join(out_dir, "tracking.json"))

    if figures:
        import matplotlib.pyplot as plt

        from probnets.viz.variance import plot_log_variance, plot_tracking

        figs = []
        figs.append(plot_log_variance(
            variance_report,
            path=os.path.join(out_dir, "variance.png"),
            title=f"{problem.name}: log-variance at initial params",
        ))
        if tracking is not None:
            figs.append(plot_tracking(
                tracking,
                "log_variance",
                path=os.path.join(out_dir, "tracking_log_variance.png"),
                title=f"{problem.name}: log-variance along training",
            ))
            metrics = {k for recs in tracking.runs.values() for k in recs[-1]}
            for key in sorted(k for k in metrics if k.startswith("metric.")):
                figs.append(plot_tracking(
                    tracking,
                    key,
                    path=os.path.join(out_dir, f"tracking_{key[7:]}.png"),
                    title=f"{problem.name}: {key[7:]} along training",
                ))
        for fig in figs:
            plt.close(fig)
    return variance_report, tracking
