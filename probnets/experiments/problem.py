"""The unit the variance harness works on: a model/guide pair with its fixed arguments."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Problem"]


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

    :func:`~probnets.experiments.toy_problem`, :func:`~probnets.experiments.sbn_problem` and
    :func:`~probnets.experiments.air_problem` build the ones that ship; any function returning
    a ``Problem`` plugs into ``probnets variance custom --factory module:function``.
    """

    name: str
    model: Callable[..., Any]
    guide: Callable[..., Any]
    args: tuple[Any, ...] = ()
    batch: Callable[[int], tuple[Any, ...]] | None = None
    exact: Callable[[], Mapping[str, torch.Tensor]] | None = None
    params: list[str] | None = None
    evaluate: Callable[[], Mapping[str, float]] | None = None

    def __post_init__(self) -> None:
        for role in ("model", "guide"):
            if not callable(getattr(self, role)):
                raise TypeError(
                    f"Problem {role} must be callable, got {type(getattr(self, role)).__name__}"
                )

    def batch_args(self, step: int) -> tuple[Any, ...]:
        """The arguments of training step ``step``."""
        return self.args if self.batch is None else self.batch(step)
