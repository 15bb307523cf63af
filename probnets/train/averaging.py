"""An exponential moving average of a module's parameters, for evaluation and the saved model.

Training moves the weights by noisy steps to the end; an average of the last iterates is a
better point estimate than the last one (Polyak & Juditsky 1992; the exponential form, with
TensorFlow's warm-up of the decay, is the one of ``tf.train.ExponentialMovingAverage``)::

    β_n = min(decay, (1 + n) / (10 + n))         n: steps averaged so far
    θ̄  ← β_n θ̄ + (1 − β_n) θ

An update may stand for ``k`` steps (``update(steps=k)``: ``β_n^k`` in place of ``β_n``), so the
average can be brought up to date every few steps at a fraction of the cost, with the same
span, when ``k`` is small against ``1 / (1 − β)``.

:class:`ExponentialMovingAverage` is a module: its state (the averages and ``n``) goes into a
training checkpoint like any module's buffers, so a resumed run continues the same average.
Its state dict names the averages ``average.<parameter name>``, which is how a model's
``load`` tells them apart from the last iterate (see :func:`probnets.load`).
:class:`AverageWeights` is the :class:`~probnets.train.Callback` that updates it after the
optimizer steps (before their checkpoints and evaluations).
"""

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import torch

from probnets.train.callbacks import Callback

if TYPE_CHECKING:  # for annotations only, as in probnets.train.callbacks
    from probnets.train.config import TrainConfig
    from probnets.train.trainer import Trainer

AVERAGE_PREFIX = "average."


class ExponentialMovingAverage(torch.nn.Module):
    """The moving average ``θ̄`` of the parameters ``names`` of ``module`` (see the module
    docstring).

    :param torch.nn.Module module: the module whose parameters are averaged (not registered
        as a submodule: the average's state holds only the averages and the update count).
    :param float decay: ``β`` in (0, 1); the average spans about ``1 / (1 - β)`` updates.
    :param names: the parameter names to average (default: every parameter of ``module``).
    """

    num_updates: torch.Tensor  # the steps the average stands for (a buffer)

    def __init__(
        self, module: torch.nn.Module, decay: float = 0.999, names: Iterable[str] | None = None
    ) -> None:
        super().__init__()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if not (isinstance(decay, float) and 0 < decay < 1):
            raise ValueError(f"decay must be a float in (0, 1), got {decay!r}")
        parameters = dict(module.named_parameters())
        names = list(parameters) if names is None else list(names)
        unknown = [name for name in names if name not in parameters]
        if unknown or not names:
            raise ValueError(
                f"names must be parameter names of the module, got unknown {unknown}"
                if unknown
                else "names must not be empty"
            )
        self.decay = decay
        self.names = names
        self._module = [module]  # a list, so the module is not registered as a submodule
        self.average = torch.nn.Module()
        for name in names:
            _register_nested(self.average, name, parameters[name].detach().clone())
        # the steps the average stands for (n above)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @property
    def module(self) -> torch.nn.Module:
        """The module whose parameters are averaged."""
        return self._module[0]

    def _pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        parameters = dict(self.module.named_parameters())
        averages = dict(self.average.named_buffers())
        return [parameters[name] for name in self.names], [averages[name] for name in self.names]

    @torch.no_grad()
    def update(self, steps: int = 1) -> None:
        """Move the average towards the module's current parameters as ``steps`` steps of
        the recursion with these parameters would."""
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        n = float(self.num_updates)
        beta = min(self.decay, (1 + n) / (10 + n)) ** steps
        parameters, averages = self._pairs()
        torch._foreach_lerp_(averages, [p.detach() for p in parameters], 1 - beta)
        self.num_updates += steps

    @contextlib.contextmanager
    def swapped(self) -> Iterator[torch.nn.Module]:
        """Within the block the module's parameters hold the averages (and the averages the
        last iterate); on exit each goes back. Nothing is copied: the storages are swapped."""
        parameters, averages = self._pairs()
        for parameter, average in zip(parameters, averages):
            parameter.data, average.data = average.data, parameter.data
        try:
            yield self.module
        finally:
            for parameter, average in zip(parameters, averages):
                parameter.data, average.data = average.data, parameter.data

    def extra_repr(self) -> str:
        return f"decay={self.decay}, parameters={len(self.names)}"


class AverageWeights(Callback):
    """Update an :class:`ExponentialMovingAverage` every ``every`` steps, and after the last
    step and every evaluated or checkpointed one, for the steps since its last update (before
    the step's evaluation and checkpoint, so both see the average of that step).

    :param ExponentialMovingAverage average: the average to update.
    :param int every: steps between updates (1: every step).
    """

    def __init__(self, average: ExponentialMovingAverage, every: int = 1) -> None:
        if not isinstance(average, ExponentialMovingAverage):
            raise TypeError(
                f"average must be an ExponentialMovingAverage, got {type(average).__name__}"
            )
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.average = average
        self.every = every

    def on_train_step_end(self, trainer: "Trainer") -> None:
        behind = trainer.step - int(self.average.num_updates)
        if behind > 0 and _due(trainer.step, trainer.config, self.every):
            self.average.update(steps=behind)


def _due(step: int, config: "TrainConfig", every: int) -> bool:
    """Whether the average must be current after ``step``: its own interval, the last step,
    or a step that is evaluated or checkpointed."""
    intervals = (
        every,
        getattr(config, "eval_every", None),
        getattr(config, "checkpoint_every", None),
    )
    return step == config.steps or any(k and step % k == 0 for k in intervals)


def _register_nested(root: torch.nn.Module, dotted: str, tensor: torch.Tensor) -> None:
    """Register ``tensor`` as a buffer of ``root`` under the dotted name ``a.b.c`` (creating
    empty child modules ``a`` and ``a.b``), so state-dict keys mirror the parameter names."""
    *path, leaf = dotted.split(".")
    node = root
    for part in path:
        if not hasattr(node, part):
            node.add_module(part, torch.nn.Module())
        node = getattr(node, part)
    node.register_buffer(leaf, tensor)


__all__ = ["AVERAGE_PREFIX", "AverageWeights", "ExponentialMovingAverage"]
