"""The variance harness: unbiasedness detection, cost counting, fixed params, I/O."""

import json
import math
import os

import pytest
import torch

import pyro
import pyro.poutine as poutine
from pyro.infer import Trace_ELBO, TraceGraph_ELBO
from probnets.experiments import (
    TrackingReport,
    VarianceReport,
    measure,
    run_variance,
    toy_problem,
    track,
)
from probnets.infer.exact import exact_gradient
from probnets.models.sbn import SigmoidBeliefNet, binarize
from probnets.models.toy import ToyBernoulli
from probnets.viz.variance import plot_variance_run


class _BiasedELBO(Trace_ELBO):
    """Trace_ELBO plus a constant 0.05 on every guide-param gradient."""

    def loss_and_grads(self, model, guide, *args, **kwargs):
        with poutine.trace(param_only=True) as tr:
            loss = super().loss_and_grads(model, guide, *args, **kwargs)
        for site in tr.trace.nodes.values():
            leaf = site["value"].unconstrained()
            leaf.grad = leaf.grad + 0.05
        return loss


class _LearnedBaselineELBO:
    """REINFORCE with a learned constant baseline ``cv.baseline`` whose ``.grad`` is the
    gradient of the squared single-sample estimate, as a REBAR-style estimator does."""

    def loss_and_grads(self, model, guide, *args, **kwargs):
        with poutine.trace(param_only=True) as tr:
            guide_tr = poutine.trace(guide).get_trace(*args, **kwargs)
        leaves = [s["value"].unconstrained() for s in tr.trace.nodes.values()]
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(*args, **kwargs)
        log_q = guide_tr.log_prob_sum()
        cost = (log_q - model_tr.log_prob_sum()).detach()
        baseline = pyro.param("cv.baseline", lambda: torch.zeros((), dtype=cost.dtype))
        scores = torch.autograd.grad(log_q, leaves)
        estimates = [(cost - baseline) * s for s in scores]
        (baseline_grad,) = torch.autograd.grad(
            sum((g**2).sum() for g in estimates), [baseline.unconstrained()]
        )
        for leaf, g in zip(leaves, estimates):
            leaf.grad = g.detach() if leaf.grad is None else leaf.grad + g.detach()
        baseline.unconstrained().grad = baseline_grad
        return cost.item()


class _MutatingELBO(Trace_ELBO):
    """Increments a ``cv.counter`` param on every call and returns it as the loss."""

    def loss_and_grads(self, model, guide, *args, **kwargs):
        super().loss_and_grads(model, guide, *args, **kwargs)
        counter = pyro.param("cv.counter", lambda: torch.zeros(()))
        with torch.no_grad():
            counter.unconstrained().add_(1.0)
        return counter.item()


def test_unbiased_estimator_has_small_z_and_reproduces_reinforce_variance():
    toy = ToyBernoulli(target=0.45).double()
    report = measure(
        {"trace": Trace_ELBO()}, toy.model, toy.guide, num_samples=800, exact=toy.exact_gradient
    )
    stats = report.estimators["trace"]
    # Closed form 0.0159390625 (log -4.139), the REBAR paper's toy number.
    assert stats.variance == pytest.approx(toy.exact_variance(), rel=0.08)
    assert stats.bias_z < 3.5
    assert stats.bias_p_value > 1e-3
    assert stats.cosine == pytest.approx(1.0)
    assert stats.evals_per_estimate == 1.0
    assert stats.guide_evals_per_estimate == 1.0
    assert stats.log_variance == pytest.approx(math.log(stats.variance))
    assert stats.mean_grad["theta"].shape == ()


def test_biased_estimator_is_detected():
    toy = ToyBernoulli(target=0.45).double()
    report = measure(
        {"trace": Trace_ELBO(), "biased": _BiasedELBO()},
        toy.model,
        toy.guide,
        num_samples=600,
        exact=toy.exact_gradient(),
    )
    biased = report.estimators["biased"]
    assert biased.bias_z > 6
    assert biased.bias_p_value < 1e-6
    assert biased.bias_norm == pytest.approx(0.05, abs=0.01)
    assert report.estimators["trace"].bias_z < 3.5


def test_multi_site_model_against_enumeration():
    net = SigmoidBeliefNet((6, 3, 2)).double()
    x = binarize(torch.rand(2, 6, dtype=torch.float64), seed=1)
    exact = exact_gradient(net.model, net.guide, x)
    report = measure(
        {"trace": Trace_ELBO()},
        net.model,
        net.guide,
        x,
        num_samples=200,
        exact=exact,
    )
    for stats in report.estimators.values():
        assert stats.num_params == 3 * 6 + 3 + 2 * 3 + 2
        assert stats.bias_p_value > 1e-3, stats.name
        assert stats.cosine > 0.9


def test_vectorized_particles_count_as_evaluations():
    toy = ToyBernoulli()
    report = measure(
        {
            "vectorized": Trace_ELBO(num_particles=3, vectorize_particles=True),
            "sequential": Trace_ELBO(num_particles=3),
        },
        toy.model,
        toy.guide,
        num_samples=20,
    )
    assert report.estimators["vectorized"].evals_per_estimate == 3.0
    assert report.estimators["sequential"].evals_per_estimate == 3.0
    assert report.estimators["sequential"].guide_evals_per_estimate == 3.0


def test_params_and_control_variates_are_held_fixed():
    toy = ToyBernoulli()
    report = measure(
        {"learned": _LearnedBaselineELBO(), "mutating": _MutatingELBO()},
        toy.model,
        toy.guide,
        num_samples=50,
    )
    assert toy.theta.item() == 0.0
    assert pyro.param("cv.baseline").item() == 0.0
    # Every sample starts from the post-warm-up snapshot (counter == 1), so each call
    # returns 2.
    assert report.estimators["mutating"].loss == 2.0
    assert pyro.param("cv.counter").item() == 1.0


def test_control_variate_tuning_lowers_variance():
    toy = ToyBernoulli(target=0.45)
    untuned = measure({"b": _LearnedBaselineELBO()}, toy.model, toy.guide, num_samples=300)
    tuned = measure(
        {"b": _LearnedBaselineELBO()},
        toy.model,
        toy.guide,
        num_samples=300,
        cv_tune_steps=200,
        cv_lr=0.05,
    )
    # The optimal constant baseline (1 - p) f(1) + p f(0) = 0.2525 has zero variance.
    assert pyro.param("cv.baseline").item() == pytest.approx(0.2525, abs=0.03)
    assert tuned.estimators["b"].log_variance < untuned.estimators["b"].log_variance - 3
    assert toy.theta.item() == 0.0


class _RunningMeanELBO(Trace_ELBO):
    """Returns a running count kept as a Python attribute (estimator state)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def loss_and_grads(self, model, guide, *args, **kwargs):
        super().loss_and_grads(model, guide, *args, **kwargs)
        self.calls += 1
        return float(self.calls)


def test_python_state_of_estimator_is_restored_between_samples():
    toy = ToyBernoulli()
    elbo = _RunningMeanELBO()
    report = measure({"r": elbo}, toy.model, toy.guide, num_samples=10, cv_tune_steps=3)
    # 3 tuning calls + 1 warm-up call, then every sample starts from calls == 4.
    assert report.estimators["r"].loss == 5.0
    assert elbo.calls == 4


def test_bad_arguments():
    toy = ToyBernoulli()
    with pytest.raises(TypeError, match="estimators must be a non-empty dict"):
        measure([Trace_ELBO()], toy.model, toy.guide)
    with pytest.raises(TypeError, match=r"estimators\['x'\] must have loss_and_grads"):
        measure({"x": object()}, toy.model, toy.guide)
    with pytest.raises(ValueError, match="num_samples must be an int >= 2, got 1"):
        measure({"t": Trace_ELBO()}, toy.model, toy.guide, num_samples=1)
    with pytest.raises(ValueError, match=r"params \['nope'\] are not touched"):
        measure({"t": Trace_ELBO()}, toy.model, toy.guide, num_samples=2, params=["nope"])
    with pytest.raises(ValueError, match="reference must be one of"):
        measure({"t": Trace_ELBO()}, toy.model, toy.guide, num_samples=2, reference="z")


def test_json_round_trip_is_atomic(tmp_path):
    toy = ToyBernoulli()
    report = measure(
        {"trace": Trace_ELBO(), "tg": TraceGraph_ELBO()},
        toy.model,
        toy.guide,
        num_samples=30,
        exact=toy.exact_gradient,
    )
    path = tmp_path / "out" / "v.json"
    report.save_json(str(path))
    assert os.listdir(path.parent) == ["v.json"]
    loaded = VarianceReport.load_json(str(path))
    assert loaded.to_dict() == json.loads(path.read_text())
    for name, stats in report.estimators.items():
        other = loaded.estimators[name]
        assert other.variance == stats.variance
        assert other.bias_z == stats.bias_z
        assert torch.allclose(other.mean_grad["theta"], stats.mean_grad["theta"].double())
    table = loaded.table()
    assert "trace" in table and "log_var" in table
    assert len({len(line) for line in table.splitlines()[:4]}) == 1


def test_track_records_along_training_and_round_trips(tmp_path):
    report = track(
        {"trace": Trace_ELBO(), "learned": _LearnedBaselineELBO},
        lambda: toy_problem(target=0.45, theta=0.0),
        steps=6,
        every=3,
        num_samples=10,
        lr=0.1,
    )
    for records in report.runs.values():
        assert [r["step"] for r in records] == [0, 3, 6]
        assert records[0]["train_loss"] is None
        assert records[-1]["metric.expected_loss"] < 0.2525
        assert records[-1]["bias_z"] is not None
    report.save_json(str(tmp_path / "t.json"))
    assert TrackingReport.load_json(str(tmp_path / "t.json")).runs == report.runs
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        track({"t": Trace_ELBO()}, toy_problem, steps=2, every=0)


def test_run_variance_writes_table_json_and_figures(tmp_path):
    variance, tracking = run_variance(
        lambda: toy_problem(target=0.499),
        {"trace": Trace_ELBO(), "learned": _LearnedBaselineELBO()},
        str(tmp_path),
        num_samples=20,
        cv_tune_steps={"learned": 5},
        track_steps=4,
        track_every=2,
        track_samples=5,
        lr=0.1,
    )
    plot_variance_run(variance, tracking, str(tmp_path))
    names = set(os.listdir(tmp_path))
    assert {
        "variance.txt",
        "variance.json",
        "variance.png",
        "tracking.txt",
        "tracking.json",
        "tracking_log_variance.png",
        "tracking_expected_loss.png",
    } <= names
    assert not [n for n in names if n.startswith(".tmp")]
    assert VarianceReport.load_json(str(tmp_path / "variance.json")).meta["problem"] == "toy_t0.499"
    assert set(tracking.runs) == {"trace", "learned"}
