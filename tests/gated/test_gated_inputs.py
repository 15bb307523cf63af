"""Bad input to the gated networks' constructors, ``fit`` and ``predict``: a ``TypeError`` or
``ValueError`` that names the argument, before any training step; NumPy arrays converted."""

import numpy as np
import pyro
import pytest
import torch
from torch import nn

from probnets.models.gated import LayerDAG, NeuronDAG


def _neuron_dag():
    pyro.clear_param_store()
    return NeuronDAG(3, 2, 2)


def _layer_dag(likelihood="normal"):
    pyro.clear_param_store()
    blocks = [
        nn.Sequential(nn.Flatten(), nn.LazyLinear(4), nn.Tanh()),
        nn.Sequential(nn.Flatten(), nn.LazyLinear(2)),
    ]
    return LayerDAG(blocks, (3, 1, 1), gate_per="feature_map", likelihood=likelihood)


def _nan(shape):
    t = torch.randn(shape)
    t.view(-1)[1] = float("nan")
    return t


def _inf(shape):
    t = torch.randn(shape)
    t.view(-1)[0] = float("inf")
    return t


Y_SHAPE = r"y: expected floating targets of shape \(5, 2\)"
BAD_DATA = [
    # (x, y, exception, message)
    (_nan((5, 3)), torch.randn(5, 2), ValueError, "x: expected finite values, got 1 NaN"),
    (torch.randn(5, 3), _inf((5, 2)), ValueError, "y: expected finite values"),
    (torch.randn(5, 4), torch.randn(5, 2), ValueError, r"x: expected shape \(batch, 3\)"),
    (torch.randn(5), torch.randn(5, 2), ValueError, r"x: expected shape \(batch, 3\)"),
    (torch.randn(5, 3), torch.randn(5, 3), ValueError, Y_SHAPE),
    (torch.randn(5, 3), torch.randn(4, 2), ValueError, Y_SHAPE),
    (torch.randn(5, 3), torch.randn(5), ValueError, "y: expected floating targets"),
    (torch.randn(0, 3), torch.randn(0, 2), ValueError, "x: expected at least one example"),
    (
        torch.randn(5, 3).double(),
        torch.randn(5, 2),
        TypeError,
        r"x: expected a torch.float32 tensor .*got floating torch.float64; "
        r"convert it with x.float\(\)",
    ),
    (torch.randn(5, 3), torch.randn(5, 2).double(), TypeError, r"y: .*y.float\(\)"),
    (
        torch.randint(3, (5, 3)),
        torch.randn(5, 2),
        TypeError,
        r"x: expected a torch.float32 tensor .*non-floating torch.int64; .*x.float\(\)",
    ),
    ([[0.0, 1.0, 2.0]], torch.randn(1, 2), TypeError, "x: expected a torch.Tensor or NumPy array"),
    (torch.randn(5, 3), "targets", TypeError, "y: expected a torch.Tensor or NumPy array"),
    (np.array([["a", "b", "c"]]), torch.randn(1, 2), TypeError, "x: expected a numeric NumPy"),
]


@pytest.mark.parametrize("x, y, error, message", BAD_DATA)
def test_fit_rejects_bad_data_naming_the_argument(x, y, error, message):
    m = _neuron_dag()
    before = m.gate_logits.detach().clone()
    with pytest.raises(error, match=message):
        m.fit(x, y, num_steps=1)
    assert torch.equal(m.gate_logits.detach(), before)  # nothing was trained


@pytest.mark.parametrize("x, y, error, message", BAD_DATA[:2] + BAD_DATA[7:11])
def test_layer_dag_fit_rejects_bad_data(x, y, error, message):
    m = _layer_dag()
    x = x.view(x.shape + (1, 1)) if x.dim() == 2 else x
    with pytest.raises(error, match=message.replace(r"\(batch, 3\)", r"\(batch, 3, 1, 1\)")):
        m.fit(x, y, num_steps=1)


def test_layer_dag_rejects_a_wrong_input_shape():
    m = _layer_dag()
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, 3, 1, 1\), got \(5, 3\)"):
        m.fit(torch.randn(5, 3), torch.randn(5, 2), num_steps=1)


def test_categorical_labels_are_checked():
    pyro.clear_param_store()
    m = NeuronDAG(3, 2, 4, likelihood="categorical")
    x = torch.randn(5, 3)
    float_labels = r"y: expected int64 class labels, got torch.float32; .*y.long\(\)"
    with pytest.raises(TypeError, match=float_labels):
        m.fit(x, torch.zeros(5), num_steps=1)
    out_of_range = r"y: expected class labels in \[0, 3\], got range \[0, 4\]"
    with pytest.raises(ValueError, match=out_of_range):
        m.fit(x, torch.tensor([0, 1, 2, 3, 4]), num_steps=1)
    with pytest.raises(ValueError, match=r"y: expected int64 class labels of shape \(5,\)"):
        m.fit(x, torch.zeros(5, 1, dtype=torch.long), num_steps=1)
    with pytest.raises(TypeError, match=r"y: expected integer class labels, got a NumPy array"):
        m.fit(x, np.zeros(5), num_steps=1)
    m.fit(x.numpy().astype(np.float64), np.array([0, 1, 2, 3, 0]), num_steps=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_arrays_are_converted_to_the_networks_dtype(dtype):
    m = _neuron_dag().to(dtype)
    x = np.random.default_rng(0).normal(size=(6, 3))  # float64, as NumPy makes them
    y = np.random.default_rng(1).normal(size=(6, 2)).astype(np.float32)
    m.fit(x, y, num_steps=2)
    history = m.history
    assert len(history["loss"]) == 2
    mean = m.predict(x, num_samples=3)
    assert mean.dtype == dtype and mean.shape == (6, 2)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"num_steps": 0}, ValueError, "num_steps: expected a positive int"),
        ({"num_steps": 2.5}, TypeError, "num_steps: expected a positive int"),
        ({"num_steps": True}, TypeError, "num_steps: expected a positive int"),
        ({"lr": 0.0}, ValueError, "lr: expected a positive finite number"),
        ({"lr": float("nan")}, ValueError, "lr: expected a positive finite number"),
        ({"gate_lr": -1.0}, ValueError, "gate_lr: expected a positive finite number"),
        ({"gate_betas": (0.9,)}, ValueError, r"gate_betas: expected two numbers in \[0, 1\)"),
        ({"gate_betas": (0.9, 1.0)}, ValueError, "gate_betas: expected two numbers"),
        ({"batch_size": 0}, ValueError, "batch_size: expected a positive int or None"),
        ({"record_every": -1}, ValueError, "record_every: expected a non-negative int"),
        ({"callback": 3}, TypeError, "callback: expected a callable or None"),
        ({"estimator": "disarm"}, TypeError, "estimator: expected a Pyro ELBO instance"),
    ],
)
def test_fit_rejects_bad_training_arguments(kwargs, error, message):
    m = _neuron_dag()
    args = {"num_steps": 1, **kwargs}
    with pytest.raises(error, match=message):
        m.fit(torch.randn(5, 3), torch.randn(5, 2), **args)


def test_predict_checks_its_input():
    m = _neuron_dag()
    with pytest.raises(ValueError, match="x: expected finite values"):
        m.predict(_nan((4, 3)))
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, 3\)"):
        m.predict(torch.randn(4, 2))
    with pytest.raises(ValueError, match="num_samples: expected an int >= 1"):
        m.predict(torch.randn(4, 3), num_samples=0)


@pytest.mark.parametrize(
    "sizes, error, message",
    [
        ((0, 2, 1), ValueError, "num_inputs: expected an int >= 1, got 0"),
        ((2, -1, 1), ValueError, "num_hidden: expected an int >= 0, got -1"),
        ((2, 2, 0), ValueError, "num_outputs: expected an int >= 1, got 0"),
        ((2.0, 2, 1), TypeError, "num_inputs: expected an int >= 1, got float"),
        ((2, True, 1), TypeError, "num_hidden: expected an int >= 0, got bool"),
    ],
)
def test_neuron_dag_sizes(sizes, error, message):
    with pytest.raises(error, match=message):
        NeuronDAG(*sizes)
    assert NeuronDAG(*(np.int64(s) for s in (2, 1, 1))).num_gates == 5  # NumPy ints are ints


@pytest.mark.parametrize("shape", [(0, 1, 1), (3, -1, 1), (3, 1), 3, (3.0, 1, 1)])
def test_layer_dag_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape: expected .* positive ints"):
        LayerDAG([nn.Sequential(nn.Flatten(), nn.LazyLinear(2))], shape)
