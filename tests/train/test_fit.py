"""Models' fit: one return type, DataLoaders (resumed exactly), num_epochs, optimizers."""

import functools

import numpy as np
import pyro
import pyro.optim
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from probnets.models.bayes_hypernet import BayesianHypernet
from probnets.models.fitting import fit_steps
from probnets.models.gated import NeuronDAG
from probnets.train import TrainResult


def regression(n=24, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g, dtype=dtype)
    return x, x[:, :1] - 0.5 * x[:, 1:2]


def test_every_fit_returns_the_runs_train_result():
    pyro.set_rng_seed(0)
    x, y = regression()
    gated = NeuronDAG(3, 2, 1)
    result = gated.fit(x, y, num_steps=3)
    assert isinstance(result, TrainResult) and result.step == 3
    assert [row["step"] for row in result.history] == [1, 2, 3]
    assert len(gated.history["loss"]) == 3  # the per-datum record stays on the model
    masked = gated.export_architecture(0.0).fit(x, y, num_steps=2)
    assert isinstance(masked, TrainResult) and masked.step == 2
    bayes = BayesianHypernet([3, 4, 1], task="regression").fit(x, y[:, 0], num_steps=2)
    assert isinstance(bayes, TrainResult) and bayes.step == 2


def test_gated_fit_stops_when_its_callback_says_so():
    pyro.set_rng_seed(0)
    x, y = regression()
    net = NeuronDAG(3, 2, 1)
    result = net.fit(x, y, num_steps=50, callback=lambda step, loss: step == 4)
    assert result.step == 5 and net.history["step"] == [0, 1, 2, 3, 4]


def test_gated_fit_takes_a_data_loader_like_its_tensors():
    x, y = regression(32)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    pyro.set_rng_seed(0)
    net = NeuronDAG(3, 2, 1)
    result = net.fit(loader, num_epochs=2)
    assert result.step == 8 and net.num_data == 32
    torch.testing.assert_close(net.target_scale, y.std(0))  # the "auto" noise scale
    with pytest.raises(ValueError, match="y must be None"):
        net.fit(loader, y, num_steps=1)
    with pytest.raises(ValueError, match=r"\(x, y\) batches, got 1"):
        net.fit(DataLoader(TensorDataset(x), batch_size=8), num_steps=1)
    with pytest.raises(TypeError, match="expected a torch.float32 tensor"):
        net.fit(DataLoader(TensorDataset(x.double(), y.double()), batch_size=8), num_steps=1)
    masked = net.export_architecture(0.0)
    assert masked.fit(loader, num_epochs=1, lr=0.05).step == 4


def test_gated_fit_with_a_loader_resumes_exactly(tmp_path):
    x, y = regression(24)

    def fit(steps, seed, **settings):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        net = NeuronDAG(3, 2, 1)
        loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
        net.fit(loader, num_steps=steps, **settings)
        return net

    uninterrupted = fit(9, 0)
    fit(4, 0, out_dir=tmp_path, loggers=())
    resumed = fit(9, 3, out_dir=tmp_path, loggers=(), resume=True)
    for (name, a), b in zip(uninterrupted.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


def test_num_epochs_in_fit():
    x, y = regression(30)
    assert fit_steps(None, 3, x, batch_size=8) == 9  # 3 full batches of 8 a pass
    assert fit_steps(None, 2, x) == 2  # the full data is one step
    assert fit_steps(None, 2, DataLoader(TensorDataset(x), batch_size=8)) == 8
    with pytest.raises(ValueError, match="exactly one of num_steps .* and num_epochs"):
        fit_steps(5, 2, x)
    with pytest.raises(ValueError, match="needs data with a length"):
        fit_steps(None, 1, iter([x]))
    pyro.set_rng_seed(0)
    model = BayesianHypernet([3, 4, 1], task="regression")
    result = model.fit(x.numpy(), y[:, 0].numpy(), num_epochs=2, batch_size=10)
    assert result.step == 6
    with pytest.raises(ValueError, match="num_epochs must be a positive int"):
        model.fit(x, y[:, 0], num_epochs=0)
    with pytest.raises(ValueError, match="num_epochs: expected a positive int"):
        NeuronDAG(3, 2, 1).fit(x, y, num_epochs=0)


def test_fits_take_torch_and_pyro_optimizers_and_schedulers():
    x, y = regression(16)
    pyro.set_rng_seed(0)
    net = NeuronDAG(3, 2, 1)
    # SGD takes no betas: the gate rule leaves them out.
    result = net.fit(x, y, num_steps=2, optimizer="sgd", lr=0.01)
    assert result.step == 2
    step_lr = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)
    model = BayesianHypernet([3, 4, 1], task="regression")
    rates = [
        row["lr"]
        for row in model.fit(x, y[:, 0], num_steps=4, lr=0.02, lr_scheduler=step_lr).history
    ]
    assert rates == pytest.approx([0.02, 0.02, 0.01, 0.01])  # the cosine decay steps aside
    clipped = model.fit(
        x, y[:, 0], num_steps=2, optimizer=pyro.optim.ClippedAdam({"lr": 0.01, "clip_norm": 5.0})
    )
    assert clipped.step == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_arrays_in_fit_follow_the_models_dtype(dtype):
    x, y = regression(12)
    pyro.set_rng_seed(0)
    net = NeuronDAG(3, 2, 1).to(dtype)
    net.fit(x.numpy().astype(np.float64), y.numpy().astype(np.float32), num_steps=1)
    assert net.gate_logits.dtype == dtype and net.target_scale.dtype == dtype
