"""Mini-batches with a resumable random order: from tensors (:class:`BatchSampler`) or from a
data loader (:class:`LoaderBatches`), and :func:`as_batches`, which makes one of them from
whatever the Trainer is given."""

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import Any, Literal, Protocol, TypeAlias, cast

import numpy as np
import torch

from probnets.train import distributed

Batch: TypeAlias = tuple[Any, ...]
"""One mini-batch: the positional arguments of the model and guide (or of the loss)."""

ArrayLike: TypeAlias = torch.Tensor | np.ndarray
"""A tensor, or a NumPy array made one."""

TrainData: TypeAlias = ArrayLike | tuple[ArrayLike, ...] | Iterable[Any]
"""What a :class:`~probnets.train.Trainer` draws batches from (:func:`as_batches`): tensors or
arrays, an iterator of batch tuples, or a re-iterable loader of batches."""


class BatchSampler:
    """An endless stream of shuffled mini-batches drawn from equally long tensors.

    Each epoch is a fresh permutation drawn from the sampler's own :class:`torch.Generator`, so
    the order is fixed by ``seed`` and independent of any other randomness in the run. The
    generator state and the position in the epoch are part of :meth:`state_dict`, which is what
    makes a resumed run see exactly the batches an uninterrupted run would have seen.

    :param tensors: tensors sharing their first dimension (e.g. images and labels).
    :param int batch_size: examples per batch, or ``None`` for the full data every step.
    :param int seed: seed of the shuffling generator (``None``: drawn from torch's global
        generator, so ``pyro.set_rng_seed`` fixes it).
    :param device: where batches are sent (the data may stay on the CPU).
    :param bool drop_last: drop the last incomplete batch of each epoch (default True, so every
        step sees the same batch size).
    :param shard: ``(rank, world_size)`` to yield only this rank's contiguous share of each
        global batch; ``"auto"`` (default) reads them from an initialized
        :mod:`torch.distributed` process group. Every rank draws the same global order, so
        ``world_size`` ranks with ``batch_size`` split between them see exactly the examples a
        single process would.
    :param transform: optional ``transform(batch, generator) -> batch`` applied to every batch
        with the sampler's own generator (e.g. dynamic binarization), so its randomness is
        resumable too. Under sharding it sees the whole global batch, before the split.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int | None = None,
        seed: int | None = 0,
        device: torch.device | str | None = None,
        drop_last: bool = True,
        shard: tuple[int, int] | Literal["auto"] = "auto",
        transform: Callable[[Batch, torch.Generator], Iterable[torch.Tensor]] | None = None,
    ) -> None:
        if not tensors:
            raise ValueError("BatchSampler needs at least one tensor")
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"BatchSampler argument {i} must be a tensor, got {type(t)}")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ValueError(
                "BatchSampler tensors must share their first dimension, got sizes "
                f"{[t.shape[0] for t in tensors]}"
            )
        if batch_size is not None and not (isinstance(batch_size, int) and 0 < batch_size <= n):
            raise ValueError(
                f"batch_size must be an integer in [1, {n}] or None, got {batch_size!r}"
            )
        if shard == "auto":
            shard = (distributed.rank(), distributed.world_size())
        self.rank, self.world_size = shard
        if self.world_size > 1 and (batch_size is None or batch_size % self.world_size):
            raise ValueError(
                f"batch_size {batch_size} must be divisible by the number of ranks "
                f"({self.world_size}): it is the global batch, split evenly between ranks"
            )
        self.tensors = tensors
        self.transform = transform
        self.num_examples = n
        self.batch_size = batch_size
        self.device = device
        self.drop_last = drop_last
        if seed is None:
            seed = int(torch.randint(2**62, ()))
        self.generator = torch.Generator().manual_seed(seed)
        self._order: torch.Tensor | None = None
        self._position = 0
        self.epoch = 0

    def __iter__(self) -> "BatchSampler":
        return self

    def __len__(self) -> int:
        """Batches in one pass over the data (an epoch)."""
        if self.batch_size is None:
            return 1
        if self.drop_last:
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    def _new_epoch(self) -> torch.Tensor:
        self._order = order = torch.randperm(self.num_examples, generator=self.generator)
        self._position = 0
        self.epoch += 1
        return order

    def __next__(self) -> tuple[torch.Tensor, ...]:
        if self.batch_size is None:
            return self._to_device(self._transformed(self.tensors))
        order = self._order
        if (
            order is None
            or self._position + (self.batch_size if self.drop_last else 1) > self.num_examples
        ):
            order = self._new_epoch()
        index = order[self._position : self._position + self.batch_size]
        self._position += len(index)
        batch = self._transformed(tuple(t[index] for t in self.tensors))
        if self.world_size > 1:
            batch = tuple(t.chunk(self.world_size)[self.rank] for t in batch)
        return self._to_device(batch)

    def _transformed(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(self.transform(batch, self.generator)) if self.transform else tuple(batch)

    def _to_device(self, batch: Iterable[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if self.device is None:
            return tuple(batch)
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def state_dict(self) -> dict[str, Any]:
        """The shuffling generator's state and the position in the epoch."""
        return {
            "generator": self.generator.get_state(),
            "order": self._order,
            "position": self._position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s position."""
        self.generator.set_state(state["generator"])
        self._order = state["order"]
        self._position = state["position"]
        self.epoch = state["epoch"]


_END = object()


class _StatefulLoader(Protocol):
    """A loader that saves and restores its own position (torchdata's StatefulDataLoader)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class LoaderBatches:
    """An endless stream of batch tuples from a data loader, passed over again whenever it
    ends, whose position is checkpointed so a resumed run sees exactly the batches an
    uninterrupted run would have.

    Two ways to an exact resume, picked by what the loader offers:

    - a loader with ``state_dict()`` / ``load_state_dict()``, such as torchdata's
      ``StatefulDataLoader``, is asked for its position and restores it itself;
    - any other re-iterable loader (a plain :class:`torch.utils.data.DataLoader`, a list of
      batches) is replayed: the state holds the number of passes started, the batches taken
      from the current one, the seed of each pass and the states of the loader's own
      generators (``loader.generator``, its sampler's) at the pass's start. Resuming starts
      the pass again with the same seeds and generator states and skips the batches already
      taken, which loads them again: the cost of a partial pass.

    Each pass starts under its own seed, derived from ``seed`` and the pass number: the
    loader's iterator is made and its first batch drawn with torch's global generator seeded
    so (and restored afterwards), which fixes a ``shuffle=True`` DataLoader's order and its
    workers' base seed without touching the run's other randomness.
    A sampler with ``set_epoch`` (:class:`~torch.utils.data.distributed.DistributedSampler`)
    is told the 0-based pass number before each pass, as a hand-written epoch loop would.

    :param loader: a re-iterable source of batches (an iterator is used up after one pass).
    :param convert: optional ``convert(batch) -> batch`` applied to each batch tuple.
    :param int seed: the seed the passes' seeds derive from (``None``: drawn from torch's
        global generator at the first batch).
    """

    def __init__(
        self,
        loader: Iterable[Any],
        convert: Callable[[Batch], Batch] | None = None,
        seed: int | None = None,
    ) -> None:
        if not hasattr(loader, "__iter__") or hasattr(loader, "__next__"):
            raise TypeError(
                "LoaderBatches needs a re-iterable loader (e.g. a DataLoader), not "
                f"an iterator, got {type(loader).__name__}"
            )
        self.loader = loader
        self.convert = convert
        self.seed = seed
        self.stateful = callable(getattr(loader, "state_dict", None)) and callable(
            getattr(loader, "load_state_dict", None)
        )
        self.epoch = 0  # passes started
        self.batches = 0  # batches taken from the current pass
        self._generator_states: list[torch.Tensor] = []
        self._iterator: Iterator[Any] | None = None
        self._pending: Any = _END

    def __iter__(self) -> "LoaderBatches":
        return self

    def __len__(self) -> int:
        """Batches in one pass (``TypeError`` if the loader has no length)."""
        return len(cast(Sized, self.loader))  # a TypeError when it has no length

    def __next__(self) -> Batch:
        if self._iterator is None and self.epoch > 0:  # resumed inside a pass
            self._open(skip=0 if self.stateful else self.batches)
        batch = _END if self._iterator is None else self._take()
        if batch is _END:
            self._begin_pass()
            batch = self._take()
            if batch is _END:
                raise ValueError("the data loader yielded no batches")
        self.batches += 1
        batch = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        return batch if self.convert is None else self.convert(batch)

    def _take(self) -> Any:
        if self._pending is not _END:
            batch, self._pending = self._pending, _END
            return batch
        assert self._iterator is not None  # a pass is open
        return next(self._iterator, _END)

    def _begin_pass(self) -> None:
        if self.seed is None:
            self.seed = int(torch.randint(2**62, ()))
        self.epoch += 1
        self.batches = 0
        self._generator_states = [g.get_state() for g in self._generators()]
        self._open(skip=0)

    def _open(self, skip: int) -> None:
        """Start the current pass under its seed and skip ``skip`` batches; the first batch
        after them is drawn too (a DataLoader's sampler draws its seed then)."""
        assert self.seed is not None  # drawn when the first pass began
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_pass_seed(self.seed, self.epoch))
            for generator, state in zip(self._generators(), self._generator_states):
                generator.set_state(state)
            set_epoch = getattr(getattr(self.loader, "sampler", None), "set_epoch", None)
            if callable(set_epoch):  # a DistributedSampler's order follows its epoch
                set_epoch(self.epoch - 1)
            iterator = iter(self.loader)
            for taken in range(skip):
                if next(iterator, _END) is _END:
                    raise ValueError(
                        f"the data loader's pass {self.epoch} has {taken} "
                        f"batches but the checkpoint had taken {skip}: it is "
                        "not the loader the checkpoint was written with"
                    )
            self._pending = next(iterator, _END)
        self._iterator = iterator

    def _generators(self) -> list[torch.Generator]:
        """The loader's own generators (its order), unless it restores its state itself."""
        if self.stateful:
            return []
        owners = (
            self.loader,
            getattr(self.loader, "sampler", None),
            getattr(getattr(self.loader, "batch_sampler", None), "sampler", None),
        )
        found: dict[int, torch.Generator] = {}
        for owner in owners:
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator):
                found[id(generator)] = generator
        return list(found.values())

    def state_dict(self) -> dict[str, Any]:
        """The position in the passes (and a stateful loader's own state)."""
        state: dict[str, Any] = {
            "seed": self.seed,
            "epoch": self.epoch,
            "batches": self.batches,
            "generators": list(self._generator_states),
        }
        if self.stateful:
            state["loader"] = cast(_StatefulLoader, self.loader).state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s position (at the next batch)."""
        if self.stateful != ("loader" in state):
            raise ValueError(
                "the checkpointed data position was written by a "
                f"{'stateful' if 'loader' in state else 'plain'} loader; resume "
                "with the same kind of loader"
            )
        self.seed, self.epoch, self.batches = state["seed"], state["epoch"], state["batches"]
        self._generator_states = list(state["generators"])
        if self.stateful:
            cast(_StatefulLoader, self.loader).load_state_dict(state["loader"])
        self._iterator, self._pending = None, _END  # reopened at the next batch


def _pass_seed(seed: int, epoch: int) -> int:
    # A distinct, reproducible seed per pass (golden-ratio increments, kept in 63 bits).
    return (seed + epoch * 0x9E3779B97F4A7C15) % 2**63


def repeat_epochs(
    loader: Iterable[Any],
    convert: Callable[[Batch], Batch] | None = None,
    seed: int | None = None,
) -> LoaderBatches:
    """A :class:`LoaderBatches` stream over ``loader`` (kept for its old name)."""
    return LoaderBatches(loader, convert, seed)


def batches_per_epoch(data: object) -> int | None:
    """Batches in one pass over ``data``, or ``None`` when it has no length (or is an
    iterator other than these streams: it is used up after one pass)."""
    if hasattr(data, "__next__") and not isinstance(data, (BatchSampler, LoaderBatches)):
        return None
    if not isinstance(data, Sized):
        return None
    try:
        return len(data)
    except TypeError:
        return None


def as_batches(
    data: TrainData,
    batch_size: int | None = None,
    seed: int | None = None,
    dtype: torch.dtype | None = None,
) -> Iterator[Batch]:
    """The stream of batch tuples the Trainer draws from, made from what it is given.

    - a tensor or NumPy array, or a tuple of them sharing their first dimension: a
      :class:`BatchSampler` (``batch_size``, ``None`` for the full data each step; ``seed``).
      Floating-point arrays become tensors of ``dtype`` (the model's), others keep theirs
      (integer labels stay int64);
    - an iterator of batch tuples (e.g. a :class:`BatchSampler`): used as it is;
    - any other iterable of batches (a DataLoader, a list of batch tuples): a
      :class:`LoaderBatches` stream, resumed exactly.
    """
    if isinstance(data, (torch.Tensor, np.ndarray)):
        data = (data,)
    if (
        isinstance(data, tuple)
        and data
        and all(isinstance(t, (torch.Tensor, np.ndarray)) for t in data)
    ):
        return BatchSampler(
            *(as_data_tensor(t, dtype) for t in data), batch_size=batch_size, seed=seed
        )
    if isinstance(data, (tuple, str, bytes, Mapping)) or not hasattr(data, "__iter__"):
        raise TypeError(
            "data must be tensors or NumPy arrays (one, or a tuple of them sharing their first "
            "dimension), an iterator of batch tuples such as BatchSampler, or an iterable of "
            f"batches such as a DataLoader; got {type(data).__name__}"
        )
    if batch_size is not None:
        raise ValueError(
            "batch_size is for tensors and arrays; a data loader yields batches of its own size"
        )
    if hasattr(data, "__next__"):
        return cast(Iterator[Batch], data)
    return LoaderBatches(data, seed=seed)


def as_data_tensor(value: ArrayLike, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``value`` as a tensor; floating-point NumPy arrays are converted to ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value
    tensor = torch.from_numpy(np.ascontiguousarray(value))
    if tensor.is_floating_point() and dtype is not None:
        tensor = tensor.to(dtype)
    return tensor
