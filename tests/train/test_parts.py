"""The Trainer's parts seen from outside: loggers, callbacks, checkpoint retention, schedules
on resume, data loaders, configuration errors, and the fit interface models use."""

import ast
import csv
import json
import os
import pathlib
import subprocess
import sys

import pyro
import pyro.infer
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import probnets.train.fitting as default_fitting
from probnets.models.fitting import TrainerFactory, resolve_trainer
from probnets.models.gated import NeuronDAG
from probnets.train import (
    Anneal,
    BatchSampler,
    Callback,
    Checkpointer,
    Evaluation,
    Exponential,
    LossObjective,
    SVIObjective,
    TrainConfig,
    Trainer,
    load_checkpoint,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def quadratic_model():
    # loss = |w - 1|^2, a deterministic objective through an ELBO with no latent.
    w = pyro.param("w", torch.zeros(2))
    pyro.factor("f", -(w - 1.0).pow(2).sum())


def no_guide():
    pass


def empty_batches():
    return iter(lambda: (), None)


def quadratic_trainer(steps, callbacks=(), **settings):
    settings.setdefault("progress", False)
    return Trainer(
        SVIObjective(quadratic_model, no_guide, pyro.infer.Trace_ELBO()),
        empty_batches(),
        TrainConfig(steps=steps, lr=0.1, **settings),
        callbacks=callbacks,
    )


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


class RecordingLogger:
    def __init__(self):
        self.config, self.rows, self.closed = None, [], False

    def log_metrics(self, step, metrics):
        self.rows.append((step, dict(metrics)))

    def log_config(self, config):
        self.config = config

    def close(self):
        self.closed = True


def test_csv_by_default_user_loggers_and_no_tensorboard(tmp_path):
    pyro.clear_param_store()
    recorder = RecordingLogger()
    quadratic_trainer(
        4,
        callbacks=[Evaluation(lambda t: {"score": float(t.step)}, every=2)],
        out_dir=str(tmp_path),
        loggers=("csv", recorder),
    ).run()
    assert [int(r["step"]) for r in read_csv(tmp_path / "metrics.csv")] == [1, 2, 3, 4]
    assert read_csv(tmp_path / "eval.csv") == [
        {"step": "2", "score": "2.0"},
        {"step": "4", "score": "4.0"},
    ]
    assert sorted(os.listdir(tmp_path)) == [
        "eval.csv",
        "last.pt",
        "metrics.csv",
        "train_config.json",
    ]
    with open(tmp_path / "train_config.json") as f:
        assert json.load(f)["lr"] == 0.1
    assert recorder.config["steps"] == 4 and recorder.closed
    train_rows = [(s, m) for s, m in recorder.rows if "loss" in m]
    assert [s for s, _ in train_rows] == [1, 2, 3, 4] and "step" not in train_rows[0][1]
    assert [(s, m) for s, m in recorder.rows if "loss" not in m] == [
        (2, {"eval/score": 2.0}),
        (4, {"eval/score": 4.0}),
    ]


def test_tensorboard_events_are_truncated_on_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class Crash(Exception):
        pass

    class CrashAfterLoggingStep3(Callback):
        def on_step_end(self, trainer):
            if trainer.step == 3:
                raise Crash

    pyro.clear_param_store()
    with pytest.raises(Crash):
        quadratic_trainer(
            4,
            callbacks=[CrashAfterLoggingStep3()],
            out_dir=str(tmp_path),
            checkpoint_every=2,
            tensorboard=True,
        ).run()
    assert sorted(
        e.step for e in EventAccumulator(str(tmp_path / "tensorboard")).Reload().Scalars("loss")
    ) == [1, 2, 3]
    pyro.clear_param_store()
    quadratic_trainer(
        4, out_dir=str(tmp_path), checkpoint_every=2, tensorboard=True, resume=True
    ).run()
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3, 4]


def test_evaluation_schedule_and_callback_hooks(tmp_path):
    class Hooks(Callback):
        def __init__(self):
            self.calls = []

        def on_run_start(self, trainer):
            self.calls.append(("start", trainer.step))

        def on_log(self, trainer, row):
            return {"twice_loss": 2 * row["loss"]}

        def on_step_end(self, trainer):
            self.calls.append(("step", trainer.step))

        def on_end(self, trainer):
            self.calls.append(("end", trainer.step))

    pyro.clear_param_store()
    hooks = Hooks()
    default = Evaluation(lambda t: {"a": 1.0})
    own = Evaluation(lambda t: {"b": 1.0}, every=2)
    result = quadratic_trainer(
        7, callbacks=[hooks, default, own], eval_every=3, out_dir=str(tmp_path)
    ).run()
    assert [r["step"] for r in result.eval_history if "a" in r] == [3, 6, 7]
    assert [r["step"] for r in result.eval_history if "b" in r] == [2, 4, 6, 7]
    assert hooks.calls == [("start", 0)] + [("step", s) for s in range(1, 8)] + [("end", 7)]
    assert all(row["twice_loss"] == 2 * row["loss"] for row in result.history)
    # A run resumed from its final checkpoint takes no step but still evaluates once.
    pyro.clear_param_store()
    again = quadratic_trainer(
        7,
        callbacks=[Evaluation(lambda t: {"a": 2.0})],
        eval_every=3,
        out_dir=str(tmp_path),
        resume=True,
    ).run()
    assert again.eval_history == [{"step": 7, "a": 2.0}]
    # no step taken: the one row is the checkpoint's own, logged again as it was
    assert again.history == [result.history[-1]]
    assert [int(r["step"]) for r in read_csv(tmp_path / "eval.csv") if r["a"]][-1:] == [7]


def test_checkpoint_retention_keeps_the_most_recent(tmp_path):
    pyro.clear_param_store()
    trainer = quadratic_trainer(7, out_dir=str(tmp_path), checkpoint_every=2, keep_checkpoints=2)
    trainer.run()
    kept = trainer.checkpoints.kept()
    assert [os.path.basename(p) for p in kept] == ["step-00000006.pt", "step-00000007.pt"]
    assert [load_checkpoint(p)["step"] for p in kept] == [6, 7]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 7
    assert sorted(os.listdir(tmp_path / "checkpoints")) == sorted(os.path.basename(p) for p in kept)


def test_resume_names_a_checkpoint_or_the_run_directorys_last(tmp_path):
    checkpoints = Checkpointer(tmp_path)
    assert checkpoints.resume_path(True) == str(tmp_path / "last.pt")
    assert checkpoints.resume_path(tmp_path / "other.pt") == str(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="resume=True needs out_dir"):
        Checkpointer(None).resume_path(True)


def test_schedules_are_restored_and_checked_on_resume(tmp_path):
    class Holder:
        temperature = 1.0

    def run(schedule, steps, resume=False):
        pyro.clear_param_store()
        holder = Holder()
        quadratic_trainer(
            steps,
            out_dir=str(tmp_path),
            resume=resume,
            schedules=[Anneal(holder, "temperature", schedule)],
        ).run()
        return holder

    run(Exponential(1.0, 0.1, 4), 3)
    assert load_checkpoint(tmp_path / "last.pt")["schedules"] == {
        "temperature": pytest.approx(Exponential(1.0, 0.1, 4)(2))
    }
    # Resumed at its end: no step is taken, the attribute holds the checkpointed value.
    assert run(Exponential(1.0, 0.1, 4), 3, resume=True).temperature == pytest.approx(
        Exponential(1.0, 0.1, 4)(2)
    )
    with pytest.warns(UserWarning, match="'temperature' was 0.316228 at step 3"):
        holder = run(Exponential(1.0, 0.5, 4), 3, resume=True)
    assert holder.temperature == 1.0  # not overwritten with the other schedule's value


def test_data_loaders_and_optimizer_classes():
    torch.manual_seed(0)
    x = torch.randn(32, 2)
    y = x @ torch.tensor([[2.0], [-1.0]])
    net = nn.Linear(2, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    result = Trainer(
        LossObjective(lambda a, b: ((net(a) - b) ** 2).mean(), net),
        loader,
        TrainConfig(steps=60, lr=0.05, optimizer=torch.optim.RMSprop, progress=False),
    ).run()
    assert result.history[-1]["loss"] < 0.05 * result.history[0]["loss"]
    with pytest.raises(TypeError, match="BatchSampler"):
        Trainer(LossObjective(lambda a, b: net(a).sum(), net), 3.0, TrainConfig(steps=1))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(steps=1, optimizer="lion")
    with pytest.raises(ValueError, match="loggers: names must be one of"):
        TrainConfig(steps=1, loggers=("wandb",))
    with pytest.raises(TypeError, match="loggers must be a sequence"):
        TrainConfig(steps=1, loggers="csv")
    with pytest.raises(TypeError, match="neither a logger name"):
        TrainConfig(steps=1, loggers=(object(),))
    with pytest.raises(ValueError, match="tensorboard logger needs out_dir"):
        TrainConfig(steps=1, tensorboard=True)
    with pytest.raises(ValueError, match="eval_every must be a positive integer"):
        TrainConfig(steps=1, eval_every=0)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        Trainer(
            SVIObjective(quadratic_model, no_guide, pyro.infer.Trace_ELBO()),
            empty_batches(),
            {"steps": 1},
        )
    json.dumps(TrainConfig(steps=1, lr_schedule=Exponential(1.0, 0.1, 5)).to_dict())


def test_model_fit_trains_through_the_factory_it_is_given():
    class Recording(default_fitting.DefaultTrainerFactory):
        def __init__(self):
            self.settings = None

        def svi(self, model_fn, guide_fn, elbo, data, **settings):
            self.settings = settings
            return super().svi(model_fn, guide_fn, elbo, data, **settings)

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x = torch.randn(16, 3)
    y = x[:, :1] * 2.0
    recording = Recording()
    result = NeuronDAG(3, 4, 1).fit(x, y, num_steps=3, trainer=recording)
    assert len(result.history) == 3
    assert recording.settings["steps"] == 3 and recording.settings["batch_size"] is None
    assert isinstance(recording, TrainerFactory)
    assert resolve_trainer() is not None
    with pytest.raises(TypeError, match="TrainerFactory"):
        resolve_trainer(object())


def test_layering_models_do_not_import_train_and_train_imports_no_tqdm_or_matplotlib():
    def imported(path):
        tree = ast.parse(path.read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        return names

    for path in (ROOT / "probnets" / "models").rglob("*.py"):
        assert not any(n.startswith("probnets.train") for n in imported(path)), path
    for path in (ROOT / "probnets" / "train").glob("*.py"):
        top_level = {n for n in imported(path) if n.split(".")[0] in ("tqdm", "matplotlib")}
        assert top_level <= ({"tqdm.auto"} if path.name == "progress.py" else set()), path


def test_one_line_fit_works_from_a_model_import_alone():
    code = (
        "import sys, torch\n"
        "from probnets.models.gated import NeuronDAG\n"
        "x = torch.randn(8, 2)\n"
        "NeuronDAG(2, 3, 1).fit(x, x[:, :1], 2)\n"
        "print('matplotlib' in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_batch_sampler_data_in_fit_batches():
    x = torch.arange(6.0)
    batches = default_fitting.fit_batches((x,), batch_size=2, seed=0)
    assert isinstance(batches, BatchSampler) and next(batches)[0].shape == (2,)
    with pytest.raises(ValueError, match="batch_size is for tensors"):
        default_fitting.fit_batches([(x,)], batch_size=2)


def test_cli_tensorboard_is_a_flag(tmp_path, capsys):
    from probnets.cli import main

    argv = [
        "train",
        "vae",
        "--steps",
        "1",
        "--batch-size",
        "8",
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
        "--tensorboard",
    ]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert main(argv) == 2
        assert "needs the tensorboard package" in capsys.readouterr().err
    else:
        assert main(argv) == 0
        assert os.listdir(tmp_path / "run" / "tensorboard")
    capsys.readouterr()
    assert main(argv[:-1] + ["--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "tensorboard").exists()


def test_param_leaf_is_the_param_stores_unconstrained_tensor():
    """Pins the one Pyro behaviour the SVI objective relies on beyond its public API: a
    constrained param site's value carries ``.unconstrained``, a weak reference to the leaf."""
    from pyro.distributions import constraints

    from probnets.train.objectives import param_leaf

    pyro.clear_param_store()
    with pyro.poutine.trace(param_only=True) as capture:
        pyro.param("scale", torch.ones(3), constraint=constraints.positive)
        pyro.param("loc", torch.zeros(3))
    leaves = dict(pyro.get_param_store().named_parameters())
    for name in ("scale", "loc"):
        leaf = param_leaf(capture.trace.nodes[name]["value"])
        assert leaf is leaves[name] and leaf.is_leaf and leaf.requires_grad, name
