"""The Trainer's data: tensors, NumPy arrays, DataLoaders resumed exactly, epochs."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from probnets.train import LoaderBatches, LossObjective, TrainConfig, Trainer
from probnets.train.sampler import as_batches


def regression_data(n=24):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def noisy_objective(net):
    # Draws from torch's global generator every step, so the run's random state must be
    # restored as exactly as the data's position for the parameters to agree.
    def loss(x, y):
        noise = 0.1 * torch.randn_like(y)
        return ((net(x) - y - noise) ** 2).mean()

    return LossObjective(loss, net)


def train(make_loader, steps, out_dir=None, resume=False, seed=0, **settings):
    torch.manual_seed(seed)
    net = nn.Linear(3, 1)
    config = TrainConfig(
        steps=steps, lr=0.05, progress=False, out_dir=out_dir, resume=resume, loggers=(), **settings
    )
    trainer = Trainer(noisy_objective(net), make_loader(), config)
    trainer.run()
    return net, trainer


def shuffled_loader(**kwargs):
    return DataLoader(TensorDataset(*regression_data()), batch_size=4, shuffle=True, **kwargs)


def assert_same_parameters(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize(
    "make_loader",
    [
        shuffled_loader,
        lambda: shuffled_loader(generator=torch.Generator().manual_seed(5)),
        lambda: shuffled_loader(drop_last=True, num_workers=0),
    ],
    ids=["global-rng", "own-generator", "drop-last"],
)
def test_shuffled_data_loader_resumes_exactly(tmp_path, make_loader):
    # 6 batches a pass: the interruption at 5 is inside the first pass, 10 in the second.
    uninterrupted, _ = train(make_loader, 10)
    train(make_loader, 5, out_dir=tmp_path)
    resumed, trainer = train(make_loader, 10, out_dir=tmp_path, resume=True, seed=99)
    assert_same_parameters(uninterrupted, resumed)
    assert trainer.data.epoch == 2 and trainer.data.batches == 4


def test_resume_at_a_pass_boundary_and_a_different_seed_differs(tmp_path):
    uninterrupted, _ = train(shuffled_loader, 9)
    train(shuffled_loader, 6, out_dir=tmp_path)  # exactly one pass
    resumed, _ = train(shuffled_loader, 9, out_dir=tmp_path, resume=True, seed=7)
    assert_same_parameters(uninterrupted, resumed)
    other, _ = train(shuffled_loader, 9, data_seed=3)
    assert not torch.equal(other.weight, uninterrupted.weight)


def test_data_seed_fixes_the_order_and_the_global_seed_does_too():
    def order(seed, data_seed=None):
        torch.manual_seed(seed)
        stream = LoaderBatches(
            DataLoader(torch.arange(12), batch_size=3, shuffle=True), seed=data_seed
        )
        return [next(stream)[0].tolist() for _ in range(8)]

    assert order(0) == order(0) and order(0) != order(1)
    assert order(0, data_seed=4) == order(1, data_seed=4)
    first = order(0, data_seed=4)
    assert sorted(sum(first[:4], [])) == list(range(12))  # a pass is a permutation
    assert first[:4] != first[4:]  # and each pass has its own


class CountingStatefulLoader:
    """A loader with torchdata's StatefulDataLoader interface: it restores its own position."""

    def __init__(self, batches):
        self.batches = batches
        self.position = 0
        self.loads = 0

    def __iter__(self):
        while self.position < len(self.batches):
            self.position += 1
            yield self.batches[self.position - 1]
        self.position = 0

    def __len__(self):
        return len(self.batches)

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]
        self.loads += 1


def test_a_stateful_loader_restores_its_own_position(tmp_path):
    x, y = regression_data(12)
    batches = [(x[i : i + 3], y[i : i + 3]) for i in range(0, 12, 3)]
    uninterrupted, _ = train(lambda: CountingStatefulLoader(batches), 6)
    train(lambda: CountingStatefulLoader(batches), 3, out_dir=tmp_path)
    resumed, trainer = train(
        lambda: CountingStatefulLoader(batches), 6, out_dir=tmp_path, resume=True
    )
    assert_same_parameters(uninterrupted, resumed)
    assert trainer.data.loader.loads == 1 and "loader" in trainer.data.state_dict()


def test_tensors_and_numpy_arrays_with_the_models_dtype():
    x, y = regression_data(16)
    net = nn.Linear(3, 1).double()
    seen = []

    def loss(a, b):
        seen.append((a.dtype, a.shape[0]))
        return ((net(a) - b) ** 2).mean()

    config = TrainConfig(steps=3, batch_size=4, progress=False, loggers=())
    Trainer(LossObjective(loss, net), (x.numpy().astype(np.float32), y.numpy()), config).run()
    assert seen == [(torch.float64, 4)] * 3
    labels = as_batches(np.arange(6), batch_size=2, seed=0, dtype=torch.float64)
    assert next(labels)[0].dtype == torch.int64  # integer arrays keep their type
    full = as_batches(torch.ones(5, 2))
    assert next(full)[0].shape == (5, 2) and len(full) == 1


def test_num_epochs_are_converted_to_steps():
    x, y = regression_data(24)
    net = nn.Linear(3, 1)
    objective = LossObjective(lambda a, b: ((net(a) - b) ** 2).mean(), net)
    loader = DataLoader(TensorDataset(x, y), batch_size=5)  # 5 batches, the last one short
    trainer = Trainer(objective, loader, TrainConfig(num_epochs=3, progress=False, loggers=()))
    assert trainer.config.steps == 15 and trainer.run().step == 15
    tensors = Trainer(objective, (x, y), TrainConfig(num_epochs=2, batch_size=8, progress=False))
    assert tensors.config.steps == 6
    with pytest.raises(ValueError, match="this data has no len"):
        Trainer(objective, iter(loader), TrainConfig(num_epochs=1))
    with pytest.raises(ValueError, match="exactly one of steps .* and num_epochs"):
        TrainConfig(steps=3, num_epochs=1)
    with pytest.raises(ValueError, match="exactly one of steps .* and num_epochs"):
        TrainConfig()
    with pytest.raises(ValueError, match="num_epochs must be a positive integer"):
        TrainConfig(num_epochs=0)


def test_bad_data_is_refused_with_its_type_named():
    with pytest.raises(TypeError, match="got float"):
        as_batches(3.0)
    with pytest.raises(TypeError, match="got dict"):
        as_batches({"x": torch.ones(3)})
    with pytest.raises(ValueError, match="batch_size is for tensors"):
        as_batches(DataLoader(torch.arange(4)), batch_size=2)
    with pytest.raises(TypeError, match="not an iterator"):
        LoaderBatches(iter([1, 2]))
    with pytest.raises(ValueError, match="yielded no batches"):
        next(LoaderBatches([]))
    stream = LoaderBatches([(torch.ones(1),)] * 2, seed=0)
    next(stream)
    state = stream.state_dict()
    short = LoaderBatches([], seed=0)
    short.load_state_dict(state)
    with pytest.raises(ValueError, match="not the loader the checkpoint was written with"):
        next(short)


def test_torchdata_stateful_dataloader_resumes_exactly(tmp_path):
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def make_loader():
        return stateful.StatefulDataLoader(
            TensorDataset(*regression_data()), batch_size=4, shuffle=True
        )

    uninterrupted, _ = train(make_loader, 10)
    train(make_loader, 5, out_dir=tmp_path)
    resumed, trainer = train(make_loader, 10, out_dir=tmp_path, resume=True, seed=99)
    assert_same_parameters(uninterrupted, resumed)
    assert trainer.data.stateful


def test_a_distributed_sampler_is_told_each_pass():
    from torch.utils.data.distributed import DistributedSampler

    data = torch.arange(8)
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
    stream = LoaderBatches(DataLoader(data, batch_size=8, sampler=sampler), seed=0)
    first, second = next(stream)[0], next(stream)[0]
    assert sampler.epoch == 1 and not torch.equal(first, second)
    assert sorted(second.tolist()) == list(range(8))
