"""Optimizers by torch name or class and from pyro.optim; torch lr schedulers, resumed exactly."""

import functools

import pyro
import pyro.optim
import pytest
import torch
from pyro.optim.clipped_adam import ClippedAdam
from torch import nn

from probnets.train import LossObjective, TrainConfig, Trainer
from probnets.train.checkpoint import load_checkpoint
from probnets.train.optimizers import resolve_optimizer


def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, generator=g)
    return x, x @ torch.tensor([[2.0], [-1.0]])


def run(steps=12, out_dir=None, resume=False, seed=0, **settings):
    torch.manual_seed(seed)
    net = nn.Linear(2, 1)
    settings.setdefault("lr", 0.05)
    config = TrainConfig(
        steps=steps,
        progress=False,
        loggers=(),
        out_dir=out_dir,
        resume=resume,
        batch_size=8,
        data_seed=0,
        **settings,
    )
    trainer = Trainer(LossObjective(lambda a, b: ((net(a) - b) ** 2).mean(), net), data(), config)
    result = trainer.run()
    return net, trainer, result


@pytest.mark.parametrize(
    "name, cls",
    [("rmsprop", torch.optim.RMSprop), ("RAdam", torch.optim.RAdam), ("adamw", torch.optim.AdamW)],
)
def test_any_torch_optimizer_by_name_or_class(name, cls):
    _, trainer, result = run(steps=30, optimizer=name)
    assert type(trainer.optimizer) is cls
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
    _, trainer, _ = run(steps=1, optimizer=cls)
    assert type(trainer.optimizer) is cls


def test_a_pyro_optimizer_is_its_torch_class_and_arguments():
    optimizer = pyro.optim.ClippedAdam({"lr": 0.02, "betas": (0.8, 0.99), "lrd": 0.999})
    config = TrainConfig(steps=1, optimizer=optimizer)
    assert config.lr == 0.02 and config.optimizer_class is ClippedAdam
    _, trainer, _ = run(steps=3, optimizer=optimizer, lr=None)
    group = trainer.optimizer.param_groups[0]
    assert type(trainer.optimizer) is ClippedAdam
    assert group["betas"] == (0.8, 0.99) and group["lrd"] == 0.999
    assert "pyro.optim(pyro.optim.clipped_adam.ClippedAdam" in config.to_dict()["optimizer"]
    clipped = TrainConfig(steps=1, optimizer=pyro.optim.Adam({"lr": 0.1}, {"clip_norm": 2.0}))
    assert clipped.clip_norm == 2.0 and clipped.lr == 0.1


def test_a_pyro_optimizer_matches_svi_with_it():
    # One optimizer over one parameter: the Trainer's step is Pyro's step.
    def model():
        loc = pyro.param("loc", torch.tensor(0.0))
        pyro.factor("f", -((loc - 3.0) ** 2))

    def guide():
        pass

    pyro.clear_param_store()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.1}), pyro.infer.Trace_ELBO())
    for _ in range(5):
        svi.step()
    expected = pyro.param("loc").item()
    pyro.clear_param_store()
    from probnets.train import SVIObjective

    Trainer(
        SVIObjective(model, guide, pyro.infer.Trace_ELBO()),
        [()],
        TrainConfig(
            steps=5,
            optimizer=pyro.optim.Adam({"lr": 0.1}),
            progress=False,
            loggers=(),
            optim_args={"fused": False},
        ),
    ).run()
    assert pyro.param("loc").item() == pytest.approx(expected, abs=1e-6)


def test_unsupported_pyro_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="per-parameter arguments"):
        TrainConfig(steps=1, optimizer=pyro.optim.Adam(lambda module, name: {"lr": 0.1}))
    with pytest.raises(ValueError, match="clip_args"):
        TrainConfig(steps=1, optimizer=pyro.optim.Adam({"lr": 0.1}, {"clip_value": 1.0}))
    with pytest.raises(ValueError, match="disagree"):
        TrainConfig(steps=1, lr=0.5, optimizer=pyro.optim.Adam({"lr": 0.1}))
    with pytest.raises(ValueError, match="LBFGS"):
        TrainConfig(steps=1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="the name of a torch.optim optimizer"):
        resolve_optimizer(object())


STEP_LR = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=4, gamma=0.5)


def test_a_torch_scheduler_is_stepped_once_per_step():
    _, trainer, result = run(steps=12, lr_scheduler=STEP_LR)
    rates = [row["lr"] for row in result.history]
    # The row of step s logs the rate step s ran with.
    assert rates == pytest.approx([0.05] * 4 + [0.025] * 4 + [0.0125] * 4)
    assert trainer.groups.scheduler.last_epoch == 12


@pytest.mark.parametrize(
    "scheduler",
    [
        STEP_LR,
        lambda optimizer: torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=0.1, total_steps=12
        ),
        lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=5),
    ],
    ids=["StepLR", "OneCycleLR", "CosineAnnealingWarmRestarts"],
)
def test_a_torch_scheduler_resumes_exactly(tmp_path, scheduler):
    uninterrupted, _, full = run(steps=12, lr_scheduler=scheduler)
    run(steps=7, out_dir=tmp_path, lr_scheduler=scheduler)
    assert load_checkpoint(tmp_path / "last.pt")["lr_scheduler"]["scheduler"]["last_epoch"] == 7
    resumed, _, rest = run(steps=12, out_dir=tmp_path, resume=True, seed=5, lr_scheduler=scheduler)
    assert torch.equal(uninterrupted.weight, resumed.weight)
    # a resumed run first logs the checkpoint's own row (step 7) again
    assert [r["lr"] for r in rest.history] == [r["lr"] for r in full.history[6:]]


def test_a_pyro_scheduler_brings_its_optimizer_and_scheduler():
    optimizer = pyro.optim.StepLR(
        {"optimizer": torch.optim.SGD, "optim_args": {"lr": 0.1}, "step_size": 2, "gamma": 0.1}
    )
    _, trainer, result = run(steps=4, optimizer=optimizer, lr=None)
    assert type(trainer.optimizer) is torch.optim.SGD
    assert [row["lr"] for row in result.history] == pytest.approx([0.1, 0.1, 0.01, 0.01])


def test_scheduler_settings_are_checked():
    with pytest.raises(ValueError, match="both set the learning rate"):
        TrainConfig(steps=1, lr_schedule=lambda step: 1.0, lr_scheduler=STEP_LR)
    with pytest.raises(TypeError, match="lr_scheduler must be a callable"):
        TrainConfig(steps=1, lr_scheduler=3)
    plateau = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau)
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        run(steps=1, lr_scheduler=plateau)


def test_the_logged_config_names_the_scheduler_and_the_pyro_optimizer():
    config = TrainConfig(steps=2, lr_scheduler=STEP_LR)
    assert config.to_dict()["lr_scheduler"] == (
        "torch.optim.lr_scheduler.StepLR(step_size=4, gamma=0.5)"
    )
    pyro_scheduler = pyro.optim.StepLR(
        {"optimizer": torch.optim.SGD, "optim_args": {"lr": 0.1}, "step_size": 2, "gamma": 0.1}
    )
    assert TrainConfig(steps=2, optimizer=pyro_scheduler).to_dict()["optimizer"] == (
        "pyro.optim(torch.optim.sgd.SGD, {'lr': 0.1}, "
        "scheduler=torch.optim.lr_scheduler.StepLR{'step_size': 2, 'gamma': 0.1})"
    )


def test_a_skipped_step_still_advances_the_torch_scheduler():
    torch.manual_seed(0)
    net = nn.Linear(2, 1)
    calls = []

    def loss(a, b):
        calls.append(None)
        value = ((net(a) - b) ** 2).mean()
        return value * float("nan") if len(calls) == 3 else value

    scheduler = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    config = TrainConfig(steps=5, lr=0.08, lr_scheduler=scheduler, progress=False, loggers=())
    trainer = Trainer(LossObjective(loss, net), data(), config)
    result = trainer.run()
    good = [row["lr"] for row in result.history if row["step"] != 3]
    assert trainer.bad_steps == 1
    assert good == pytest.approx([0.08, 0.04, 0.01, 0.005])  # as lr_schedule: steps count
