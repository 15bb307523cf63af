"""The settings of a training run, as one typed, validated dataclass."""

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
PRECISIONS = ("32", "bf16", "16-mixed")
LOGGER_NAMES = ("csv", "tensorboard")


@dataclass
class TrainConfig:
    """What a :class:`~probnets.train.Trainer` run does, validated on construction.

    :param int steps: total number of steps (a resumed run continues up to it).
    :param float lr: base learning rate of the default parameter group.
    :param dict param_groups: ``{pattern: {"lr": ..., "clip_norm": ..., ...}}``; the first
        :func:`fnmatch.fnmatchcase` pattern matching a parameter's name picks its group, whose
        settings override the defaults (any optimizer argument, plus ``clip_norm``).
        Parameters an ELBO owns are named ``cv.*`` by convention.
    :param float clip_norm: default per-group gradient-norm clip (``None``: no clipping).
    :param optimizer: ``"adam"`` (default), ``"adamw"``, ``"sgd"``, or any
        :class:`torch.optim.Optimizer` subclass taking ``(param_groups, **optim_args)``.
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
    """

    steps: int
    lr: float = 1e-3
    param_groups: dict | None = None
    clip_norm: float | None = None
    optimizer: str | type = "adam"
    weight_decay: float = 0.0
    optim_args: dict | None = None
    lr_schedule: Callable[[int], float] | None = None
    schedules: Sequence[Any] = ()
    eval_every: int | None = None
    log_every: int = 1
    out_dir: str | os.PathLike | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 0
    resume: bool | str | os.PathLike = False
    max_bad_steps: int = 10
    checkpoint_extra: dict | None = None
    progress: bool = True
    loggers: Sequence[Any] = ("csv",)
    tensorboard: bool = False
    description: str = "train"
    distributed_sync: bool | None = None
    precision: str = "32"
    initial_loss_scale: float = 2.0 ** 16

    def __post_init__(self):
        _check_counts(self)
        _check_rates(self)
        _check_choices(self)
        _check_run_directory(self)

    @property
    def optimizer_class(self):
        """The :class:`torch.optim.Optimizer` subclass :attr:`optimizer` names."""
        return OPTIMIZERS.get(self.optimizer, self.optimizer)

    def to_dict(self):
        """The settings as plain values (for loggers' ``log_config``); objects become their
        ``repr``."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _is_count(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_counts(config):
    if not _is_count(config.steps, 0):
        raise ValueError(f"steps must be a non-negative integer, got {config.steps!r}")
    if not _is_count(config.max_bad_steps, 1):
        raise ValueError(
            f"max_bad_steps must be a positive integer, got {config.max_bad_steps!r}")
    if not _is_count(config.log_every, 1):
        raise ValueError(f"log_every must be a positive integer, got {config.log_every!r}")
    if not _is_count(config.keep_checkpoints, 0):
        raise ValueError(
            f"keep_checkpoints must be a non-negative integer, got {config.keep_checkpoints!r}")
    for name in ("eval_every", "checkpoint_every"):
        value = getattr(config, name)
        if value is not None and not _is_count(value, 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


def _is_positive(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _check_rates(config):
    if not (_is_positive(config.lr) and math.isfinite(config.lr)):
        raise ValueError(f"lr must be a positive number, got {config.lr!r}")
    if config.clip_norm is not None and not _is_positive(config.clip_norm):
        raise ValueError(f"clip_norm must be positive or None, got {config.clip_norm!r}")
    if not (isinstance(config.weight_decay, (int, float)) and config.weight_decay >= 0):
        raise ValueError(f"weight_decay must be >= 0, got {config.weight_decay!r}")
    if not _is_positive(config.initial_loss_scale):
        raise ValueError(
            f"initial_loss_scale must be positive, got {config.initial_loss_scale!r}")
    if config.lr_schedule is not None and not callable(config.lr_schedule):
        raise TypeError(f"lr_schedule must be callable step -> factor, got {config.lr_schedule!r}")


def _check_choices(config):
    optimizer = config.optimizer
    if not (optimizer in OPTIMIZERS
            or (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer))):
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)} or a "
                         f"torch.optim.Optimizer subclass, got {optimizer!r}")
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {config.precision!r}")
    if isinstance(config.loggers, str):
        raise TypeError(f"loggers must be a sequence, e.g. ({config.loggers!r},), "
                        f"got the string {config.loggers!r}")
    for logger in config.loggers:
        if isinstance(logger, str) and logger not in LOGGER_NAMES:
            raise ValueError(f"loggers: names must be one of {LOGGER_NAMES}, got {logger!r}")
        if not isinstance(logger, str) and not callable(getattr(logger, "log_metrics", None)):
            raise TypeError(f"loggers: {logger!r} is neither a logger name {LOGGER_NAMES} nor "
                            "an object with log_metrics(step, metrics)")


def _check_run_directory(config):
    if config.resume is True and config.out_dir is None:
        raise ValueError("resume=True needs out_dir (the run directory holding last.pt)")
    if config.out_dir is None and (config.tensorboard or "tensorboard" in config.loggers):
        raise ValueError("the tensorboard logger needs out_dir (its events go to "
                         "out_dir/tensorboard)")


def _plain(value):
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
    return repr(value)


__all__ = ["LOGGER_NAMES", "OPTIMIZERS", "PRECISIONS", "TrainConfig"]
