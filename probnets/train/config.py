"""The settings of a training run, as one typed, validated dataclass."""

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import torch

from probnets.train.loggers import Logger, LoggerName
from probnets.train.optimizers import (
    OPTIMIZERS,
    LRSchedulerFactory,
    OptimizerLike,
    OptimizerSpec,
    describe_optimizer,
    resolve_optimizer,
)
from probnets.train.precision import PrecisionName
from probnets.train.schedules import Anneal

DEFAULT_LR = 1e-3
PRECISIONS: tuple[PrecisionName, ...] = ("32", "bf16", "16-mixed")
LOGGER_NAMES: tuple[LoggerName, ...] = ("csv", "tensorboard")


@dataclass
class TrainConfig:
    """What a :class:`~probnets.train.Trainer` run does, validated on construction.

    :param int steps: total number of optimizer steps (a resumed run continues up to it).
        Give either ``steps`` or ``num_epochs``.
    :param float lr: base learning rate of the default parameter group (default ``1e-3``, or
        the ``lr`` of a :mod:`pyro.optim` optimizer's arguments).
    :param dict param_groups: ``{pattern: {"lr": ..., "clip_norm": ..., ...}}``; the first
        :func:`fnmatch.fnmatchcase` pattern matching a parameter's name picks its group, whose
        settings override the defaults (any optimizer argument, plus ``clip_norm``).
        Parameters an ELBO owns are named ``cv.*`` by convention.
    :param float clip_norm: default per-group gradient-norm clip (``None``: no clipping).
    :param optimizer: ``"adam"`` (default), ``"adamw"``, ``"sgd"`` or the name of any other
        :mod:`torch.optim` optimizer (``"RMSprop"``...); a :class:`torch.optim.Optimizer`
        subclass taking ``(param_groups, **optim_args)``; or a :mod:`pyro.optim` optimizer
        such as ``pyro.optim.ClippedAdam({"lr": 1e-3})``, mapped to the torch class it wraps
        and its arguments (:mod:`probnets.train.optimizers` says what is honoured).
    :param float weight_decay: decoupled weight decay (Loshchilov & Hutter, 2019) of the
        parameters with two or more dimensions, except those a module names in
        ``no_weight_decay`` (:func:`probnets.nn.decayed_parameters`): each step multiplies them
        by ``1 - lr * weight_decay`` (``lr`` their group's scheduled rate) before the
        optimizer's update, so ``optimizer="adam"`` with it is AdamW on the weight matrices
        alone. Default 0.
    :param dict optim_args: further optimizer arguments (``betas``...). Unless they set
        ``fused`` or ``foreach``, the fused implementation is used where PyTorch has one for
        the parameters' device. An ``optim_args["weight_decay"]`` applies to every parameter.
    :param lr_schedule: a callable ``step -> factor`` multiplying every group's learning rate
        (e.g. :class:`~probnets.train.Cosine`).
    :param lr_scheduler: a :mod:`torch.optim.lr_scheduler` scheduler instead: a callable
        taking the optimizer and returning the scheduler, e.g.
        ``functools.partial(torch.optim.lr_scheduler.StepLR, step_size=100)``. It is stepped
        once per training step (skipped steps included, as ``lr_schedule`` counts them) and
        its state is checkpointed. Not together with ``lr_schedule``.
    :param schedules: :class:`~probnets.train.Anneal` objects applied before each step.
    :param int eval_every: steps between evaluations of
        :class:`~probnets.train.Evaluation` callbacks that set no ``every`` of their own
        (``None``: only at the end).
    :param int log_every: steps between logged metric rows (the last step is always logged).
    :param out_dir: run directory for ``last.pt``, ``metrics.csv``, ``eval.csv``.
    :param int checkpoint_every: steps between checkpoints (one is always written at the end).
    :param int keep_checkpoints: step-numbered checkpoint copies kept in
        ``out_dir/checkpoints`` besides ``last.pt`` (0: none).
    :param resume: ``True`` to continue from ``out_dir/last.pt``, or a checkpoint path.
    :param int max_bad_steps: consecutive non-finite steps tolerated before stopping.
    :param int rollback_every: good steps between the in-memory copies of the parameters a
        diverged run is rolled back to (each costs one copy of the parameters; 1 keeps the
        last good step exactly, ``k`` loses at most ``k - 1`` good steps of a diverged run).
    :param dict checkpoint_extra: stored in every checkpoint under ``"extra"`` (e.g. the model's
        constructor arguments, so it can be rebuilt from the checkpoint alone).
    :param bool progress: show a progress bar (tqdm).
    :param loggers: where metric rows go: ``"csv"`` (``metrics.csv`` / ``eval.csv`` in
        ``out_dir``), ``"tensorboard"`` (``out_dir/tensorboard``, needs the ``tensorboard``
        package), or objects with ``log_metrics(step, metrics)``, ``log_config(config)`` and
        ``close()`` (:class:`~probnets.train.Logger`). Default ``("csv",)``.
    :param bool tensorboard: also log to TensorBoard (the same as adding ``"tensorboard"`` to
        ``loggers``). Off by default.
    :param str description: label of the progress bar.
    :param distributed_sync: sum gradients over the ranks of the :mod:`torch.distributed`
        process group (``None``: whenever one with more than one rank is initialized).
    :param str precision: ``"32"``; ``"bf16"`` (autocast to bfloat16); or ``"16-mixed"``
        (autocast to float16 with dynamic loss scaling), see :mod:`probnets.train.precision`.
    :param float initial_loss_scale: the first loss scale of ``"16-mixed"``.
    :param int num_epochs: train for this many passes over the data instead of ``steps``
        (converted to ``num_epochs * len(data)`` steps, so the data must have a length: a
        DataLoader over a sized dataset, or tensors).
    :param int batch_size: mini-batch size when the Trainer is given tensors or NumPy arrays
        (``None``: the full data every step).
    :param int data_seed: seed of the data order: the shuffling of tensors, and each pass of
        a DataLoader (``None``: drawn from torch's global generator at the first batch, so
        ``pyro.set_rng_seed`` fixes it).
    """

    steps: int | None = None
    lr: float | None = None
    param_groups: Mapping[str, Mapping[str, Any]] | None = None
    clip_norm: float | None = None
    optimizer: OptimizerLike = "adam"
    weight_decay: float = 0.0
    optim_args: Mapping[str, Any] | None = None
    lr_schedule: Callable[[int], float] | None = None
    schedules: Sequence[Anneal] = ()
    eval_every: int | None = None
    log_every: int = 1
    out_dir: str | os.PathLike[str] | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 0
    resume: bool | str | os.PathLike[str] = False
    max_bad_steps: int = 10
    rollback_every: int = 10
    checkpoint_extra: Mapping[str, Any] | None = None
    progress: bool = True
    loggers: Sequence[LoggerName | Logger] = ("csv",)
    tensorboard: bool = False
    description: str = "train"
    distributed_sync: bool | None = None
    precision: PrecisionName = "32"
    initial_loss_scale: float = 2.0**16
    lr_scheduler: LRSchedulerFactory | None = None
    num_epochs: int | None = None
    batch_size: int | None = None
    data_seed: int | None = None

    def __post_init__(self) -> None:
        _check_length(self)
        _check_counts(self)
        spec = _check_optimizer(self)
        if self.lr is None:
            self.lr = spec.args.get("lr", DEFAULT_LR)
        if self.clip_norm is None:
            self.clip_norm = spec.clip_norm
        _check_rates(self)
        _check_choices(self)
        _check_run_directory(self)

    @property
    def optimizer_spec(self) -> OptimizerSpec:
        """The resolved optimizer: class, arguments (``optim_args`` over a pyro optimizer's
        own), and a pyro optimizer's clip norm and scheduler."""
        return resolve_optimizer(self.optimizer, self.optim_args)

    @property
    def optimizer_class(self) -> type[torch.optim.Optimizer]:
        """The :class:`torch.optim.Optimizer` subclass :attr:`optimizer` names."""
        return self.optimizer_spec.cls

    @property
    def lr_scheduler_factory(self) -> LRSchedulerFactory | None:
        """``lr_scheduler``, or the scheduler of a pyro scheduler optimizer (``None``: none)."""
        return self.lr_scheduler or self.optimizer_spec.lr_scheduler

    def for_data(self, batches_per_epoch: int | None) -> "TrainConfig":
        """This configuration with ``num_epochs`` converted to ``steps``, given the number of
        batches in one pass over the data (``None`` when unknown)."""
        if self.num_epochs is None:
            return self
        if batches_per_epoch is None:
            raise ValueError(
                f"num_epochs={self.num_epochs} needs data whose number of batches per pass is "
                "known (tensors, or a DataLoader over a sized dataset); this data has no "
                "len(): give steps instead"
            )
        return dataclasses.replace(self, steps=self.num_epochs * batches_per_epoch, num_epochs=None)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (for loggers' ``log_config``); objects become their
        ``repr``."""
        values = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        values["optimizer"] = describe_optimizer(self.optimizer) or values["optimizer"]
        return values


def _is_count(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_length(config: TrainConfig) -> None:
    if (config.steps is None) == (config.num_epochs is None):
        raise ValueError(
            "give exactly one of steps (optimizer steps) and num_epochs (passes over the "
            f"data), got steps={config.steps!r} and num_epochs={config.num_epochs!r}"
        )
    if config.steps is not None and not _is_count(config.steps, 0):
        raise ValueError(f"steps must be a non-negative integer, got {config.steps!r}")
    if config.num_epochs is not None and not _is_count(config.num_epochs, 1):
        raise ValueError(f"num_epochs must be a positive integer, got {config.num_epochs!r}")


def _check_optimizer(config: TrainConfig) -> OptimizerSpec:
    spec = resolve_optimizer(config.optimizer, config.optim_args)
    own_lr = spec.args.get("lr")
    if own_lr is not None and config.lr is not None and own_lr != config.lr:
        raise ValueError(
            f"lr={config.lr!r} and the optimizer's own lr={own_lr!r} disagree; "
            "give the learning rate once"
        )
    if config.lr_scheduler is not None:
        if not callable(config.lr_scheduler):
            raise TypeError(
                "lr_scheduler must be a callable optimizer -> scheduler (e.g. "
                "functools.partial(torch.optim.lr_scheduler.StepLR, step_size=100)),"
                f" got {config.lr_scheduler!r}"
            )
        if spec.lr_scheduler is not None:
            raise ValueError(
                "lr_scheduler: the pyro.optim optimizer already brings a "
                "scheduler; give one of them"
            )
    if config.lr_schedule is not None and (config.lr_scheduler or spec.lr_scheduler):
        raise ValueError(
            "lr_schedule (a factor per step) and lr_scheduler (a torch "
            "scheduler) both set the learning rate; give one of them"
        )
    return spec


def _check_counts(config: TrainConfig) -> None:
    if not _is_count(config.max_bad_steps, 1):
        raise ValueError(f"max_bad_steps must be a positive integer, got {config.max_bad_steps!r}")
    if not _is_count(config.rollback_every, 1):
        raise ValueError(
            f"rollback_every must be a positive integer, got {config.rollback_every!r}"
        )
    if not _is_count(config.log_every, 1):
        raise ValueError(f"log_every must be a positive integer, got {config.log_every!r}")
    if not _is_count(config.keep_checkpoints, 0):
        raise ValueError(
            f"keep_checkpoints must be a non-negative integer, got {config.keep_checkpoints!r}"
        )
    for name in ("eval_every", "checkpoint_every", "batch_size"):
        value = getattr(config, name)
        if value is not None and not _is_count(value, 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


def _is_positive(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _check_rates(config: TrainConfig) -> None:
    if not (_is_positive(config.lr) and math.isfinite(config.lr)):
        raise ValueError(f"lr must be a positive number, got {config.lr!r}")
    if config.clip_norm is not None and not _is_positive(config.clip_norm):
        raise ValueError(f"clip_norm must be positive or None, got {config.clip_norm!r}")
    if not (isinstance(config.weight_decay, (int, float)) and config.weight_decay >= 0):
        raise ValueError(f"weight_decay must be >= 0, got {config.weight_decay!r}")
    if not _is_positive(config.initial_loss_scale):
        raise ValueError(f"initial_loss_scale must be positive, got {config.initial_loss_scale!r}")
    if config.lr_schedule is not None and not callable(config.lr_schedule):
        raise TypeError(f"lr_schedule must be callable step -> factor, got {config.lr_schedule!r}")


def _check_choices(config: TrainConfig) -> None:
    if config.data_seed is not None and not _is_count(config.data_seed, 0):
        raise ValueError(
            f"data_seed must be a non-negative integer or None, got {config.data_seed!r}"
        )
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {config.precision!r}")
    if isinstance(config.loggers, str):
        raise TypeError(
            f"loggers must be a sequence, e.g. ({config.loggers!r},), "
            f"got the string {config.loggers!r}"
        )
    for logger in config.loggers:
        if isinstance(logger, str) and logger not in LOGGER_NAMES:
            raise ValueError(f"loggers: names must be one of {LOGGER_NAMES}, got {logger!r}")
        if not isinstance(logger, str) and not callable(getattr(logger, "log_metrics", None)):
            raise TypeError(
                f"loggers: {logger!r} is neither a logger name {LOGGER_NAMES} nor "
                "an object with log_metrics(step, metrics)"
            )


def _check_run_directory(config: TrainConfig) -> None:
    if config.resume is True and config.out_dir is None:
        raise ValueError("resume=True needs out_dir (the run directory holding last.pt)")
    if config.out_dir is None and (config.tensorboard or "tensorboard" in config.loggers):
        raise ValueError(
            "the tensorboard logger needs out_dir (its events go to out_dir/tensorboard)"
        )


def _plain(value: object) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, functools.partial):
        arguments = [repr(a) for a in value.args]
        arguments += [f"{k}={v!r}" for k, v in value.keywords.items()]
        return f"{_plain(value.func)}({', '.join(arguments)})"
    return repr(value)


__all__ = ["LOGGER_NAMES", "OPTIMIZERS", "PRECISIONS", "TrainConfig"]
