"""The default trainer of models' ``fit`` methods (:mod:`probnets.models.fitting`),
registered when :mod:`probnets.train` is imported."""

from probnets.models.fitting import register_default_trainer
from probnets.train.config import TrainConfig
from probnets.train.objectives import LossObjective, SVIObjective
from probnets.train.sampler import BatchSampler, LoaderBatches
from probnets.train.trainer import Trainer


def fit_batches(data, batch_size=None, seed=None, convert=None):
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
        return _iterator_batches(data, convert)
    return LoaderBatches(data, convert, seed)


def _iterator_batches(iterator, convert):
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
        model_fn,
        guide_fn,
        elbo,
        data,
        *,
        batch_size=None,
        seed=None,
        convert=None,
        callbacks=(),
        **settings,
    ):
        return Trainer(
            SVIObjective(model_fn, guide_fn, elbo),
            fit_batches(data, batch_size, seed, convert),
            TrainConfig(**settings),
            callbacks=callbacks,
        )

    def loss(
        self,
        objective_fn,
        module,
        data,
        *,
        batch_size=None,
        seed=None,
        convert=None,
        callbacks=(),
        **settings,
    ):
        return Trainer(
            LossObjective(objective_fn, module),
            fit_batches(data, batch_size, seed, convert),
            TrainConfig(**settings),
            callbacks=callbacks,
        )


register_default_trainer(DefaultTrainerFactory())

__all__ = ["DefaultTrainerFactory", "fit_batches"]
