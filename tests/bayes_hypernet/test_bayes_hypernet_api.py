"""Shapes, dtypes, guides, metrics and argument errors of the Bayesian hypernetwork."""

import pyro
import pytest
import torch
from torch import nn

from probnets.models.bayes_hypernet import (
    BayesianHypernet,
    auroc,
    expected_calibration_error,
    parse_target,
)


@pytest.mark.parametrize(
    "parameterization,generator,guide",
    [
        ("layer", "linear", "mean_field"),
        ("layer", "mlp", "full_rank"),
        ("layer", "identity", "flow"),
        ("layer", "subspace", "full_rank"),
        ("unit", None, "delta"),
        ("unit", None, "flow"),
        ("input_unit", None, "mean_field"),
        ("input_unit", None, "flow"),
    ],
)
def test_classification_shapes_every_guide(parameterization, generator, guide):
    pyro.set_rng_seed(0)
    model = BayesianHypernet(
        [6, 5, 3],
        task="classification",
        guide=guide,
        parameterization=parameterization,
        generator=generator,
        embedding_dim=None if generator == "identity" else 3,
        hidden_dim=4,
    )
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    result = model.fit(x, y, num_steps=2, lr=1e-2)
    assert len(result.history) == 2
    weights = model.sample_weights(x, 7)
    assert [tuple(w.shape) for w, _ in weights] == [(7, 5, 6), (7, 3, 5)]
    assert [tuple(b.shape) for _, b in weights] == [(7, 5), (7, 3)]
    prediction = model.predict(x, num_samples=4)
    assert prediction.probs.shape == (10, 3)
    assert torch.allclose(prediction.probs.sum(-1), torch.ones(10))
    assert prediction.entropy.shape == prediction.mutual_information.shape == (10,)
    assert (prediction.mutual_information >= -1e-6).all()
    assert (prediction.mutual_information <= prediction.entropy + 1e-6).all()
    if guide == "delta":  # point-estimated embeddings: no epistemic part
        assert prediction.mutual_information.abs().max() < 1e-5


@pytest.mark.parametrize("parameterization", ["layer", "unit", "input_unit"])
def test_regression_float64_end_to_end(parameterization):
    pyro.set_rng_seed(0)
    model = BayesianHypernet(
        [2, 8, 8, 3],
        parameterization=parameterization,
        guide="flow",
        noise="learned",
        embedding_dim=2,
        hidden_dim=4,
    ).double()
    x, y = torch.randn(12, 2, dtype=torch.float64), torch.randn(12, 3, dtype=torch.float64)
    model.fit(x, y, num_steps=3, num_particles=2)
    for _, value in pyro.get_param_store().named_parameters():
        assert value.dtype == torch.float64
    prediction = model.predict(x, num_samples=5)
    for t in prediction:
        assert t.dtype == torch.float64 and t.shape == (12, 3)
    assert torch.allclose(
        prediction.std**2, prediction.epistemic_std**2 + prediction.aleatoric_std**2
    )
    assert model.sample_outputs(x, 5).dtype == torch.float64


def test_subspace_generator_has_a_bnn_prior_in_a_fixed_random_subspace():
    torch.manual_seed(0)
    model = BayesianHypernet(
        [4, 3, 2], generator="subspace", embedding_dim=5, prior_scale=0.5, guide="full_rank"
    ).double()
    first = model.generators[0]
    # Rows of unit norm: under z ~ N(0, s^2 I) each weight is N(offset, s^2), as in a BNN.
    assert first.basis.shape == (3 * 5, 5) and first.basis.dtype == torch.float64
    assert torch.allclose(first.basis.norm(dim=1), torch.ones(15, dtype=torch.float64))
    z = torch.randn(200_000, 5, dtype=torch.float64) * 0.5
    weight, bias = first(z)
    assert weight.shape == (200_000, 3, 4) and bias.shape == (200_000, 3)
    flat = torch.cat([weight.flatten(1), bias], dim=1)
    assert torch.allclose(flat.mean(0), first.offset.detach(), atol=0.01)
    assert torch.allclose(flat.std(0), torch.full((15,), 0.5, dtype=torch.float64), rtol=0.02)
    # The basis is a buffer: saved with the model, never trained.
    assert "generators.0.basis" in model.state_dict()
    assert "basis" not in dict(first.named_parameters())
    basis = first.basis.clone()
    x, y = torch.randn(9, 4, dtype=torch.float64), torch.randn(9, 2, dtype=torch.float64)
    model.fit(x, y, num_steps=3, lr=0.1)
    assert torch.equal(first.basis, basis)
    assert model.predict(x, num_samples=4).mean.dtype == torch.float64


def test_single_output_regression_accepts_flat_targets_and_returns_flat_moments():
    model = BayesianHypernet([1, 4, 1], embedding_dim=2)
    x = torch.linspace(-1, 1, 8).unsqueeze(-1)
    model.fit(x, x[:, 0] ** 2, num_steps=1)
    assert model.num_data == 8
    prediction = model.predict(x, num_samples=3)
    assert prediction.mean.shape == prediction.std.shape == (8,)


def test_minibatch_likelihood_is_scaled_to_the_data_set():
    pyro.set_rng_seed(0)
    model = BayesianHypernet([1, 1], generator="identity", noise_scale=1.0)
    x, y = torch.randn(4, 1), torch.randn(4)
    trace = pyro.poutine.trace(model.model).get_trace(x, y)
    trace.compute_log_prob()
    unscaled = trace.nodes["obs"]["log_prob_sum"]
    model.num_data = 40
    replayed = pyro.poutine.trace(pyro.poutine.replay(model.model, trace)).get_trace(x, y)
    replayed.compute_log_prob()
    assert torch.allclose(replayed.nodes["obs"]["log_prob_sum"], 10 * unscaled)


def test_fit_takes_a_data_loader_and_scales_the_likelihood_to_its_data_set():
    from torch.utils.data import DataLoader, TensorDataset

    pyro.set_rng_seed(0)
    x = torch.linspace(-2, 2, 40).unsqueeze(-1)
    y = 0.5 * x[:, 0]
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)  # float32 batches
    model = BayesianHypernet([1, 1], generator="identity", noise_scale=0.1).double()
    result = model.fit(loader, num_steps=300, lr=0.05)
    assert model.num_data == 40
    assert len(result.history) == 300  # 5 batches per pass: the loader was passed over 60 times
    x_new = torch.tensor([[1.0]], dtype=torch.float64)
    assert abs(model.predict(x_new, 50).mean.item() - 0.5) < 0.1
    with pytest.raises(ValueError, match="y and batch_size must be None"):
        model.fit(loader, y, num_steps=1)
    with pytest.raises(ValueError, match="pass num_data"):
        model.fit(iter(loader), num_steps=1)
    model.fit(iter(loader), num_steps=2, num_data=40)  # an unsized iterable with num_data
    with pytest.raises(ValueError, match=r"\(x, y\) batches, got 1"):
        model.fit(DataLoader(TensorDataset(x), batch_size=8), num_steps=1)
    with pytest.raises(ValueError, match="yielded no batches"):
        model.fit(DataLoader(TensorDataset(x[:0], y[:0])), num_steps=1, num_data=1)
    with pytest.raises(ValueError, match="exactly one of num_steps .* and num_epochs"):
        model.fit(x, y)
    with pytest.raises(ValueError, match="num_data is for data loaders"):
        model.fit(x.double(), y.double(), num_steps=1, num_data=40)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        model.fit(DataLoader(TensorDataset(torch.arange(40).view(40, 1), y)), num_steps=1)


def test_images_are_flattened_and_module_targets_are_read():
    target = nn.Sequential(nn.Linear(16, 5), nn.Tanh(), nn.Linear(5, 4))
    assert parse_target(target, "relu") == ([16, 5, 4], "tanh")
    model = BayesianHypernet(
        target, task="classification", parameterization="unit", embedding_dim=2, hidden_dim=3
    )
    images, labels = torch.rand(6, 4, 4), torch.randint(0, 4, (6,))
    model.fit(images, labels, num_steps=1)
    assert model.predict(images, 2).probs.shape == (6, 4)


def test_unit_embeddings_are_plated_per_layer():
    model = BayesianHypernet([3, 4, 2], parameterization="unit", embedding_dim=5)
    trace = pyro.poutine.trace(model.model).get_trace(torch.randn(7, 3))
    shapes = {
        name: tuple(site["value"].shape)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and name.startswith("z.")
    }
    assert shapes == {"z.units0": (3, 5), "z.units1": (4, 5), "z.units2": (2, 5)}
    assert trace.nodes["z.units1"]["cond_indep_stack"][0].name == "units1"


def test_input_unit_embeddings_generate_low_rank_weights_with_independent_inputs():
    torch.manual_seed(0)
    model = BayesianHypernet(
        [3, 4, 2], parameterization="input_unit", embedding_dim=5, prior_scale=0.5
    ).double()
    trace = pyro.poutine.trace(model.model).get_trace(torch.randn(7, 3, dtype=torch.float64))
    shapes = {
        name: tuple(site["value"].shape)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and name.startswith("z.")
    }
    assert shapes == {"z.units0": (3, 5), "z.units1": (4, 5)}  # no latents on the outputs
    first = model.generators[0]
    z = torch.randn(2, 3, 5, dtype=torch.float64)
    weight, bias = first(z)
    for s in range(2):
        for j in range(4):
            for i in range(3):
                expected = first.output_factors[j] @ z[s, i] / 3**0.5
                assert torch.allclose(weight[s, j, i], expected)
    assert bias.shape == (2, 4) and weight.dtype == torch.float64
    # Under the prior, w_ji ~ N(0, s^2 |a_j|^2 / n_in), independent across inputs i.
    with torch.no_grad():
        weight, _ = first(0.5 * torch.randn(200000, 3, 5, dtype=torch.float64))
    expected_variance = 0.25 * first.output_factors.detach().pow(2).sum(-1) / 3
    assert torch.allclose(weight.var(0), expected_variance[:, None].expand(4, 3), rtol=0.02)
    covariance = torch.einsum("sj,sk->jk", weight[:, :, 0], weight[:, :, 1]) / len(weight)
    assert covariance.abs().max() < 0.01


def test_kl_weight_scales_every_prior_and_guide_term_but_not_the_likelihood():
    pyro.set_rng_seed(0)
    model = BayesianHypernet(
        [2, 3, 1],
        parameterization="input_unit",
        embedding_dim=2,
        hypernet_prior_scale=0.5,
        kl_weight=0.2,
    )
    x, y = torch.randn(5, 2), torch.randn(5)
    model.fit(x, y, num_steps=1)
    guide_trace = pyro.poutine.trace(model.guide).get_trace(x, y)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model.model, trace=guide_trace)).get_trace(
        x, y
    )
    scales = {
        name: site["scale"]
        for name, site in model_trace.nodes.items()
        if site["type"] == "sample" and name not in ("units0", "units1", "data")
    }
    assert scales == {"z.units0": 0.2, "z.units1": 0.2, "hypernet.prior": 0.2, "obs": 1.0}
    assert all(
        site["scale"] == 0.2 for name, site in guide_trace.nodes.items() if name.startswith("z.")
    )
    assert model.config()["kl_weight"] == 0.2


def test_hypernet_prior_adds_the_log_density_of_the_generator():
    pyro.set_rng_seed(0)
    model = BayesianHypernet([2, 3, 1], embedding_dim=2, hypernet_prior_scale=0.5)
    trace = pyro.poutine.trace(model.model).get_trace(torch.randn(5, 2), torch.randn(5))
    expected = sum(
        torch.distributions.Normal(0.0, 0.5).log_prob(p).sum()
        for p in model.generators.parameters()
    )
    assert torch.allclose(trace.nodes["hypernet.prior"]["fn"].log_factor, expected)


@pytest.mark.parametrize(
    "layer,name",
    [
        (nn.Conv2d(1, 2, 3), "Conv2d"),
        (nn.BatchNorm1d(4), "BatchNorm1d"),
        (nn.Dropout(0.1), "Dropout"),
    ],
)
def test_unsupported_target_layers_are_named(layer, name):
    target = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), layer, nn.Linear(4, 2))
    with pytest.raises(TypeError, match=f"target layer 2 is {name}.*only nn.Linear"):
        BayesianHypernet(target)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"target": [3]}, "at least two positive int widths"),
        ({"target": [3, 0, 1]}, "at least two positive int widths"),
        ({"target": [3, 1], "task": "ranking"}, "task must be one of"),
        ({"target": [3, 1], "guide": "laplace"}, "guide must be one of"),
        ({"target": [3, 1], "parameterization": "weight"}, "parameterization must be one of"),
        ({"target": [3, 1], "noise": "hetero"}, "noise must be one of"),
        (
            {"target": [3, 1], "generator": "identity", "embedding_dim": 4},
            "embedding_dim must be None",
        ),
        ({"target": [3, 1], "parameterization": "unit", "generator": "mlp"}, "takes no generator"),
        (
            {"target": [3, 1], "parameterization": "input_unit", "generator": "unit"},
            "takes no generator",
        ),
        ({"target": [3, 1], "kl_weight": 0.0}, "kl_weight must be a positive number"),
        ({"target": [3, 1], "embedding_dim": 0}, "embedding_dim must be a positive int"),
        ({"target": [3, 1], "prior_scale": -1.0}, "prior_scale must be a positive number"),
        ({"target": [3, 1], "activation": "swish"}, "activation must be one of"),
        ({"target": [3, 1], "task": "classification"}, "at least 2 output units"),
        ({"target": nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 1))}, "expects 5 inputs"),
        (
            {"target": nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1), nn.ReLU())},
            "activations must sit between",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BayesianHypernet(**kwargs)


def test_target_of_the_wrong_type():
    with pytest.raises(TypeError, match="target must be a list of layer widths"):
        BayesianHypernet("mlp")


def test_bad_data():
    regression = BayesianHypernet([3, 2], embedding_dim=2)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\).*got \(5, 4\)"):
        regression.model(torch.randn(5, 4))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        regression.model(torch.ones(5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"y must have shape \(5, 2\), got \(5,\)"):
        regression.model(torch.randn(5, 3), torch.randn(5))
    classifier = BayesianHypernet([3, 4], task="classification", embedding_dim=2)
    with pytest.raises(TypeError, match="integer tensor of class labels"):
        classifier.model(torch.randn(5, 3), torch.randn(5))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\], got range \[0, 4\]"):
        classifier.model(torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        classifier.predict(torch.randn(5, 3), num_samples=0)


def test_expected_calibration_error_on_a_hand_computed_case():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    labels = torch.tensor([0, 1, 1, 1])
    ece, bins = expected_calibration_error(probs, labels, num_bins=2)
    # Every prediction lands in the upper bin: mean confidence 0.7375, accuracy 0.75.
    assert torch.isclose(ece, torch.tensor(abs(0.7375 - 0.75)))
    assert bins["count"].tolist() == [0.0, 4.0]


def test_auroc_matches_pairwise_counting_with_ties():
    g = torch.Generator().manual_seed(0)
    neg = torch.randint(0, 5, (30,), generator=g).float()
    pos = torch.randint(2, 8, (20,), generator=g).float()
    pairs = (pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()
    assert auroc(neg, pos) == pytest.approx(pairs.mean().item())
    assert auroc(torch.zeros(3), torch.ones(2)) == 1.0


def test_hypernet_posterior_makes_generator_parameters_latent():
    pyro.set_rng_seed(0)
    model = BayesianHypernet(
        [2, 4, 1],
        parameterization="unit",
        embedding_dim=2,
        hidden_dim=3,
        hypernet_prior_scale=1.0,
        hypernet_posterior=True,
    ).double()
    x, y = torch.randn(9, 2, dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    model.fit(x, y, num_steps=2)
    trace = pyro.poutine.trace(model.model).get_trace(x, y)
    site = trace.nodes["generators.0.readout.weight"]
    assert site["type"] == "sample" and not site["is_observed"]
    assert site["value"].dtype == torch.float64
    # Different guide draws give different generators, so the same embeddings would give
    # different weights; both enter the predictive spread.
    (w0, b0), (w1, b1) = model.sample_weights(x, 6)
    assert w0.shape == (6, 4, 2) and w1.shape == (6, 1, 4)
    assert model.predict(x, 6).epistemic_std.min() > 0
    with pytest.raises(ValueError, match="hypernet_posterior=True needs hypernet_prior_scale"):
        BayesianHypernet([2, 1], hypernet_posterior=True)


@pytest.mark.parametrize("task,widths", [("classification", [3, 4, 2]), ("regression", [3, 4, 1])])
def test_predict_before_fit_samples_the_prior_guide(task, widths):
    model = BayesianHypernet(widths, task=task, parameterization="unit", embedding_dim=2)
    x = torch.randn(5, 3)
    model.predict(x, num_samples=2)
    trace = pyro.poutine.trace(model.guide).get_trace(x)
    latent = {
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not name.startswith("units")
        and not name.endswith("_unconstrained")
    }
    assert latent == {"z.units0", "z.units1", "z.units2"}
