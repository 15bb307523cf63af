"""What a training task is made of.

A :class:`Task` pairs a config class (a :class:`~probnets.tasks.config.RunConfig` subclass
holding the task's options) with the code that turns a config into everything a
:class:`~probnets.train.Trainer` needs (:class:`TaskRun`) and writes the task's figures when
the run ends. :func:`probnets.tasks.run_task` does the rest: seeding, device selection, the
run directory, resuming. The command line (:mod:`probnets.cli`) only parses flags into a
config and calls it.
"""

import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import pyro.infer
import torch
from torch import nn

from probnets.loading import Loadable, model_record  # noqa: F401  (tasks import it from here)
from probnets.tasks.config import ConfigError, EvalConfig, RunConfig
from probnets.train import Anneal, Callback, Trainer, TrainResult

ConfigT = TypeVar("ConfigT", bound=RunConfig)
EvalConfigT = TypeVar("EvalConfigT", bound=EvalConfig)
LoadableT = TypeVar("LoadableT", bound=Loadable)
TaskT = TypeVar("TaskT", bound="Task[Any, Any]")

# ``fn(trainer) -> {name: scalar}``: a row of metrics or of an evaluation.
MetricsFn = Callable[[Trainer], dict[str, Any]]

_REGISTRY: dict[str, "Task[Any, Any]"] = {}


@dataclass
class TaskRun:
    """Everything a training run needs; ``model_fn is None`` means a deterministic objective.

    ``config`` is the task's summary of the model (kept in the checkpoint's ``extra["config"]``,
    as before); ``model`` is the model's class path and constructor arguments (see
    :func:`model_record`), from which the model can be rebuilt without the task.
    ``callbacks`` are further :class:`~probnets.train.Callback` objects of the run and
    ``state_modules`` further modules whose state the checkpoints hold (e.g. a moving average
    of the weights), for SVI runs.
    """

    # Whatever a Trainer takes: tensors or arrays, a batch iterator such as a BatchSampler, or
    # an iterable of batches such as a DataLoader.
    data: Any
    model_fn: Callable[..., Any] | None = None
    guide_fn: Callable[..., Any] | None = None
    loss: pyro.infer.ELBO | None = None
    objective_fn: Callable[..., torch.Tensor] | None = None
    module: nn.Module | None = None
    param_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedules: list[Anneal] = field(default_factory=list)
    metrics_fn: MetricsFn | None = None
    eval_fn: MetricsFn | None = None
    config: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    data_source: str = ""
    extras: dict[str, Any] = field(default_factory=dict)  # task-private objects for finish()
    callbacks: list[Callback] = field(default_factory=list)
    state_modules: list[nn.Module] = field(default_factory=list)

    @property
    def is_svi(self) -> bool:
        """Whether the run trains a Pyro model and guide (else a deterministic objective)."""
        return self.model_fn is not None


class Task(Generic[ConfigT, EvalConfigT]):
    """A trainable model family: its config class, how to build a run, what to write after.

    Subclasses set ``name`` (the command's name), ``help``, ``config_class`` and, when they
    evaluate checkpoints, ``eval_config_class``; they are parameterised by those two classes,
    e.g. ``class VAETask(Task[VAEConfig, EvalConfig])`` (``EvalConfig`` for a task without
    evaluation).
    """

    # Declared, not defaulted: every task sets them (register() refuses one that does not).
    name: str
    config_class: type[ConfigT]
    help: str = ""
    eval_config_class: type[EvalConfigT] | None = None

    def build(self, config: ConfigT, device: torch.device) -> TaskRun:
        """Return a :class:`TaskRun` for ``config`` on ``device`` (the data, model, loss...)."""
        raise NotImplementedError

    def finish(self, run: TaskRun, result: TrainResult, config: ConfigT) -> None:
        """Write figures and summaries into ``config.out`` after training; may append rows to
        ``result.eval_history`` (they reach ``summary.json``)."""

    @property
    def supports_eval(self) -> bool:
        """Whether the task evaluates checkpoints (``probnets eval NAME``)."""
        return self.eval_config_class is not None

    def evaluate(self, config: EvalConfigT, device: torch.device) -> dict[str, Any]:
        """Evaluate ``config.checkpoint`` on ``device`` as ``config`` (the task's
        ``eval_config_class``) says; return a dict of results."""
        raise NotImplementedError


def load_trained(model_class: type[LoadableT], path: str, device: torch.device) -> LoadableT:
    """``model_class.load(path, map_location=device)``, or a :class:`ConfigError` naming
    ``checkpoint`` when ``path`` is missing, unreadable or a checkpoint of another model."""
    if not os.path.isfile(path):
        raise ConfigError("checkpoint", f"{{checkpoint}}: no file at {path}")
    try:
        return model_class.load(path, map_location=device)
    # torch.load reports truncated or corrupted files as EOFError, RuntimeError or
    # UnpicklingError; the models' loaders report other checkpoints as ValueError
    except (ValueError, EOFError, RuntimeError, pickle.UnpicklingError) as error:
        reason = next(iter(str(error).strip().splitlines()), "")
        if isinstance(error, (EOFError, pickle.UnpicklingError)):  # torch.load's own words
            reason = f"not a readable checkpoint file ({type(error).__name__})"
        raise ConfigError("checkpoint", f"{{checkpoint}} {path}: {reason}") from None


def load_npz_arrays(path: str, names: Sequence[str], field: str = "data") -> tuple[np.ndarray, ...]:
    """The arrays ``names`` of the ``.npz`` file ``path``; a :class:`ConfigError` naming
    ``field`` when the file cannot be read or lacks one of them."""
    try:
        stored = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:  # EOFError: an empty file
        raise ConfigError(
            field, f"{{{field}}} {path}: not a readable .npz file ({error})"
        ) from None
    if not isinstance(stored, np.lib.npyio.NpzFile):
        raise ConfigError(
            field, f"{{{field}}} {path} holds one array, not an .npz archive of {list(names)}"
        )
    with stored:
        missing = set(names) - set(stored.files)
        if missing:
            raise ConfigError(
                field, f"{{{field}}} {path} lacks {sorted(missing)} (has {stored.files})"
            )
        return tuple(stored[name] for name in names)


def register(task_class: type[TaskT]) -> type[TaskT]:
    """Class decorator adding a :class:`Task` to :func:`tasks` (and ``probnets train``)."""
    task = task_class()
    name = getattr(task, "name", None)
    if not name or name in _REGISTRY:
        raise ValueError(f"task name {name!r} is missing or already registered")
    if getattr(task, "config_class", None) is None:
        raise ValueError(f"task {task.name!r} has no config_class")
    _REGISTRY[task.name] = task
    return task_class


def tasks() -> dict[str, "Task[Any, Any]"]:
    """The registered tasks by name."""
    return dict(_REGISTRY)


def task_for(config: RunConfig | EvalConfig) -> "Task[Any, Any]":
    """The task whose config class ``config`` is (or derives from)."""
    for task in _REGISTRY.values():
        if type(config) is task.config_class:
            return task
    for task in _REGISTRY.values():
        if isinstance(config, task.config_class):
            return task
        if task.eval_config_class is not None and isinstance(config, task.eval_config_class):
            return task
    known = sorted(t.config_class.__name__ for t in _REGISTRY.values())
    raise TypeError(f"config must be one of the task configs {known}, got {type(config).__name__}")
