"""The plate problem: per-element decaying-average baselines against one average per site,
in the variance harness and its command."""

import json

import pytest
import torch

import pyro

from probnets.cli import main
from probnets.experiments import plate_problem, run_variance
from probnets.infer import ScoreFunction_ELBO, standard_estimators
from probnets.infer.exact import exact_gradient
from probnets.models.plated_toy import PlatedBernoulli

SCALES = (1.0, 10.0, 100.0)


def test_exact_gradient_matches_enumeration_in_float64():
    pyro.clear_param_store()
    toy = PlatedBernoulli(SCALES, theta=0.3).double()
    enumerated = exact_gradient(toy.model, toy.guide, params=["theta"])["theta"]
    closed_form = toy.exact_gradient()["theta"]
    assert enumerated.dtype == closed_form.dtype == torch.float64
    assert torch.allclose(enumerated, closed_form, atol=1e-12)
    # d L / d theta is the exact loss's derivative too
    theta = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    p = torch.sigmoid(theta)
    loss = sum(s * (p * 0.55**2 + (1 - p) * 0.45**2) for s in SCALES)
    loss.backward()
    assert float(closed_form.sum()) == pytest.approx(float(theta.grad))
    assert toy.expected_loss() == pytest.approx(float(loss.detach()))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scales=()), "scales"),
        (dict(scales=(1.0, -1.0)), "scales"),
        (dict(scales=(1.0, float("nan"))), "scales"),
        (dict(target=1.5), "target"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PlatedBernoulli(**kwargs)


def test_site_average_is_one_scalar_and_restores_as_one():
    pyro.clear_param_store()
    toy = PlatedBernoulli(SCALES).double()
    per_element = ScoreFunction_ELBO(baseline="decaying_avg")
    per_site = ScoreFunction_ELBO(baseline="decaying_avg_site")
    for _ in range(3):
        per_element.loss_and_grads(toy.model, toy.guide)
        per_site.loss_and_grads(toy.model, toy.guide)
    assert per_element.state_dict()["estimators"]["score"]["baselines"]["averages"]["b"].shape == (
        3,
    )
    site_average = per_site.state_dict()["estimators"]["score"]["baselines"]["averages"]["b"]
    assert site_average.shape == ()
    restored = ScoreFunction_ELBO(baseline="decaying_avg_site")
    restored.load_state_dict(per_site.state_dict())
    restored.loss_and_grads(toy.model, toy.guide)
    assert restored.state_dict()["estimators"]["score"]["baselines"]["averages"]["b"].shape == ()


def test_harness_shows_per_element_averages_beat_one_per_site(tmp_path):
    names = ["score", "score+avg", "score+avg-site"]
    report, _ = run_variance(
        lambda: plate_problem(SCALES, dtype=torch.float64),
        standard_estimators(names),
        str(tmp_path),
        num_samples=300,
        cv_tune_steps={"score+avg": 100, "score+avg-site": 100},
        seed=0,
    )
    stats = report.estimators
    # both unbiased
    for name in names:
        assert stats[name].bias_z < 4, (name, stats[name].bias_z)
    # per element: the averages track each element's own mean cost; per site: the mean over
    # the plate, near no baseline at all for the elements far from it
    assert stats["score+avg"].variance < 0.01 * stats["score+avg-site"].variance
    assert stats["score+avg-site"].variance > 0.2 * stats["score"].variance


def test_variance_command_runs_the_plate_problem(tmp_path, capsys):
    out = tmp_path / "plate"
    assert (
        main(
            [
                "variance",
                "plate",
                "--out",
                str(out),
                "--scales",
                "1",
                "50",
                "--samples",
                "30",
                "--tune",
                "20",
                "--float64",
                "--estimators",
                "score+avg",
                "score+avg-site",
            ]
        )
        == 0
    )
    report = json.loads((out / "variance.json").read_text())
    assert report["meta"]["problem"] == "plate_1-50"
    assert (out / "variance.png").exists()
    assert "score+avg-site" in capsys.readouterr().out


def test_variance_command_refuses_a_non_positive_scale(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["variance", "plate", "--out", str(tmp_path / "x"), "--scales", "1", "0"])
    assert "--scales: expected a positive number, got '0'" in capsys.readouterr().err
