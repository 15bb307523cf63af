import math

import pyro
import pyro.poutine as poutine
import pytest
import torch

from probnets.models.air import (
    AIR,
    count_accuracy,
    count_confusion,
    geometric_presence_probs,
)
from probnets.experiments.air import ESTIMATORS, make_elbo
from probnets.train import BatchSampler, SVIObjective, TrainConfig, Trainer

SMALL = dict(
    image_size=16,
    num_steps=3,
    window_size=8,
    z_what_size=3,
    rnn_hidden_size=8,
    encoder_hidden=8,
    decoder_hidden=8,
    predict_hidden=8,
)


def small_air(**kwargs):
    pyro.clear_param_store()
    return AIR(**dict(SMALL, **kwargs))


def images(n=6, size=16, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n, size, size, generator=generator) * 0.8).to(dtype)


def traces(air, x, condition=None):
    guide = air.guide if condition is None else poutine.condition(air.guide, data=condition)
    guide_trace = poutine.trace(guide).get_trace(x)
    for name in condition or {}:
        # conditioned = forced draw here: replay it into the model as a sample
        guide_trace.nodes[name]["is_observed"] = False
    model_trace = poutine.trace(poutine.replay(air.model, trace=guide_trace)).get_trace(x)
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()
    return guide_trace, model_trace


def test_masking_no_log_prob_after_an_absent_object():
    pyro.set_rng_seed(0)
    air = small_air(z_pres_prior=0.5)
    x = images(4)
    first = torch.tensor([1.0, 0.0, 1.0, 0.0])
    guide_trace, model_trace = traces(air, x, {"z_pres_0": first})
    prev = first
    for t in range(3):
        z_pres = guide_trace.nodes[f"z_pres_{t}"]["value"]
        # once off, always off
        assert torch.all(z_pres <= prev)
        if t > 0:
            # a deterministic 0 after a 0 contributes no log-probability in model or guide
            for trace in (guide_trace, model_trace):
                assert torch.all(trace.nodes[f"z_pres_{t}"]["log_prob"][prev == 0] == 0)
        for trace in (guide_trace, model_trace):
            for site in (f"z_where_{t}", f"z_what_{t}"):
                log_prob = trace.nodes[site]["log_prob"]
                assert torch.all(log_prob[z_pres == 0] == 0), (site, t)
                assert torch.all(log_prob[z_pres == 1] != 0), (site, t)
        prev = z_pres
    assert torch.equal(guide_trace.nodes["z_pres_1"]["value"][[1, 3]], torch.zeros(2))


def test_relaxed_presence_weights_the_object_terms():
    pyro.set_rng_seed(0)
    air = small_air()
    x = images(3)
    soft = torch.tensor([0.25, 0.0, 1.0])
    # a relaxed value is off the Bernoulli's support: what the relaxing estimators feed in
    with pyro.validation_enabled(False):
        guide_trace = poutine.trace(
            poutine.condition(air.guide, data={"z_pres_0": soft})
        ).get_trace(x)
        guide_trace.compute_log_prob()
    site = guide_trace.nodes["z_what_0"]
    raw = site["fn"].log_prob(site["value"])
    assert torch.allclose(site["log_prob"], raw * soft)


def test_shapes_of_infer_reconstruct_and_prior():
    pyro.set_rng_seed(0)
    air = small_air()
    x = images(5)
    out = air.infer(x)
    assert out.counts.shape == (5,) and out.counts.dtype == torch.int64
    assert out.z_pres.shape == out.z_pres_probs.shape == (5, 3)
    assert out.z_where.shape == (5, 3, 3) and out.z_what.shape == (5, 3, 3)
    assert out.boxes.shape == (5, 3, 4)
    assert torch.equal(out.counts, out.z_pres.sum(1).long())
    # MAP presence: thresholded step by step, monotone
    assert torch.all(out.z_pres[:, 1:] <= out.z_pres[:, :-1])
    assert torch.equal(out.z_pres[:, 0], (out.z_pres_probs[:, 0] > 0.5).float())
    assert air.reconstruct(x).shape == (5, 16, 16)
    scenes, z_pres = air.sample_prior(7)
    assert scenes.shape == (7, 16, 16) and z_pres.shape == (7, 3)


def test_infer_is_deterministic():
    air = small_air()
    x = images(4)
    pyro.set_rng_seed(1)
    a = air.infer(x)
    pyro.set_rng_seed(2)
    b = air.infer(x)
    assert torch.equal(a.z_where, b.z_where) and torch.equal(a.counts, b.counts)


def test_geometric_count_prior():
    k, steps = 0.2, 3
    rho = geometric_presence_probs(k, steps)
    prob_count = []
    survive = 1.0
    for n in range(steps + 1):
        stop = 1 - rho[n] if n < steps else 1.0
        prob_count.append(survive * stop)
        survive *= rho[n] if n < steps else 0.0
    expected = torch.tensor([k**n for n in range(steps + 1)])
    assert torch.allclose(torch.tensor(prob_count), expected / expected.sum())
    with pytest.raises(ValueError, match="z_pres_prior must be a positive number"):
        geometric_presence_probs(0.0, 3)


def test_count_accuracy_and_confusion():
    pred, true = torch.tensor([0, 1, 2, 2, 3]), torch.tensor([0, 1, 1, 2, 2])
    assert count_accuracy(pred, true) == pytest.approx(0.6)
    matrix = count_confusion(pred, true, num_true=3, num_pred=4)
    assert matrix.tolist() == [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    with pytest.raises(ValueError, match="1-d of equal length"):
        count_accuracy(pred, true[:3])


def test_baseline_is_used_gets_gradients_and_changes():
    pyro.set_rng_seed(0)
    air = small_air()
    x = images(8)
    names = [n for n, _ in air.named_parameters() if "baseline" in n]
    assert names
    before = {n: p.detach().clone() for n, p in air.named_parameters()}
    trainer = Trainer(
        SVIObjective(air.model, air.guide, make_elbo("score")),
        BatchSampler(x, batch_size=8, seed=0),
        TrainConfig(steps=3, lr=1e-2, param_groups={"*baseline*": {"lr": 1e-1}}, progress=False),
    )
    trainer.run()
    after = dict(air.named_parameters())
    for name in names:
        assert not torch.equal(before[name], after[name]), name
    # the baseline's own learning rate group was used
    assert any(rule == "*baseline*" for rule in trainer.last_grad_norms)


def test_estimator_reads_the_baseline_value():
    air = small_air()
    x = images(8)
    elbo = make_elbo("score")

    def predict_grads():
        pyro.set_rng_seed(3)
        elbo.loss_and_grads(air.model, air.guide, x)
        grads = [p.grad.clone() for p in air.predict.parameters()]
        air.zero_grad()
        return grads

    first = predict_grads()
    with torch.no_grad():
        air.baseline_predict[-1].bias.add_(1000.0)
    shifted = predict_grads()
    assert any(not torch.allclose(a, b) for a, b in zip(first, shifted))


@pytest.mark.parametrize(
    "estimator",
    [pytest.param(e, marks=pytest.mark.slow) if e in ("rebar", "relax") else e for e in ESTIMATORS],
)
def test_every_estimator_trains_z_pres(estimator):
    pyro.set_rng_seed(0)
    air = small_air(use_baseline=estimator in ("score", "tracegraph"))
    elbo = make_elbo(estimator)
    loss = elbo.loss_and_grads(air.model, air.guide, images(6))
    assert math.isfinite(loss)
    # the presence head gets a gradient
    assert air.predict[-1].weight.grad[0].abs().sum() > 0


def test_float64_end_to_end(tmp_path):
    pyro.set_rng_seed(0)
    air = small_air(dair=True).double()
    x = images(6, dtype=torch.float64)
    trainer = Trainer(
        SVIObjective(air.model, air.guide, make_elbo("score")),
        BatchSampler(x, batch_size=6, seed=0),
        TrainConfig(
            steps=2,
            lr=1e-3,
            out_dir=str(tmp_path),
            checkpoint_extra={"config": air.config()},
            progress=False,
        ),
    )
    result = trainer.run()
    assert math.isfinite(result.history[-1]["loss"])
    assert all(p.dtype == torch.float64 for p in air.parameters())
    out = air.infer(x)
    for value in (out.z_pres, out.z_pres_probs, out.z_where, out.z_what, out.boxes):
        assert value.dtype == torch.float64
    assert air.reconstruct(x).dtype == torch.float64
    model_canvas = poutine.trace(air.model).get_trace(x).nodes["_RETURN"]["value"]
    assert model_canvas.dtype == torch.float64
    loaded = AIR.load(result.checkpoint)
    assert loaded.config() == air.config()
    assert next(loaded.parameters()).dtype == torch.float64
    got = loaded.infer(x)
    assert torch.equal(got.counts, out.counts) and torch.equal(got.z_where, out.z_where)


def test_load_rejects_a_checkpoint_without_air_config(tmp_path):
    torch.save({"format": 1, "extra": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="holds no AIR configuration"):
        AIR.load(tmp_path / "other.pt")


def test_dair_guide_reads_the_decoder():
    def guide_params(air):
        trace = poutine.trace(air.guide, param_only=True).get_trace(images(3))
        return set(trace.nodes)

    assert not any(name.startswith("decoder") for name in guide_params(small_air()))
    assert any(name.startswith("decoder") for name in guide_params(small_air(dair=True)))


@pytest.mark.parametrize("method", ["model", "guide", "infer"])
def test_bad_images_are_rejected(method):
    air = small_air()
    call = getattr(air, method)
    with pytest.raises(ValueError, match=r"images must be 16x16 images, got \(20, 20\)"):
        call(torch.rand(2, 20, 20))
    with pytest.raises(ValueError, match=r"images must have values in \[0, 1\]"):
        call(torch.rand(2, 16, 16) + 1)
    x = torch.rand(2, 16, 16)
    x[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="images contains NaN"):
        call(x)
    with pytest.raises(TypeError, match="floating-point tensor"):
        call(torch.zeros(2, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W\)"):
        call(torch.rand(16, 16))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="rnn_hidden_size must be a positive integer"):
        AIR(rnn_hidden_size=0)
    with pytest.raises(ValueError, match="likelihood_sd must be a positive number"):
        AIR(likelihood_sd=-1)
    with pytest.raises(ValueError, match="z_pres_prior must be a positive number"):
        AIR(z_pres_prior=0)
