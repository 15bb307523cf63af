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
passed over again whenever it ends (setting ``convert``: a function applied to each batch).
The other settings are those of :class:`probnets.train.TrainConfig` (``steps``, ``lr``,
``param_groups``, ``progress``...). The trainer returned has ``train_step(batch) -> loss``,
``data`` (its iterator of batches) and ``run() -> result``, as
:class:`probnets.train.Trainer` does.
"""

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class FitTrainer(Protocol):
    """What a model's ``fit`` uses of a trainer."""

    data: Iterator

    def train_step(self, batch: tuple) -> float: ...

    def run(self) -> Any: ...


@runtime_checkable
class TrainerFactory(Protocol):
    """Makes the trainer of a model's ``fit`` (see the module's documentation)."""

    def svi(self, model_fn, guide_fn, elbo, data, **settings) -> FitTrainer: ...

    def loss(self, objective_fn, module, data, **settings) -> FitTrainer: ...


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
            raise TypeError(f"trainer must be a TrainerFactory (with svi(...) and loss(...) "
                            f"methods), got {trainer!r}")
        return trainer
    if _default is None:
        raise RuntimeError("no default trainer is registered: import probnets (or "
                           "probnets.train), or pass trainer=")
    return _default


__all__ = ["FitTrainer", "TrainerFactory", "register_default_trainer", "resolve_trainer"]
