"""The default trainer of models' ``fit`` methods (:mod:`probnets.models.fitting`),
registered when :mod:`probnets.train` is imported."""

from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import torch
from pyro.infer import ELBO

from probnets.models.fitting import register_default_trainer
from probnets.train.callbacks import Callback
from probnets.train.config import TrainConfig
from probnets.train.objectives import LossObjective, SVIObjective
from probnets.train.sampler import Batch, BatchSampler, LoaderBatches
from probnets.train.trainer import Trainer


def fit_batches(
    data: tuple[torch.Tensor, ...] | Iterable[Any],
    batch_size: int | None = None,
    seed: int | None = None,
    convert: Callable[[Batch], Batch] | None = None,
) -> Iterator[Batch]:
    """Mini-batches of a tuple of tensors (:class:`~probnets.train.BatchSampler`), a resumable
    endless stream over a re-iterable loader (:class:`~probnets.train.LoaderBatches`), or the
    batches of an iterator, which ends when it does."""
    if isinstance(data, tuple):
        if convert is not None:
            raise ValueError("convert is for data loaders; transform tensors before fit")
        return BatchSampler(*data, batch_size=batch_size, seed=seed)
    if batch_size is not None:
        raise ValueError("batch_size is for tensors; a data loader yields batches of its own size")
    if hasattr(data, "__next__"):
        return _iterator_batches(cast(Iterator[Any], data), convert)
    return LoaderBatches(data, convert, seed)


def _iterator_batches(
    iterator: Iterator[Any], convert: Callable[[Batch], Batch] | None
) -> Iterator[Batch]:
    for batch in iterator:
        batch = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        yield batch if convert is None else convert(batch)
    raise ValueError(
        "the iterator of batches is used up: an iterator, unlike a DataLoader, "
        "is passed over only once (give the loader itself, or fewer steps)"
    )


class DefaultTrainerFactory:
    """Makes a :class:`~probnets.train.Trainer` for a model's ``fit``.

    ``batch_size``, ``seed`` and ``convert`` say how batches are drawn (:func:`fit_batches`),
    ``callbacks`` are the Trainer's; the other settings are
    :class:`~probnets.train.TrainConfig` fields.
    """

    def svi(
        self,
        model_fn: Callable[..., Any],
        guide_fn: Callable[..., Any],
        elbo: ELBO,
        data: tuple[torch.Tensor, ...] | Iterable[Any],
        *,
        batch_size: int | None = None,
        seed: int | None = None,
        convert: Callable[[Batch], Batch] | None = None,
        callbacks: Iterable[Callback] = (),
        **settings: Any,
    ) -> Trainer:
        """A Trainer of ``elbo`` for ``model_fn`` and ``guide_fn``
        (:class:`~probnets.train.SVIObjective`)."""
        return Trainer(
            SVIObjective(model_fn, guide_fn, elbo),
            fit_batches(data, batch_size, seed, convert),
            TrainConfig(**settings),
            callbacks=callbacks,
        )

    def loss(
        self,
        objective_fn: Callable[..., torch.Tensor],
        module: torch.nn.Module,
        data: tuple[torch.Tensor, ...] | Iterable[Any],
        *,
        batch_size: int | None = None,
        seed: int | None = None,
        convert: Callable[[Batch], Batch] | None = None,
        callbacks: Iterable[Callback] = (),
        **settings: Any,
    ) -> Trainer:
        """A Trainer of the deterministic loss ``objective_fn`` of ``module``
        (:class:`~probnets.train.LossObjective`)."""
        return Trainer(
            LossObjective(objective_fn, module),
            fit_batches(data, batch_size, seed, convert),
            TrainConfig(**settings),
            callbacks=callbacks,
        )


register_default_trainer(DefaultTrainerFactory())

__all__ = ["DefaultTrainerFactory", "fit_batches"]
