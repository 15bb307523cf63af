"""A diverging run: invalid distribution parameters are bad steps, the run stops with the last
good parameters on disk and resumes from them; evaluations never cost a checkpoint; a loss that
explodes without becoming NaN is reported."""

import csv
import math

import pyro
import pyro.distributions as dist
import pyro.infer
import pytest
import torch
from torch import nn

from probnets.train import (
    BatchSampler,
    Callback,
    Evaluation,
    LossObjective,
    NonFiniteLossError,
    SVIObjective,
    TrainConfig,
    Trainer,
    load_checkpoint,
)
from probnets.train.guard import LossExplosion, invalid_parameter

DATA = torch.tensor([1.0, -1.0, 1.0, -1.0])


def scale_model(x):
    # The maximum-likelihood scale is 1 (w = 0). From w = 2 one SGD step of lr 10 jumps to
    # w < -1: a negative scale, which Pyro's argument validation refuses at the next step.
    w = pyro.param("w", torch.tensor(2.0))
    with pyro.plate("data", len(x)):
        pyro.sample("obs", dist.Normal(0.0, 1.0 + w), obs=x)


def no_guide(x):
    pass


def scale_trainer(lr, steps, out_dir, resume=False, **settings):
    return Trainer(
        SVIObjective(scale_model, no_guide, pyro.infer.Trace_ELBO()),
        iter(lambda: (DATA,), None),
        TrainConfig(
            steps=steps,
            lr=lr,
            optimizer="sgd",
            out_dir=str(out_dir),
            resume=resume,
            progress=False,
            **settings,
        ),
    )


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_invalid_distribution_parameters_are_bad_steps_and_the_run_resumes(tmp_path):
    pyro.clear_param_store()
    with pytest.raises(NonFiniteLossError) as stopped:
        scale_trainer(10.0, 20, tmp_path, max_bad_steps=3, checkpoint_every=1).run()
    message = str(stopped.value)
    assert "\n" not in message
    assert "Normal.scale outside GreaterThan(lower_bound=0.0)" in message
    assert "model:obs (parameter scale)" in message and "test_divergence.py" in message
    assert stopped.value.sites == ["model:obs (parameter scale)"]
    assert stopped.value.checkpoint == str(tmp_path / "last.pt")
    # One good step (its update is the one that diverged), then three bad ones; the
    # checkpoint holds the parameters the good step started from.
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 4 and state["bad_steps"] == 3
    assert state["params"]["w"].item() == 2.0
    rows = read_csv(tmp_path / "bad_steps.csv")
    assert [r["step"] for r in rows] == ["2", "3", "4"]
    assert all("invalid distribution parameter Normal.scale" in r["reason"] for r in rows)
    assert all(r["sites"] == "model:obs (parameter scale)" for r in rows)
    assert [int(r["step"]) for r in read_csv(tmp_path / "metrics.csv")] == [1, 2, 3, 4]

    # A sane learning rate continues from there and finishes.
    pyro.clear_param_store()
    result = scale_trainer(0.05, 40, tmp_path, resume=True, max_bad_steps=3).run()
    assert result.step == 40 and result.bad_steps == 3
    assert pyro.param("w").item() == pytest.approx(0.0, abs=0.05)
    assert [int(r["step"]) for r in read_csv(tmp_path / "metrics.csv")] == list(range(1, 41))
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 40


class StartingValues(Callback):
    """Record the parameter ``w`` each step starts from (after the previous update)."""

    def __init__(self):
        self.starts = [2.0]

    def on_train_step_end(self, trainer):
        self.starts.append(pyro.param("w").item())


@pytest.mark.parametrize("rollback_every", [1, 3, 10])
def test_a_diverged_run_rolls_back_to_its_last_copy(tmp_path, rollback_every):
    # Seven small steps towards w = 0, then a learning rate 400 times larger: that update
    # jumps to a negative scale, so steps 9 to 11 are bad. The copies are taken at good steps
    # 1, 1 + k, 1 + 2k, ...; the run rolls back to the last of them up to step 8.
    pyro.clear_param_store()
    starts = StartingValues()
    trainer = Trainer(
        SVIObjective(scale_model, no_guide, pyro.infer.Trace_ELBO()),
        iter(lambda: (DATA,), None),
        TrainConfig(
            steps=20,
            lr=0.025,
            optimizer="sgd",
            lr_schedule=lambda step: 1.0 if step < 7 else 400.0,
            out_dir=str(tmp_path),
            progress=False,
            max_bad_steps=3,
            rollback_every=rollback_every,
        ),
        callbacks=[starts],
    )
    with pytest.raises(NonFiniteLossError) as stopped:
        trainer.run()
    copied = max(s for s in range(1, 9) if (s - 1) % rollback_every == 0)
    assert f"holds the parameters good step {copied} started from" in str(stopped.value)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 11 and state["bad_steps"] == 3
    assert state["params"]["w"].item() == starts.starts[copied - 1]
    assert len(set(starts.starts[:9])) == 9  # every good step moved w


def test_rollback_every_must_be_a_positive_integer():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="rollback_every must be a positive integer"):
            TrainConfig(steps=1, rollback_every=bad)


def test_a_run_that_never_had_a_good_step_saves_its_initial_parameters(tmp_path):
    def model(x):
        w = pyro.param("w", torch.tensor(-3.0))
        pyro.sample("obs", dist.Normal(0.0, 1.0 + w).expand([len(x)]).to_event(1), obs=x)

    pyro.clear_param_store()
    trainer = Trainer(
        SVIObjective(model, no_guide, pyro.infer.Trace_ELBO()),
        iter(lambda: (DATA,), None),
        TrainConfig(steps=5, max_bad_steps=2, out_dir=str(tmp_path), progress=False),
    )
    with pytest.raises(NonFiniteLossError, match="holds the initial parameters"):
        trainer.run()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2


def test_programming_errors_are_not_bad_steps(tmp_path):
    def shape_error(x):
        pyro.param("w", torch.zeros(3))
        torch.zeros(2) + torch.zeros(3)

    def type_error(x):
        pyro.param("w", torch.zeros(3))
        dist.Normal("zero", 1.0)

    for model, raised in ((shape_error, RuntimeError), (type_error, (TypeError, ValueError))):
        pyro.clear_param_store()
        trainer = Trainer(
            SVIObjective(model, no_guide, pyro.infer.Trace_ELBO()),
            iter(lambda: (DATA,), None),
            TrainConfig(steps=3, out_dir=str(tmp_path / model.__name__), progress=False),
        )
        with pytest.raises(raised) as error:
            trainer.run()
        assert not isinstance(error.value, NonFiniteLossError)
        assert trainer.bad_steps == 0


def test_invalid_parameter_recognises_only_validation_errors():
    with pytest.raises(ValueError) as caught:
        dist.Normal(torch.zeros(2), -torch.ones(2))
    assert invalid_parameter(caught.value) == "Normal.scale outside GreaterThan(lower_bound=0.0)"
    wrapped = ValueError("Expected ...\nTrace Shapes: ...")
    wrapped.__cause__ = caught.value
    assert invalid_parameter(wrapped) is not None
    assert invalid_parameter(ValueError("Shape mismatch inside plate('data')")) is None
    assert invalid_parameter(TypeError("Expected parameter x")) is None


def test_diagnosis_does_not_change_the_random_draws(tmp_path):
    def noisy_model(x, poisoned):
        w = pyro.param("w", torch.tensor(0.0))
        noise = pyro.sample("noise", dist.Normal(0.0, 1.0))
        scale = torch.tensor(float("nan")) if poisoned else torch.tensor(1.0)
        pyro.sample("obs", dist.Normal(w + noise, scale, validate_args=False), obs=x)

    def noise_guide(x, poisoned):
        pyro.sample("noise", dist.Normal(0.0, 2.0))

    def draws(poison):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        batches = iter([(torch.tensor(0.5), step in poison) for step in range(4)])
        trainer = Trainer(
            SVIObjective(noisy_model, noise_guide, pyro.infer.Trace_ELBO()),
            batches,
            TrainConfig(steps=4, progress=False),
        )
        with pytest.warns(UserWarning) if poison else _nothing():
            trainer.run()
        return torch.rand(3)

    assert torch.equal(draws(set()), draws({1}))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def quadratic_model():
    w = pyro.param("w", torch.zeros(2))
    pyro.factor("f", -(w - 1.0).pow(2).sum())


def test_the_checkpoint_is_written_before_the_evaluation_of_its_step(tmp_path):
    class Failure(Exception):
        pass

    def evaluate(trainer):
        assert load_checkpoint(tmp_path / "last.pt")["step"] == trainer.step
        if trainer.step == 2:
            raise Failure
        return {"score": 1.0}

    pyro.clear_param_store()
    trainer = Trainer(
        SVIObjective(quadratic_model, lambda: None, pyro.infer.Trace_ELBO()),
        iter(lambda: (), None),
        TrainConfig(steps=4, lr=0.1, out_dir=str(tmp_path), checkpoint_every=1, progress=False),
        callbacks=[Evaluation(evaluate, every=1)],
    )
    with pytest.raises(Failure):
        trainer.run()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2


def test_evaluation_does_not_consume_the_training_random_numbers():
    def noisy_model():
        w = pyro.param("w", torch.zeros(()))
        pyro.factor("f", -((w - pyro.sample("z", dist.Normal(0.0, 1.0))) ** 2))

    def trained(callbacks):
        pyro.clear_param_store()
        pyro.set_rng_seed(1)
        Trainer(
            SVIObjective(
                noisy_model,
                lambda: pyro.sample("z", dist.Normal(0.0, 2.0)),
                pyro.infer.Trace_ELBO(),
            ),
            iter(lambda: (), None),
            TrainConfig(steps=5, lr=0.1, progress=False),
            callbacks=callbacks,
        ).run()
        return pyro.param("w").item()

    drawing = Evaluation(lambda t: {"draw": torch.randn(()).item()}, every=1)
    assert trained([drawing]) == trained([])


def test_an_evaluation_of_invalid_parameters_is_skipped_with_one_warning():
    def failing(trainer):
        dist.Normal(0.0, -torch.ones(()))

    pyro.clear_param_store()
    trainer = Trainer(
        SVIObjective(quadratic_model, lambda: None, pyro.infer.Trace_ELBO()),
        iter(lambda: (), None),
        TrainConfig(steps=3, lr=0.1, progress=False),
        callbacks=[Evaluation(failing, every=1)],
    )
    with pytest.warns(RuntimeWarning, match="evaluation at step 1 skipped") as record:
        result = trainer.run()
    assert len([w for w in record if "skipped" in str(w.message)]) == 1
    assert result.step == 3 and result.eval_history == []


def exploding_trainer(lr, steps=40):
    # |w - 1|^2 under SGD: each step multiplies w - 1 by (1 - 2 lr); lr = 2 triples it, so
    # the loss grows ninefold per step and stays finite in float64 over these steps.
    torch.manual_seed(0)
    module = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        module.weight.fill_(0.0)
    return Trainer(
        LossObjective(lambda x: (module.weight - 1.0).pow(2).sum(), module),
        BatchSampler(torch.zeros(4, 1, dtype=torch.float64), batch_size=2),
        TrainConfig(steps=steps, lr=lr, optimizer="sgd", progress=False),
    )


def test_an_exploding_loss_is_reported_once():
    with pytest.warns(RuntimeWarning, match="the loss exploded") as record:
        result = exploding_trainer(2.0).run()
    assert all(math.isfinite(row["loss"]) for row in result.history)
    assert result.bad_steps == 0
    assert len([w for w in record if "exploded" in str(w.message)]) == 1
    assert len(result.warnings) == 1 and "learning rate" in result.warnings[0]


def test_a_converging_or_noisy_run_is_not_reported(recwarn):
    assert exploding_trainer(0.1).run().warnings == []
    monitor = LossExplosion()
    generator = torch.Generator().manual_seed(0)
    for step in range(1, 2001):
        # a noisy decreasing loss with rare spikes a hundred times its level
        loss = 100.0 / step**0.5 * (1 + 0.5 * torch.rand((), generator=generator).item())
        loss *= 100.0 if step % 97 == 0 else 1.0
        assert monitor.observe(step, loss) is None
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_the_explosion_monitor_is_resumed_with_the_run():
    monitor = LossExplosion()
    for step in range(1, 13):
        monitor.observe(step, 10.0)
    restored = LossExplosion()
    restored.load_state_dict(monitor.state_dict())
    assert restored.observe(13, 1e7) is None  # one extreme step: the median holds
    assert restored.observe(14, 1e7) is None
    assert "exploded: at step 15" in restored.observe(15, 1e7)
    assert restored.observe(16, 1e7) is None  # reported once


def test_a_loss_thrown_up_by_the_first_update_is_an_explosion():
    # the loss slowly decreases after jumping from 100 to 1e10: still an explosion
    monitor = LossExplosion()
    losses = [100.0] + [1e10 * 0.99**step for step in range(1, 10)]
    warnings = [monitor.observe(step, loss) for step, loss in enumerate(losses, 1)]
    assert [step for step, warning in enumerate(warnings, 1) if warning] == [5]
    assert "magnitude of 100 " in warnings[4]


def test_a_callback_sees_the_saved_checkpoint_in_on_step_end(tmp_path):
    seen = []

    class Seen(Callback):
        def on_step_end(self, trainer):
            seen.append(load_checkpoint(tmp_path / "last.pt")["step"])

    pyro.clear_param_store()
    Trainer(
        SVIObjective(quadratic_model, lambda: None, pyro.infer.Trace_ELBO()),
        iter(lambda: (), None),
        TrainConfig(steps=3, lr=0.1, out_dir=str(tmp_path), checkpoint_every=1, progress=False),
        callbacks=[Seen()],
    ).run()
    assert seen == [1, 2, 3]
