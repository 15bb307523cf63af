"""Which optimizer and learning-rate scheduler a run uses, from what the user names.

:class:`~probnets.train.TrainConfig` takes the optimizer as

- a name: ``"adam"``, ``"adamw"``, ``"sgd"``, or the name of any other :mod:`torch.optim`
  optimizer in any case (``"RMSprop"``, ``"radam"``, ``"nadam"``...);
- a :class:`torch.optim.Optimizer` subclass, called as ``cls(param_groups, **optim_args)``;
- a :mod:`pyro.optim` optimizer, such as ``pyro.optim.Adam({"lr": 1e-3})`` or
  ``pyro.optim.ClippedAdam({"lr": 1e-3, "clip_norm": 10.0})``. Pyro's wrapper keeps one
  optimizer per parameter; the Trainer needs one optimizer over named parameter groups (for
  ``param_groups``, clipping, weight decay and checkpoints by name), so the wrapper is mapped
  to the torch class it wraps (``pt_optim_constructor``) and its arguments
  (``pt_optim_args``). A ``clip_args={"clip_norm": c}`` becomes the default ``clip_norm``.
  A pyro scheduler (``pyro.optim.StepLR({"optimizer": ..., "optim_args": ..., ...})``) maps
  to its optimizer and its torch scheduler, stepped once per training step.

  Not honoured, and refused with a ``ValueError``: per-parameter argument callables
  (``pyro.optim.Adam(lambda module, param: {...})``; use ``param_groups`` rules instead) and
  ``clip_args={"clip_value": ...}`` (value clipping; use ``clip_norm``).

A torch learning-rate scheduler is given as ``lr_scheduler``, a callable that takes the
optimizer and returns the scheduler, e.g.
``functools.partial(torch.optim.lr_scheduler.StepLR, step_size=100)``.
"""

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

import torch

from pyro.optim.lr_scheduler import PyroLRScheduler
from pyro.optim.optim import PyroOptim

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}

OptimizerLike: TypeAlias = str | type[torch.optim.Optimizer] | PyroOptim
"""What names an optimizer: a name, a :class:`torch.optim.Optimizer` subclass or a
:mod:`pyro.optim` optimizer."""

LRSchedulerFactory: TypeAlias = Callable[
    [torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler
]
"""A callable making a learning-rate scheduler for an optimizer, e.g.
``functools.partial(torch.optim.lr_scheduler.StepLR, step_size=100)``."""


def torch_optimizer_names() -> dict[str, type[torch.optim.Optimizer]]:
    """``{lower-case name: class}`` of every optimizer :mod:`torch.optim` exports."""
    names = {}
    for name in dir(torch.optim):
        value = getattr(torch.optim, name)
        if (
            isinstance(value, type)
            and issubclass(value, torch.optim.Optimizer)
            and value is not torch.optim.Optimizer
        ):
            names[name.lower()] = value
    return names


@dataclass
class OptimizerSpec:
    """A resolved optimizer: its class, its arguments, and what the pyro wrapper adds."""

    cls: type[torch.optim.Optimizer]
    args: dict[str, Any] = field(default_factory=dict)
    clip_norm: float | None = None
    lr_scheduler: LRSchedulerFactory | None = None


def resolve_optimizer(
    optimizer: OptimizerLike, optim_args: Mapping[str, Any] | None = None
) -> OptimizerSpec:
    """The :class:`OptimizerSpec` of a name, a torch class or a pyro optimizer;
    ``optim_args`` override the pyro optimizer's own arguments."""
    extra = dict(optim_args or {})
    if isinstance(optimizer, str):
        cls = OPTIMIZERS.get(optimizer) or torch_optimizer_names().get(optimizer.lower())
        if cls is None:
            raise ValueError(
                f"optimizer must be one of {sorted(OPTIMIZERS)}, the name of a "
                f"torch.optim optimizer, a torch.optim.Optimizer subclass or a "
                f"pyro.optim optimizer, got {optimizer!r}"
            )
        return _checked(OptimizerSpec(cls, extra))
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return _checked(OptimizerSpec(optimizer, extra))
    if isinstance(optimizer, PyroOptim):
        return _checked(_from_pyro(optimizer, extra))
    raise ValueError(
        f"optimizer must be one of {sorted(OPTIMIZERS)}, the name of a torch.optim "
        f"optimizer, a torch.optim.Optimizer subclass or a pyro.optim optimizer "
        f"(e.g. pyro.optim.Adam({{'lr': 1e-3}})), got {optimizer!r}"
    )


def _checked(spec: OptimizerSpec) -> OptimizerSpec:
    if spec.cls is torch.optim.LBFGS:
        raise ValueError(
            "optimizer: LBFGS needs a closure that re-evaluates the loss, which "
            "the Trainer's one-evaluation steps do not provide"
        )
    return spec


def _from_pyro(optimizer: PyroOptim, extra: dict[str, Any]) -> OptimizerSpec:
    args = optimizer.pt_optim_args
    if callable(args):
        raise ValueError(
            "optimizer: a pyro.optim optimizer with per-parameter arguments (a "
            "callable optim_args) is not supported by the Trainer; give its "
            "settings as TrainConfig(param_groups={pattern: {...}}) rules"
        )
    clip = dict(optimizer.pt_clip_args or {}) if not callable(optimizer.pt_clip_args) else None
    if clip is None or set(clip) - {"clip_norm"}:
        raise ValueError(
            f"optimizer: the pyro.optim clip_args {optimizer.pt_clip_args!r} are "
            "not supported; only {'clip_norm': c} is (or TrainConfig(clip_norm=))"
        )
    scheduler = None
    if isinstance(optimizer, PyroLRScheduler):
        scheduler = functools.partial(optimizer.pt_scheduler_constructor, **optimizer.kwargs)
    # pyro annotates the constructor as any callable; it is the torch class the wrapper makes
    cls = cast(type[torch.optim.Optimizer], optimizer.pt_optim_constructor)
    return OptimizerSpec(cls, {**args, **extra}, clip.get("clip_norm"), scheduler)


def describe_optimizer(optimizer: OptimizerLike) -> str | None:
    """A readable, JSON-able description of a configured optimizer (for logged configs)."""
    if isinstance(optimizer, PyroOptim):
        spec = _from_pyro(optimizer, {})
        text = f"pyro.optim({_qualname(spec.cls)}, {spec.args!r}"
        if isinstance(optimizer, PyroLRScheduler):
            scheduler = optimizer.pt_scheduler_constructor
            text += f", scheduler={_qualname(scheduler)}{optimizer.kwargs!r}"
        return text + ")"
    return None


def _qualname(cls: Callable[..., Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def make_lr_scheduler(
    factory: LRSchedulerFactory, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """``factory(optimizer)``, checked to be a scheduler the Trainer can step per step."""
    scheduler = factory(optimizer)
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise ValueError(
            "lr_scheduler: ReduceLROnPlateau is stepped with a validation metric, "
            "not once per training step; call its step(metric) from an "
            "Evaluation callback instead"
        )
    if not (
        callable(getattr(scheduler, "step", None))
        and callable(getattr(scheduler, "state_dict", None))
    ):
        raise TypeError(
            f"lr_scheduler must return a torch.optim.lr_scheduler scheduler (with "
            f"step() and state_dict()), got {type(scheduler).__name__}"
        )
    return scheduler


__all__ = [
    "OPTIMIZERS",
    "LRSchedulerFactory",
    "OptimizerLike",
    "OptimizerSpec",
    "describe_optimizer",
    "make_lr_scheduler",
    "resolve_optimizer",
    "torch_optimizer_names",
]
