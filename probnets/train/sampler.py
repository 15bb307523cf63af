"""Mini-batches with a resumable random order."""

import torch

from probnets.train import distributed


class BatchSampler:
    """An endless stream of shuffled mini-batches drawn from equally long tensors.

    Each epoch is a fresh permutation drawn from the sampler's own :class:`torch.Generator`, so
    the order is fixed by ``seed`` and independent of any other randomness in the run. The
    generator state and the position in the epoch are part of :meth:`state_dict`, which is what
    makes a resumed run see exactly the batches an uninterrupted run would have seen.

    :param tensors: tensors sharing their first dimension (e.g. images and labels).
    :param int batch_size: examples per batch, or ``None`` for the full data every step.
    :param int seed: seed of the shuffling generator.
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

    def __init__(self, *tensors, batch_size=None, seed=0, device=None, drop_last=True,
                 shard="auto", transform=None):
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
                f"({self.world_size}): it is the global batch, split evenly between ranks")
        self.tensors = tensors
        self.transform = transform
        self.num_examples = n
        self.batch_size = batch_size
        self.device = device
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self._order = None
        self._position = 0
        self.epoch = 0

    def __iter__(self):
        return self

    def _new_epoch(self):
        self._order = torch.randperm(self.num_examples, generator=self.generator)
        self._position = 0
        self.epoch += 1

    def __next__(self):
        if self.batch_size is None:
            return self._to_device(self._transformed(self.tensors))
        if self._order is None or self._position + (
            self.batch_size if self.drop_last else 1
        ) > self.num_examples:
            self._new_epoch()
        index = self._order[self._position:self._position + self.batch_size]
        self._position += len(index)
        batch = self._transformed(tuple(t[index] for t in self.tensors))
        if self.world_size > 1:
            batch = tuple(t.chunk(self.world_size)[self.rank] for t in batch)
        return self._to_device(batch)

    def _transformed(self, batch):
        return tuple(self.transform(batch, self.generator)) if self.transform else tuple(batch)

    def _to_device(self, batch):
        if self.device is None:
            return tuple(batch)
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def state_dict(self):
        return {
            "generator": self.generator.get_state(),
            "order": self._order,
            "position": self._position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self._order = state["order"]
        self._position = state["position"]
        self.epoch = state["epoch"]


def repeat_epochs(loader, convert=None):
    """An endless stream of batch tuples from an iterable of batches (e.g. a
    :class:`torch.utils.data.DataLoader`), starting a new pass, with the loader's own
    shuffling, whenever one ends; ``convert(batch) -> batch`` is applied to each (e.g. to move
    it to the model's device). Unlike :class:`BatchSampler` its position is not checkpointed:
    a resumed run starts a fresh pass."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            batch = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
            yield batch if convert is None else convert(batch)
        if empty:
            raise ValueError("the data loader yielded no batches (an iterator, unlike a "
                             "DataLoader, is used up after one pass)")
