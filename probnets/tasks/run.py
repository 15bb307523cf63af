"""One call per training run: :func:`run_task` (and :func:`evaluate_task` for checkpoints).

``run_task(config)`` does what ``probnets train NAME ...`` does, for a notebook or a script::

    from probnets.tasks import VAEConfig, run_task
    summary = run_task(VAEConfig(steps=300, out="runs/vae", hidden_dim=32))

The task is the one whose config class ``config`` is. The run directory ``config.out``
(default ``runs/NAME-TIMESTAMP``) receives ``config.json`` (every setting, the model's class
and constructor arguments, library versions, the git commit), ``last.pt``, ``metrics.csv``,
``eval.csv``, the task's figures and ``summary.json``, whose content is also returned.

To continue a run, resume it with the configuration it was started with, changing only the
settings of :attr:`RunConfig.resumable_fields` (such as ``steps``)::

    config = load_config("runs/vae")
    run_task(dataclasses.replace(config, steps=600, resume=True))

A resumed config that contradicts the run's ``config.json`` elsewhere is refused with a
:class:`ConfigError` naming the field and both values; resuming a run that already reached
``steps`` changes nothing and returns its summary.

Progress is reported through the ``probnets`` logger (the command line prints it) and a tqdm
bar (``progress=False`` hides it).
"""

import dataclasses
import datetime
import json
import logging
import os
import pickle
import platform
import subprocess
import warnings
from collections.abc import Callable
from typing import Any, cast

import pyro
import torch

import probnets
from probnets.files import atomic_write
from probnets.tasks.base import Task, TaskRun, task_for, tasks
from probnets.tasks.config import ConfigError, EvalConfig, RunConfig, UnsupportedSettingError
from probnets.train import (
    CHECKPOINT_NAME,
    Callback,
    Evaluation,
    LossObjective,
    StepMetrics,
    SVIObjective,
    TrainConfig,
    Trainer,
    TrainResult,
    distributed,
    parse_schedule,
    resolve_device,
)
from probnets.train.guard import invalid_parameter
from probnets.train.precision import check_precision_supported

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"

logger = logging.getLogger("probnets")


def run_task(config: RunConfig) -> dict[str, Any] | None:
    """Train the task ``config`` describes and return its summary.

    The run owns Pyro's global state: it clears the param store and seeds every generator
    with ``config.seed`` before building the model.

    :param config: a task config, e.g. :class:`~probnets.tasks.VAEConfig`.
    :returns: dict with ``task``, ``steps``, ``bad_steps``, ``data``, ``checkpoint``,
        ``final`` (the last metrics row), ``eval`` (the last evaluation) and ``warnings``
        (what the results should be read with, such as a loss that exploded), as written to
        ``summary.json`` in the run directory; ``None`` on ranks other than 0 of a
        distributed run.
    :raises ConfigError: for settings that cannot be used (the field is ``error.field``);
        :class:`UnsupportedSettingError` for valid ones this task or machine cannot run.
    :raises probnets.train.NonFiniteLossError: when the run diverges (``last.pt`` then holds
        the last good parameters, and resuming with a lower ``lr`` continues from them).
    :raises probnets.train.CheckpointWriteError: when a checkpoint cannot be written (a full
        disk); the previous one is intact.
    """
    task = task_for(config)
    device = _select_device(config)
    main_process = distributed.is_main_process()
    out = _run_directory(config, task.name, main_process)
    config = dataclasses.replace(config, out=out)
    if config.resume:
        _check_resumed_config(config, task)
        finished = _finished_run_summary(config)
        if finished is not None:
            return finished if main_process else None
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)
    run = task.build(config, device)
    if distributed.world_size() > 1:  # same model on every rank, then each draws its own noise
        pyro.set_rng_seed(config.seed + 7919 * distributed.rank())
    if config.compile:
        if run.is_svi:
            raise UnsupportedSettingError(
                "compile",
                f"{{compile}}: {task.name} is an SVI model; Pyro's effect handlers "
                "break the compiled graph at every sample and param site, so "
                "compiling its step does not help",
            )
        # torch's stub types compile's result as a union with its decorator form, which
        # only a call without a function returns.
        run.objective_fn = cast(Callable[..., torch.Tensor], torch.compile(run.objective_fn))
    if main_process:
        write_json(os.path.join(out, CONFIG_FILE), run_record(task, run, config))
        logger.info(
            "train %s: data=%s device=%s dtype=%s seed=%s ranks=%s out=%s",
            task.name,
            run.data_source or "n/a",
            device,
            config.dtype,
            config.seed,
            distributed.world_size(),
            config.out,
        )
    result = _make_trainer(task, run, config).run()
    if not main_process:
        return None
    _finish(task, run, result, config)
    summary = {
        "task": task.name,
        "steps": result.step,
        "bad_steps": result.bad_steps,
        "data": run.data_source,
        "checkpoint": result.checkpoint,
        "final": result.history[-1] if result.history else {},
        "eval": result.eval_history[-1] if result.eval_history else {},
        "warnings": list(result.warnings),
    }
    write_json(os.path.join(out, SUMMARY_FILE), summary)
    return summary


def _finish(task: Task[Any, Any], run: TaskRun, result: TrainResult, config: RunConfig) -> None:
    """The task's figures and final evaluations; a model whose parameters build invalid
    distributions (a run that diverged but had not reached ``max_bad_steps``) gets none,
    with a warning, instead of a traceback after training."""
    try:
        task.finish(run, result, config)
    except ValueError as error:
        reason = invalid_parameter(error)
        if reason is None:
            raise
        message = (
            f"{task.name}: figures and final evaluations skipped: the trained "
            f"parameters build an invalid distribution ({reason})"
        )
        result.warnings.append(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)


def load_config(out: str | os.PathLike[str]) -> RunConfig:
    """The config of the run in directory ``out``, read from its ``config.json``."""
    path = os.path.join(os.fspath(out), CONFIG_FILE)
    try:
        with open(path) as f:
            record = json.load(f)
        config_class = tasks()[record["task"]].config_class
        known = {spec.name for spec in dataclasses.fields(config_class)}
        values = {name: value for name, value in record["config"].items() if name in known}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            "out", f"{{out}} {out}: no readable {CONFIG_FILE} ({type(error).__name__}: {error})"
        ) from None
    return config_class(**dict(values, out=os.fspath(out)))


def _check_resumed_config(config: RunConfig, task: Task[Any, Any]) -> None:
    """Refuse to continue the run in ``config.out`` with settings other than its own (runs
    from before ``config.json`` are not checked)."""
    assert config.out is not None  # run_task has chosen the run directory
    if not os.path.exists(os.path.join(config.out, CONFIG_FILE)):
        return
    stored = load_config(config.out)
    if task_for(stored) is not task:
        raise ConfigError(
            "resume",
            f"{{resume}}: the run in {config.out} is a "
            f"{task_for(stored).name} run, not {task.name}",
        )
    may_change = ", ".join(
        f"{{{name}}}" for name in sorted(config.resumable_fields) if name not in ("out", "resume")
    )
    for spec in dataclasses.fields(stored):
        name = spec.name
        old, new = getattr(stored, name), getattr(config, name, None)
        if name not in config.resumable_fields and old != new:
            raise ConfigError(
                name,
                f"{{{name}}} {new!r} contradicts the run in {config.out}, "
                f"started with {old!r} ({CONFIG_FILE}); only {may_change} "
                "may change on resume",
            )


def _finished_run_summary(config: RunConfig) -> dict[str, Any] | None:
    """The summary of the run in ``config.out`` when its checkpoint has reached
    ``config.steps`` already (so resuming has nothing to do), else ``None``."""
    assert config.out is not None  # run_task has chosen the run directory
    try:
        with open(os.path.join(config.out, SUMMARY_FILE)) as f:
            summary = json.load(f)
        # mmap: only the step is read, not the parameters
        step = torch.load(
            os.path.join(config.out, CHECKPOINT_NAME),
            map_location="cpu",
            weights_only=True,
            mmap=True,
        )["step"]
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
    ):
        return None  # no summary, or a checkpoint the trainer will report on
    if step < config.steps or summary.get("steps") != step:
        return None
    logger.info(
        "resume: the run in %s is at step %d and steps=%d asks for no more; nothing to do",
        config.out,
        step,
        config.steps,
    )
    return summary


def evaluate_task(config: EvalConfig) -> dict[str, Any]:
    """Evaluate a checkpoint as the task's eval config (e.g.
    :class:`~probnets.tasks.AIREvalConfig`) says; returns a dict of results.

    :raises ConfigError: naming ``checkpoint`` or ``data`` when they cannot be used.
    """
    try:
        device = resolve_device(config.device)
    except ValueError as error:
        raise UnsupportedSettingError("device", str(error)) from None
    return task_for(config).evaluate(config, device)


def _make_trainer(task: Task[Any, Any], run: TaskRun, config: RunConfig) -> Trainer:
    """The :class:`~probnets.train.Trainer` of ``run`` under ``config``: the one place where a
    task run meets the Trainer's constructor."""
    param_groups = {pattern: dict(group) for pattern, group in run.param_groups.items()}
    if config.cv_lr is not None:
        param_groups.setdefault("cv.*", {})["lr"] = config.cv_lr
        param_groups.setdefault("*baseline*", {})["lr"] = config.cv_lr
    options: dict[str, Any] = dict(
        steps=config.steps,
        lr=config.lr,
        param_groups=param_groups,
        clip_norm=config.clip_norm,
        weight_decay=config.weight_decay,
        lr_schedule=parse_schedule(config.lr_schedule, config.steps),
        schedules=run.schedules,
        eval_every=config.eval_interval,
        log_every=config.log_every,
        out_dir=config.out,
        checkpoint_every=config.checkpoint_every,
        resume=config.resume,
        max_bad_steps=config.max_bad_steps,
        progress=config.progress,
        tensorboard=config.tensorboard,
        precision=config.precision,
        checkpoint_extra={
            "task": task.name,
            "config": run.config,
            "model": run.model,
            "data_source": run.data_source,
        },
        description=f"train {task.name}",
    )
    try:
        train_config = TrainConfig(**options)
    except ValueError as error:  # TrainConfig names its field first, as in "lr must be ..."
        field = str(error).split(" ", 1)[0]
        raise ConfigError("out" if field == "out_dir" else field, str(error)) from None
    # An SVI run sets its model, guide and ELBO, a deterministic one its objective and module
    # (TaskRun's contract, which the types of its optional fields cannot say).
    objective: SVIObjective | LossObjective = (
        SVIObjective(
            cast(Callable[..., Any], run.model_fn),
            cast(Callable[..., Any], run.guide_fn),
            cast("pyro.infer.ELBO", run.loss),
            modules=run.state_modules,
        )
        if run.is_svi
        else LossObjective(
            cast(Callable[..., torch.Tensor], run.objective_fn), cast(torch.nn.Module, run.module)
        )
    )
    callbacks: list[Callback] = [StepMetrics(run.metrics_fn)] if run.metrics_fn is not None else []
    callbacks += list(run.callbacks)  # before the evaluation, which may use their state
    callbacks += [Evaluation(run.eval_fn)] if run.eval_fn is not None else []
    try:
        return Trainer(objective, run.data, train_config, callbacks=callbacks)
    except ImportError as error:  # tensorboard=True without the package
        raise UnsupportedSettingError("tensorboard", str(error)) from None


def _select_device(config: RunConfig) -> torch.device:
    if distributed.launched_distributed():
        # torchrun: every rank builds the same model (same seed), then draws its own noise.
        device = distributed.init_distributed(config.device)
    else:
        try:
            device = resolve_device(config.device)
        except ValueError as error:
            raise UnsupportedSettingError("device", str(error)) from None
    try:
        check_precision_supported(config.precision, device)
    except ValueError as error:
        raise UnsupportedSettingError("precision", str(error)) from None
    return device


def _run_directory(config: RunConfig, name: str, create: bool) -> str:
    """The run directory of ``config`` (``runs/NAME-TIMESTAMP`` when unset), checked against
    ``resume`` and created on the main process."""
    out = config.out
    if out is None:
        if config.resume:
            raise ConfigError("resume", "{resume} needs {out} (the run directory to continue)")
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = os.path.join("runs", f"{name}-{stamp}")
        if distributed.world_size() > 1:  # every rank uses rank 0's directory
            out = distributed.broadcast_object(out)
    out = os.fspath(out)
    _check_run_directory(out, config.resume)
    if create:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                "out", f"cannot create the run directory {out}: {error.strerror}"
            ) from None
        if not os.access(out, os.W_OK | os.X_OK):
            raise ConfigError("out", f"the run directory {out} is not writable")
    return out


def _check_run_directory(out: str, resume: bool) -> None:
    """A new run needs a directory without a run in it; a resumed one, its checkpoint."""
    checkpoint = os.path.join(out, CHECKPOINT_NAME)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError("out", f"{{out}} {out} is a file, not a directory")
    if resume and not os.path.exists(checkpoint):
        raise ConfigError(
            "resume",
            f"{{resume}}: no checkpoint at {checkpoint} (a run stopped "
            "before its first checkpoint starts again without {resume})",
        )
    if not resume and os.path.exists(checkpoint):
        raise ConfigError(
            "out",
            f"{out} already holds a run; pass {{resume}} to continue it or choose another {{out}}",
        )


def run_record(task: Task[Any, Any], run: TaskRun, config: RunConfig) -> dict[str, Any]:
    """What ``config.json`` holds: the task, every config field, the model's class and
    constructor arguments, the data source, library versions and the git commit."""
    return {
        "task": task.name,
        "config_class": f"{type(config).__module__}.{type(config).__qualname__}",
        "config": config.to_dict(),
        "model": run.model,
        "model_summary": run.config,
        "data_source": run.data_source,
        "versions": {
            "probnets": probnets.__version__,
            "torch": torch.__version__,
            "pyro": pyro.__version__,
            "python": platform.python_version(),
        },
        "git_commit": git_commit(os.path.dirname(os.path.abspath(probnets.__file__))),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def git_commit(directory: str) -> str | None:
    """The commit checked out where ``directory`` lies (``"...-dirty"`` with local changes),
    or ``None`` outside a git work tree or without git."""

    def git(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", directory, *arguments],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def write_json(path: str | os.PathLike[str], value: Any) -> None:
    """Write ``value`` as JSON to ``path`` atomically (temporary file, fsync, rename), with
    the permissions the user's umask gives a new file."""
    with atomic_write(path) as f:
        json.dump(value, f, indent=2, default=_json_default)
        f.write("\n")


def _json_default(value: Any) -> float:
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    return float(value)  # numpy scalars; anything else fails as json would
