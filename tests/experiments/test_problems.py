"""The shipped comparison problems follow their inputs' dtype, and bad inputs name the
argument; the AIR estimator factory rejects unknown names."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from probnets.experiments import air_problem, measure, run_variance
from probnets.experiments.air import BASELINES, ESTIMATORS, make_elbo


def _canvases(num, size=50, dtype=torch.float64):
    images = torch.zeros(num, size, size, dtype=dtype)
    images[:, 10:20, 10:20] = 1.0
    return images, torch.ones(num, dtype=torch.long)


def test_air_problem_follows_the_images_dtype_and_measures_only_the_guide():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    images, counts = _canvases(6)
    problem = air_problem(images, counts, batch_size=3, seed=1, dair=True)
    assert problem.name == "air-dair"
    assert problem.params and not any("baseline" in name for name in problem.params)
    (fixed,) = problem.args
    assert fixed.shape == (3, 50, 50) and fixed.dtype == torch.float64
    (batch,) = problem.batch_args(4)
    assert batch.shape == (3, 50, 50)
    assert torch.equal(batch, problem.batch_args(4)[0])  # seeded by step
    report = measure(
        {"trace": Trace_ELBO()},
        problem.model,
        problem.guide,
        *problem.args,
        num_samples=2,
        params=problem.params,
    )
    assert all(pyro.param(name).dtype == torch.float64 for name in problem.params)
    assert report.estimators["trace"].num_params > 0
    accuracy = problem.evaluate()["count_accuracy"]
    assert 0.0 <= accuracy <= 1.0


def test_air_problem_bad_arguments():
    images, counts = _canvases(4)
    with pytest.raises(ValueError, match=r"counts must be integers of shape \(4,\)"):
        air_problem(images, counts[:3])
    with pytest.raises(ValueError, match=r"counts must be integers"):
        air_problem(images, counts.double())
    with pytest.raises(ValueError, match=r"batch_size must be an int in \[1, 4\], got 5"):
        air_problem(images, counts, batch_size=5)
    with pytest.raises(ValueError, match="images must be square canvases"):
        air_problem(images[:, :, :40], counts, batch_size=2)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        air_problem(images * 2, counts, batch_size=2)


def test_make_elbo_names():
    assert "score" in ESTIMATORS and "lstm" in BASELINES
    with pytest.raises(ValueError, match="estimator must be one of"):
        make_elbo("reinforce")
    with pytest.raises(ValueError, match=r"baseline must be one of .* got 'mean'"):
        make_elbo("score", baseline="mean")


def test_run_variance_needs_estimators(tmp_path):
    with pytest.raises(TypeError, match="estimators must be a non-empty dict"):
        run_variance(lambda: None, {}, str(tmp_path))
