import copy
import csv
import math
import os

import pyro
import pyro.distributions as dist
import pyro.infer
import pytest
import torch
from pyro.nn import PyroModule, PyroParam, pyro_method
from torch import nn
from torch.distributions import constraints

from probnets import checkpoint as checkpoint_module
from probnets.nn import LayerNormLSTM
from probnets.train import (
    Anneal,
    BatchSampler,
    Exponential,
    LossObjective,
    NonFiniteLossError,
    StepMetrics,
    SVIObjective,
    TrainConfig,
    Trainer,
    load_checkpoint,
    save_checkpoint,
)


class MixedLatents(PyroModule):
    """A small model with a continuous latent, a Bernoulli latent (score function with a
    learned baseline registered lazily inside the guide) and a constrained parameter."""

    def __init__(self, dim=3):
        super().__init__()
        self.decoder = nn.Linear(2, dim)
        self.encoder = nn.Linear(dim, 3)
        self.noise = PyroParam(torch.tensor(0.5), constraint=constraints.positive)
        self.baseline_net = nn.Sequential(nn.Linear(dim, 1), nn.Flatten(0))
        self.temperature = 1.0

    @pyro_method
    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            b = pyro.sample("b", dist.Bernoulli(x.new_tensor(0.3)))
            loc = self.decoder(torch.stack([z, b], -1))
            pyro.sample("x", dist.Normal(loc, self.noise).to_event(1), obs=x)

    @pyro_method
    def guide(self, x):
        out = self.encoder(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(out[:, 0], out[:, 1].exp() * self.temperature))
            pyro.sample(
                "b",
                dist.Bernoulli(logits=out[:, 2]),
                infer={"baseline": {"nn_baseline": self.baseline_net, "nn_baseline_input": x}},
            )


def data(n=64):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, generator=g) + torch.tensor([1.0, -1.0, 0.5])


def make(tmp_path, steps, seed=0, callbacks=(), **kwargs):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    m = MixedLatents()
    kwargs.setdefault("param_groups", {"*baseline*": {"lr": 0.05}})
    trainer = Trainer(
        SVIObjective(m.model, m.guide, pyro.infer.TraceGraph_ELBO()),
        BatchSampler(data(), batch_size=16, seed=seed),
        TrainConfig(steps=steps, lr=0.01, out_dir=str(tmp_path), progress=False, **kwargs),
        callbacks=callbacks,
    )
    return m, trainer


def final_params(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_resume_equals_uninterrupted_run(tmp_path):
    m_ref, t_ref = make(tmp_path / "ref", 30, checkpoint_every=10)
    t_ref.run()
    expected = final_params(m_ref)

    class Crash(Exception):
        pass

    def crash_at_25(trainer):
        if trainer.step == 25:
            raise Crash
        return {}

    # The first run dies at step 25, after its step-20 checkpoint and 5 more metric rows.
    _, t1 = make(tmp_path / "run", 30, checkpoint_every=10, callbacks=[StepMetrics(crash_at_25)])
    with pytest.raises(Crash):
        t1.run()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 20
    m2, t2 = make(tmp_path / "run", 30, checkpoint_every=10, resume=True, seed=123)
    t2.run()
    resumed = final_params(m2)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    # The metrics file reads as if the run had never stopped.
    with open(tmp_path / "run" / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == list(range(1, 31))


def test_checkpoint_holds_everything_and_loads_weights_only(tmp_path):
    m, trainer = make(tmp_path, 3)
    trainer.run()
    state = load_checkpoint(tmp_path / "last.pt")  # weights_only=True inside
    assert state["step"] == 3
    assert {"params", "constraints", "modules", "optimizer", "rng", "data"} <= set(state)
    assert state["constraints"]["noise"] == ("positive",)
    assert any("baseline" in name for name in state["optimizer"])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"format": 1, "step": 1})
    real_save = torch.save

    def dying_save(obj, f):
        f.write(b"partial garbage")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(checkpoint_module.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"format": 1, "step": 2})
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def test_param_groups_get_their_own_learning_rate():
    pyro.clear_param_store()
    w = torch.zeros(2)

    def model():
        pyro.factor("f", (pyro.param("w", w.clone()) * torch.tensor([1.0, 2.0])).sum())
        pyro.factor("g", pyro.param("cv.eta", torch.zeros(())) * 3.0)

    def guide():
        pass

    trainer = Trainer(
        SVIObjective(model, guide, pyro.infer.Trace_ELBO()),
        iter(lambda: (), None),
        TrainConfig(
            steps=1, lr=0.1, optimizer="sgd", param_groups={"cv.*": {"lr": 1.0}}, progress=False
        ),
    )
    trainer.run()
    # loss = -factor, so SGD moves each parameter by +lr * d(factor)/d(param).
    assert torch.allclose(pyro.param("w").detach(), torch.tensor([0.1, 0.2]))
    assert torch.allclose(pyro.param("cv.eta").detach(), torch.tensor(3.0))


def test_gradient_clipping_per_group():
    pyro.clear_param_store()

    def model():
        pyro.factor("f", pyro.param("w", torch.zeros(2)) @ torch.tensor([30.0, 40.0]))

    trainer = Trainer(
        SVIObjective(model, lambda: None, pyro.infer.Trace_ELBO()),
        iter(lambda: (), None),
        TrainConfig(steps=1, lr=1.0, optimizer="sgd", clip_norm=5.0, progress=False),
    )
    trainer.run()
    assert torch.allclose(pyro.param("w").detach(), torch.tensor([3.0, 4.0]))
    assert trainer.last_grad_norms["default"] == pytest.approx(50.0)


def test_nan_guard_skips_counts_and_stops_naming_the_site(tmp_path):
    def model(x, poisoned):
        loc = pyro.param("loc", torch.zeros(()))
        scale = torch.tensor(float("nan")) if poisoned else torch.tensor(1.0)
        pyro.sample(
            "obs", dist.Normal(loc, scale, validate_args=False).expand([len(x)]).to_event(1), obs=x
        )

    def guide(x, poisoned):
        pass

    def batches(bad_steps, n):
        return iter([(torch.ones(4), s in bad_steps) for s in range(n)])

    pyro.clear_param_store()
    # Steps 2 and 3 are bad but the run recovers.
    trainer = Trainer(
        SVIObjective(model, guide, pyro.infer.Trace_ELBO()),
        batches({2, 3}, 6),
        TrainConfig(steps=6, lr=0.1, max_bad_steps=3, out_dir=str(tmp_path), progress=False),
    )
    with pytest.warns(UserWarning, match="NaN"):
        trainer.run()
    assert trainer.bad_steps == 2
    assert math.isfinite(pyro.param("loc").item())
    with open(tmp_path / "bad_steps.csv") as f:
        # numbered as metrics.csv numbers steps: the third and fourth batches
        assert [row["step"] for row in csv.DictReader(f)] == ["3", "4"]

    # Then 3 consecutive bad steps stop a run, naming the site.
    pyro.clear_param_store()
    trainer = Trainer(
        SVIObjective(model, guide, pyro.infer.Trace_ELBO()),
        batches(set(range(2, 20)), 20),
        TrainConfig(
            steps=20,
            lr=0.1,
            max_bad_steps=3,
            out_dir=str(tmp_path / "b"),
            checkpoint_every=1,
            progress=False,
            rollback_every=1,  # a copy at every good step: the last one is kept exactly
        ),
    )
    with (
        pytest.warns(UserWarning, match="NaN"),
        pytest.raises(NonFiniteLossError, match=r"3 consecutive.*model:obs"),
    ):
        trainer.run()
    # The stopped run's checkpoint holds the parameters the last good step (2) started
    # from, i.e. those after step 1's update, with the step count of the stop.
    stopped = load_checkpoint(tmp_path / "b" / "last.pt")
    assert stopped["step"] == 5 and stopped["bad_steps"] == 3
    one_step = Trainer(
        SVIObjective(model, guide, pyro.infer.Trace_ELBO()),
        batches(set(), 1),
        TrainConfig(steps=1, lr=0.1, progress=False),
    )
    pyro.clear_param_store()
    one_step.run()
    assert torch.equal(stopped["params"]["loc"], pyro.param("loc").detach())


def test_anneal_and_lr_schedule():
    pyro.clear_param_store()
    holder = type("Holder", (), {"temperature": 1.0})()
    seen = []

    def model():
        seen.append(holder.temperature)
        pyro.factor("f", pyro.param("w", torch.zeros(())))

    trainer = Trainer(
        SVIObjective(model, lambda: None, pyro.infer.Trace_ELBO()),
        iter(lambda: (), None),
        TrainConfig(
            steps=3,
            lr=1.0,
            optimizer="sgd",
            lr_schedule=lambda s: 0.5**s,
            schedules=[Anneal(holder, "temperature", Exponential(1.0, 0.01, 2))],
            progress=False,
        ),
    )
    trainer.run()
    assert seen == pytest.approx([1.0, 0.1, 0.01])
    assert pyro.param("w").item() == pytest.approx(1.0 + 0.5 + 0.25)
    with pytest.raises(ValueError, match="no such attribute"):
        Anneal(holder, "temprature", Exponential(1.0, 0.1, 2))


def test_deterministic_objective_and_float64():
    torch.manual_seed(0)
    net = nn.Linear(2, 1).double()
    x = torch.randn(32, 2, dtype=torch.float64)
    y = x @ torch.tensor([[2.0], [-1.0]], dtype=torch.float64)
    trainer = Trainer(
        LossObjective(lambda a, b: ((net(a) - b) ** 2).mean(), net),
        BatchSampler(x, y, batch_size=8),
        TrainConfig(steps=300, lr=0.05, progress=False),
    )
    trainer.run()
    assert net.weight.dtype == torch.float64
    assert torch.allclose(
        net.weight.detach(), torch.tensor([[2.0, -1.0]], dtype=torch.float64), atol=1e-2
    )


def test_weight_decay_is_adamw_on_the_weight_matrices_only():
    """Adam with ``weight_decay`` takes AdamW's steps on the matrices and Adam's on the
    vectors, at every group's scheduled learning rate."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 3), torch.randn(32, 2)
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    reference = copy.deepcopy(net)
    schedule = Exponential(1.0, 0.1, 6)

    def loss_of(module):
        return lambda a, b: ((module(a) - b) ** 2).mean()

    Trainer(
        LossObjective(loss_of(net), net),
        BatchSampler(x, y, batch_size=8, seed=0),
        TrainConfig(
            steps=6,
            lr=0.05,
            weight_decay=0.5,
            lr_schedule=schedule,
            param_groups={"2.*": {"lr": 0.02}},
            progress=False,
        ),
    ).run()

    def groups(module, lr):
        return [
            {
                "params": [p for p in module.parameters() if p.dim() >= 2],
                "lr": lr,
                "weight_decay": 0.5,
            },
            {
                "params": [p for p in module.parameters() if p.dim() < 2],
                "lr": lr,
                "weight_decay": 0.0,
            },
        ]

    # The reference: AdamW on the first layer and the norm, another on the last layer.
    first, last = nn.Sequential(reference[0], reference[1]), reference[2]
    optimizers = [torch.optim.AdamW(groups(first, 0.05)), torch.optim.AdamW(groups(last, 0.02))]
    for step, (a, b) in zip(range(6), BatchSampler(x, y, batch_size=8, seed=0)):
        for optimizer, base_lr in zip(optimizers, (0.05, 0.02)):
            for group in optimizer.param_groups:
                group["lr"] = base_lr * schedule(step)
        loss_of(reference)(a, b).backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
    for (name, trained), expected in zip(net.named_parameters(), reference.parameters()):
        assert torch.allclose(trained, expected, atol=1e-6), name


def test_weight_decay_leaves_the_matrices_a_module_exempts_alone():
    """The layer-norm LSTM's per-gate gains and shifts are (4, H) matrices, but gains: with a
    zero gradient, SGD steps only decay, and only the weight matrices shrink."""
    rnn = LayerNormLSTM(2, 3)
    with torch.no_grad():
        for p in rnn.parameters():
            p.uniform_(0.5, 1.0)
    before = {name: p.detach().clone() for name, p in rnn.named_parameters()}
    x = torch.randn(4, 5, 2)
    Trainer(
        LossObjective(lambda a: 0.0 * rnn(a)[0].sum(), rnn),
        BatchSampler(x, batch_size=4),
        TrainConfig(steps=1, lr=0.1, optimizer="sgd", weight_decay=0.5, progress=False),
    ).run()
    for name, p in rnn.named_parameters():
        factor = 0.95 if name.endswith(("weight_ih", "weight_hh")) else 1.0
        assert torch.allclose(p, factor * before[name]), name


def test_trainer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps must be"):
        TrainConfig(steps=-1)
    with pytest.raises(ValueError, match="lr must be"):
        TrainConfig(steps=1, lr=0)
    with pytest.raises(TypeError, match="loss_and_grads"):
        SVIObjective(lambda: None, lambda: None, object())
    with pytest.raises(ValueError, match="resume=True needs out_dir"):
        TrainConfig(steps=1, resume=True)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        TrainConfig(steps=1, weight_decay=-0.1)


def test_no_parameters_is_a_clear_error():
    pyro.clear_param_store()

    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    trainer = Trainer(
        SVIObjective(model, guide, pyro.infer.Trace_ELBO()),
        iter(lambda: (), None),
        TrainConfig(steps=1, progress=False),
    )
    with pytest.raises(RuntimeError, match="pyro_method"):
        trainer.run()


def test_batch_sampler_resumes_and_validates():
    x = torch.arange(10.0)
    a = BatchSampler(x, batch_size=3, seed=4)
    for _ in range(4):
        next(a)
    state = a.state_dict()
    expected = [next(a)[0] for _ in range(5)]
    b = BatchSampler(x, batch_size=3, seed=99)
    b.load_state_dict(state)
    assert all(torch.equal(e, next(b)[0]) for e in expected)
    # Each epoch visits distinct examples (3 full batches of 10, the remainder dropped).
    c = BatchSampler(x, batch_size=3, seed=0)
    epoch = torch.cat([next(c)[0] for _ in range(3)])
    assert len(set(epoch.tolist())) == 9
    with pytest.raises(ValueError, match="share their first dimension"):
        BatchSampler(torch.zeros(3), torch.zeros(4), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(torch.zeros(3), batch_size=5)


def test_bf16_autocast_trains_and_keeps_float32_parameters(tmp_path):
    from probnets.models.vae import VAE

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    images = torch.bernoulli(torch.full((64, 8, 8), 0.3))
    vae = VAE(image_size=8, latent_dim=2, hidden_dim=16)
    trainer = Trainer(
        SVIObjective(vae.model, vae.guide, pyro.infer.Trace_ELBO()),
        BatchSampler(images, batch_size=32),
        TrainConfig(steps=40, lr=1e-2, precision="bf16", progress=False),
    )
    result = trainer.run()
    assert trainer.bad_steps == 0
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert all(p.dtype == torch.float32 for p in vae.parameters())
