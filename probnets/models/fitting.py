"""How a model's ``fit`` reaches a training loop without importing it.

Models sit below the training loop (:mod:`probnets.train` may use models' building blocks,
never the reverse), yet ``NeuronDAG(...).fit(x, y, num_steps)`` should be one line. So a
model's ``fit`` takes ``trainer=``, a :class:`TrainerFactory`, and by default uses the one
:mod:`probnets.train` registers here when it is imported (``import probnets`` imports it).

A factory makes a trainer for each of the two kinds of objective models have::

    factory.svi(model_fn, guide_fn, elbo, data, **settings)   # an ELBO of a model and guide
    factory.loss(objective_fn, module, data, **settings)      # a deterministic loss

``data`` is either a tuple of tensors sharing their first dimension, from which the factory
draws shuffled mini-batches (settings ``batch_size``, ``None`` for the full data every step,
and ``seed``), or an iterable of batch tuples such as a :class:`torch.utils.data.DataLoader`,
passed over again whenever it ends and resumed exactly (settings ``convert``: a function
applied to each batch, and ``seed`` of each pass's order). The other settings are those of
:class:`probnets.train.TrainConfig` (``steps``, ``lr``, ``param_groups``, ``optimizer``,
``lr_scheduler``, ``out_dir``...) and ``callbacks``. The trainer returned has
``train_step(batch) -> loss``, ``data`` (its iterator of batches) and ``run() -> result``, as
:class:`probnets.train.Trainer` does.

Every model's ``fit`` returns what ``run()`` returns: with the default factory, the run's
:class:`~probnets.train.TrainResult` (``history`` of logged rows, ``step``, ``checkpoint``).
"""

from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, Protocol, Union, cast, runtime_checkable

import numpy as np
import pyro
import torch

#: What a model's ``fit`` hands its trainer: a tuple of tensors sharing their first dimension,
#: or an iterable of batch tuples (e.g. a :class:`torch.utils.data.DataLoader`).
FitData = Union[tuple[torch.Tensor, ...], Iterable[Any]]


@runtime_checkable
class FitTrainer(Protocol):
    """What a model's ``fit`` uses of a trainer."""

    data: Iterator[Any]

    def train_step(self, batch: tuple[Any, ...]) -> float: ...

    def run(self) -> Any: ...


@runtime_checkable
class TrainerFactory(Protocol):
    """Makes the trainer of a model's ``fit`` (see the module's documentation)."""

    def svi(
        self,
        model_fn: Callable[..., Any],
        guide_fn: Callable[..., Any],
        elbo: pyro.infer.ELBO,
        data: FitData,
        **settings: Any,
    ) -> FitTrainer: ...

    def loss(
        self,
        objective_fn: Callable[..., torch.Tensor],
        module: torch.nn.Module,
        data: FitData,
        **settings: Any,
    ) -> FitTrainer: ...


_default: TrainerFactory | None = None


def register_default_trainer(factory: TrainerFactory) -> None:
    """Make ``factory`` the trainer of every ``fit`` called without ``trainer=``."""
    global _default
    if not isinstance(factory, TrainerFactory):
        raise TypeError(f"factory must have svi(...) and loss(...) methods, got {factory!r}")
    _default = factory


def resolve_trainer(trainer: TrainerFactory | None = None) -> TrainerFactory:
    """``trainer`` itself, or the registered default when it is ``None``."""
    if trainer is not None:
        if not isinstance(trainer, TrainerFactory):
            raise TypeError(
                f"trainer must be a TrainerFactory (with svi(...) and loss(...) "
                f"methods), got {trainer!r}"
            )
        return trainer
    if _default is None:
        raise RuntimeError(
            "no default trainer is registered: import probnets (or "
            "probnets.train), or pass trainer="
        )
    return _default


def fit_steps(
    num_steps: int | None,
    num_epochs: int | None,
    data: torch.Tensor | np.ndarray | Iterable[Any],
    batch_size: int | None = None,
) -> int:
    """The number of optimizer steps of a ``fit(..., num_steps=, num_epochs=)`` call.

    ``num_epochs`` passes over ``data`` are ``num_epochs * len(data)`` steps for a data
    loader, and ``num_epochs * (N // batch_size)`` for tensors of ``N`` rows (the last
    incomplete mini-batch of a pass is dropped; the full data is one step per pass).

    :param data: the tensors' first array, or the data loader.

    The counts themselves are checked by the model (its own messages).
    """
    if (num_steps is None) == (num_epochs is None):
        raise ValueError(
            "give exactly one of num_steps (optimizer steps) and num_epochs "
            f"(passes over the data), got num_steps={num_steps!r} and "
            f"num_epochs={num_epochs!r}"
        )
    if num_steps is not None:
        return num_steps
    assert num_epochs is not None  # exactly one of the two is given
    if isinstance(data, (torch.Tensor, np.ndarray)):
        n = data.shape[0]
        per_pass = 1 if batch_size is None or batch_size >= n else n // batch_size
        return num_epochs * per_pass
    try:
        # len, not an isinstance check: a DataLoader over an unsized dataset has a __len__
        # that raises
        per_pass = len(cast(Sized, data))
    except TypeError:
        raise ValueError(
            f"num_epochs needs data with a length (tensors, or a DataLoader over a "
            f"sized dataset); {type(data).__name__} has none: give num_steps"
        ) from None
    return num_epochs * per_pass


def is_loader(data: object) -> bool:
    """Whether ``data`` is an iterable of batches rather than a tensor or an array."""
    return not isinstance(data, (torch.Tensor, np.ndarray, list, tuple)) and hasattr(
        data, "__iter__"
    )


__all__ = [
    "FitData",
    "FitTrainer",
    "TrainerFactory",
    "fit_steps",
    "is_loader",
    "register_default_trainer",
    "resolve_trainer",
]
