"""Bad input to BayesianHypernet's constructor, fit and predict is refused by name; numpy
arrays are accepted; fit(out_dir=...) writes a checkpoint its own load rebuilds."""

import math
import re

import numpy as np
import pyro
import pytest
import torch

from probnets.models.bayes_hypernet import BayesianHypernet


def regression_data(num=12, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(num, 2, generator=g, dtype=dtype)
    return x, x.sum(-1).sin()


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"target": [2, -3, 1]}, ValueError, "target must list at least two positive int widths"),
        ({"target": [2, 1], "noise_scale": math.inf}, ValueError, "noise_scale must be a positive"),
        ({"target": [2, 1], "noise_scale": math.nan}, ValueError, "noise_scale must be a positive"),
        ({"target": [2, 1], "prior_scale": 0.0}, ValueError, "prior_scale must be a positive"),
        ({"target": [2, 1], "init_scale": -0.1}, ValueError, "init_scale must be a positive"),
        ({"target": [2, 1], "hidden_dim": 2.5}, ValueError, "hidden_dim must be a positive int"),
        (
            {"target": [2, 1], "flow_transforms": 0},
            ValueError,
            "flow_transforms must be a positive int",
        ),
        ({"target": [2, 1], "flow_hidden": [8, 0]}, ValueError, "flow_hidden must be"),
        (
            {"target": [2, 1], "hypernet_posterior": "yes"},
            TypeError,
            "hypernet_posterior must be a bool",
        ),
        ({"target": [2, 1], "kl_weight": math.inf}, ValueError, "kl_weight must be a positive"),
    ],
)
def test_constructor_refuses_bad_arguments_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        BayesianHypernet(**kwargs)


def test_constructor_accepts_numpy_integer_widths():
    model = BayesianHypernet(list(np.array([2, 4, 1])))
    assert model.widths == [2, 4, 1] and all(type(w) is int for w in model.widths)


def bad_fit_inputs():
    x, y = regression_data()
    nan_x, inf_y = x.clone(), y.clone()
    nan_x[3, 1] = math.nan
    inf_y[5] = math.inf
    return [
        ({"x": nan_x, "y": y}, ValueError, "x holds NaN or infinite values (1 of 12 rows)"),
        ({"x": x, "y": inf_y}, ValueError, "y holds NaN or infinite values (1 of 12 rows)"),
        ({"x": x[:, :1], "y": y}, ValueError, "x must have shape (N, 2)"),
        ({"x": x, "y": y[:5]}, ValueError, "y must have shape (12,) or (12, 1), got (5,)"),
        ({"x": x[:0], "y": y[:0]}, ValueError, "x must hold at least one example"),
        (
            {"x": x.long(), "y": y},
            TypeError,
            "x must be a floating-point tensor, got torch.int64; convert it with x.float()",
        ),
        (
            {"x": x.double(), "y": y},
            TypeError,
            "x has dtype torch.float64 but the model computes in torch.float32; pass x.float()",
        ),
        ({"x": x, "y": y.long()}, TypeError, "convert it with y.float()"),
        ({"x": x, "y": None}, ValueError, "y is required"),
        (
            {"x": x.tolist(), "y": y},
            TypeError,
            "x must be a torch.Tensor or a numpy array when y is",
        ),
        ({"x": x, "y": y, "num_steps": 0}, ValueError, "num_steps must be a positive int"),
        ({"x": x, "y": y, "lr": math.nan}, ValueError, "lr must be a positive number"),
        ({"x": x, "y": y, "lr": -1e-3}, ValueError, "lr must be a positive number"),
        ({"x": x, "y": y, "num_particles": 0}, ValueError, "num_particles must be a positive int"),
        ({"x": x, "y": y, "batch_size": 0}, ValueError, "batch_size must be"),
    ]


@pytest.mark.parametrize("case", range(len(bad_fit_inputs())))
def test_fit_refuses_bad_input_by_name(case):
    arguments, error, match = bad_fit_inputs()[case]
    arguments = {"num_steps": 1, **arguments}
    model = BayesianHypernet([2, 3, 1], embedding_dim=2)
    with pytest.raises(error, match=re.escape(match)):
        model.fit(**arguments)


def test_classification_labels_must_be_integers():
    model = BayesianHypernet([2, 3], task="classification", embedding_dim=2)
    x = torch.randn(4, 2)
    with pytest.raises(TypeError, match=re.escape("convert it with y.long()")):
        model.fit(x, torch.tensor([0.0, 1.0, 2.0, 1.0]), num_steps=1)
    with pytest.raises(ValueError, match=re.escape("labels in [0, 2], got range [0, 3]")):
        model.fit(x, np.array([0, 1, 2, 3]), num_steps=1)


def test_predict_refuses_bad_input_by_name():
    model = BayesianHypernet([2, 3, 1], embedding_dim=2)
    x, _ = regression_data()
    x[0, 0] = math.inf
    with pytest.raises(ValueError, match=re.escape("x holds NaN or infinite values (1 of 12")):
        model.predict(x)
    with pytest.raises(ValueError, match=re.escape("x must have shape (N, 2)")):
        model.predict(torch.randn(3))
    with pytest.raises(TypeError, match=re.escape("pass x.float()")):
        model.predict(torch.randn(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        model.predict(torch.randn(3, 2), num_samples=-1)


def test_numpy_arrays_are_converted_to_the_models_dtype():
    pyro.set_rng_seed(0)
    x, y = regression_data(dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        pyro.clear_param_store()  # PyroModule parameters of the same name share the store
        model = BayesianHypernet([2, 4, 1], embedding_dim=2).to(dtype)
        model.fit(x.numpy(), y.numpy(), num_steps=2)  # float64 arrays, either model dtype
        prediction = model.predict(x.numpy(), num_samples=3)
        assert prediction.mean.dtype == model.noise_scale.dtype
        assert prediction.mean.shape == (12,)
    pyro.clear_param_store()
    classifier = BayesianHypernet([2, 3], task="classification", embedding_dim=2)
    classifier.fit(x.numpy(), np.array([0, 1, 2] * 4), num_steps=2)
    assert classifier.predict(x.float().numpy(), num_samples=2).probs.shape == (12, 3)


def test_predict_refuses_no_rows():
    model = BayesianHypernet([2, 3, 1], embedding_dim=2)
    with pytest.raises(
        ValueError, match=re.escape("x must hold at least one example, got shape (0, 2)")
    ):
        model.predict(np.zeros((0, 2)), num_samples=3)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"parameterization": "unit", "embedding_dim": 2, "noise": "learned", "guide": "flow"}],
)
def test_fit_out_dir_checkpoint_loads_with_its_own_load(tmp_path, kwargs):
    pyro.set_rng_seed(0)
    x, y = regression_data(dtype=torch.float64)
    model = BayesianHypernet([2, 5, 1], **kwargs).double()
    model.fit(x, y, num_steps=3, out_dir=str(tmp_path), tensorboard=False)
    loaded = BayesianHypernet.load(str(tmp_path / "last.pt"))
    assert loaded.config() == model.config() or loaded.noise == "learned"
    assert loaded.noise_scale.dtype == torch.float64
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    pyro.set_rng_seed(1)
    expected = model.predict(x, num_samples=4)
    pyro.set_rng_seed(1)
    assert torch.equal(loaded.predict(x, num_samples=4).mean, expected.mean)
