"""Two gloo ranks on the CPU take the same steps as one process with the whole batch."""

import os

import pyro
import pyro.distributions as dist
import pyro.infer
import pytest
import torch

from probnets.train import (
    BatchSampler,
    SVIObjective,
    TrainConfig,
    Trainer,
    load_checkpoint,
)
from probnets.train.distributed import launch_local

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_gloo_available(), reason="needs the gloo backend"
)


def regression_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(64, generator=g)
    return x, y


def model(x, y):
    w = pyro.param("w", torch.zeros(3))
    b = pyro.param("b", torch.zeros(()))
    noise = pyro.param("noise", torch.ones(()), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Normal(x @ w + b, noise), obs=y)


def noisy_guide(x, y):
    # A stochastic guide, so each rank's random stream matters for the resume check.
    loc = pyro.param("z_loc", torch.zeros(()))
    pyro.sample("z", dist.Normal(loc, 1.0))


def noisy_model(x, y):
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    model(x, y + 0.01 * z)


def train_regression(rank, out_dir, steps, batch_size, stochastic=False, resume=False):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x, y = regression_data()
    if rank >= 0:
        pyro.set_rng_seed(100 + rank)
    trainer = Trainer(
        SVIObjective(
            noisy_model if stochastic else model,
            noisy_guide if stochastic else (lambda x, y: None),
            pyro.infer.Trace_ELBO(),
        ),
        BatchSampler(x, y, batch_size=batch_size, seed=0),
        TrainConfig(
            steps=steps, lr=0.05, out_dir=out_dir, checkpoint_every=4, resume=resume, progress=False
        ),
    )
    trainer.run()


def params_of(out_dir):
    return load_checkpoint(os.path.join(out_dir, "last.pt"))["params"]


def two_rank_runs(rank, root):
    # One spawn runs everything, since starting processes is the slow part.
    train_regression(rank, os.path.join(root, "two"), 10, 32)
    train_regression(rank, os.path.join(root, "straight"), 8, 32, stochastic=True)
    train_regression(rank, os.path.join(root, "resumed"), 4, 32, stochastic=True)
    train_regression(rank, os.path.join(root, "resumed"), 8, 32, stochastic=True, resume=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    train_regression(-1, str(root / "one"), steps=10, batch_size=32)
    launch_local(two_rank_runs, 2, str(root))
    return root


def test_two_ranks_equal_one_process_with_the_whole_batch(runs):
    one, two = params_of(runs / "one"), params_of(runs / "two")
    assert set(one) == set(two) == {"w", "b", "noise"}
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-5), name
    # The parameters did move: the check is not vacuous.
    assert one["w"].abs().max() > 0.3
    # Only rank 0 wrote: one metrics file with one row per step.
    assert (runs / "two" / "metrics.csv").read_text().count("\n") == 11


def test_resuming_a_two_rank_run(runs):
    straight, resumed = params_of(runs / "straight"), params_of(runs / "resumed")
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    state = load_checkpoint(runs / "resumed" / "last.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    # The ranks draw different noise.
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
