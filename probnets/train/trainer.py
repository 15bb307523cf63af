"""The training loop, composed of parts with one job each.

One step is::

    apply the schedules (annealed attributes) of this step
    with autocast and loss scaling:                       # precision.Precision
        loss, params = objective(batch)                   # fills .grad (objectives)
    bring new parameters into the optimizer               # param_groups.ParameterGroups
    sum gradients over ranks                              # distributed.GradientSync
    unscale, clip each group's gradient norm
    if a float16 overflow: skip, lower the scale
    elif the loss or a gradient is not finite: skip, count, maybe stop   # guard.BadStepGuard
    else: scheduled learning rates, weight decay, optimizer.step()

as in :class:`pyro.infer.SVI`, and around the steps: metric rows to the loggers
(:mod:`probnets.train.loggers`), callbacks (:mod:`probnets.train.callbacks`: extra metrics,
evaluations), checkpoints after good steps (:mod:`probnets.train.checkpoint`) and a progress
bar. A checkpoint holds parameters, module buffers, optimizer state by parameter name,
estimator state, the data's position, every random state and the step, so a resumed run takes
exactly the steps of an uninterrupted one.
"""

import math
import os
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from probnets.loading import recorded_model
from probnets.train import distributed
from probnets.train.checkpoint import (
    FORMAT_VERSION,
    Checkpointer,
    get_rng_state,
    load_checkpoint,
    set_rng_state,
)
from probnets.train.config import TrainConfig
from probnets.train.guard import BadStepGuard
from probnets.train.loggers import EVAL_PREFIX, make_loggers
from probnets.train.param_groups import ParameterGroups
from probnets.train.precision import Precision
from probnets.train.progress import ProgressBar
from probnets.train.sampler import repeat_epochs

_OBJECTIVE_METHODS = ("named_state", "state_constraints", "load_named_state", "diagnose")


@dataclass
class TrainResult:
    """What :meth:`Trainer.run` returns: logged rows and where the run ended."""

    history: list = field(default_factory=list)
    eval_history: list = field(default_factory=list)
    step: int = 0
    bad_steps: int = 0
    checkpoint: str | None = None


class Trainer:
    """Minimise an objective over a stream of batches, with the bookkeeping of a long run.

    :param objective: what is minimised: :class:`~probnets.train.SVIObjective` (an ELBO of a
        Pyro model and guide) or :class:`~probnets.train.LossObjective` (a deterministic
        loss of a module); see :mod:`probnets.train.objectives` for the protocol.
    :param data: an iterator of batch tuples, such as :class:`~probnets.train.BatchSampler`
        (its ``state_dict()``, if any, is checkpointed so a resumed run sees the same
        batches), or an iterable of batches such as a :class:`torch.utils.data.DataLoader`,
        passed over again whenever it ends (a resumed run then starts a fresh pass).
    :param config: the run's :class:`~probnets.train.TrainConfig`.
    :param callbacks: :class:`~probnets.train.Callback` objects, e.g.
        :class:`~probnets.train.StepMetrics` and :class:`~probnets.train.Evaluation`.

    Under :mod:`torch.distributed` every rank runs the same Trainer; gradients and losses are
    summed over ranks, and rank 0 alone logs, evaluates and writes checkpoints.
    """

    def __init__(self, objective: Any, data: Iterable, config: TrainConfig,
                 callbacks: Iterable[Any] = ()) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config)}")
        if not (callable(objective) and all(hasattr(objective, m) for m in _OBJECTIVE_METHODS)):
            raise TypeError("objective must be an SVIObjective, a LossObjective or an object "
                            f"with their methods, got {type(objective)}")
        self.config = config
        self.objective = objective
        self.data = _as_batches(data)
        self.callbacks = list(callbacks)
        self.modules = list(objective.modules)
        sync = config.distributed_sync
        if sync is None:
            sync = distributed.world_size() > 1
        self.sync = distributed.GradientSync() if sync else None
        self.is_main = distributed.is_main_process()
        self.groups = ParameterGroups(config, self.modules)
        self.precision = Precision(config.precision, config.initial_loss_scale)
        self.checkpoints = Checkpointer(config.out_dir, config.checkpoint_every,
                                        config.keep_checkpoints)
        log_dir = config.out_dir if self.is_main else None
        self.guard = BadStepGuard(config.max_bad_steps, log_path=None if log_dir is None
                                  else os.path.join(log_dir, "bad_steps.csv"))
        self.loggers = make_loggers(config, log_dir) if self.is_main else []
        self.step = 0
        self.last_loss = float("nan")
        self.last_grad_norms: dict[str, float] = {}
        self.last_evaluation: dict | None = None
        self.result = TrainResult()

    # ------------------------------------------------------------------ the parts' state
    @property
    def bad_steps(self):
        """Steps skipped for a non-finite loss or gradient (float16 overflows not counted)."""
        return self.guard.bad_steps

    @property
    def overflow_steps(self):
        """``"16-mixed"`` steps skipped because the scaled gradients overflowed."""
        return self.precision.overflow_steps

    @property
    def scaler(self):
        """The :class:`torch.amp.GradScaler` of ``"16-mixed"`` (``None`` otherwise)."""
        return self.precision.scaler

    @property
    def optimizer(self):
        """The :class:`torch.optim.Optimizer`, made at the first step."""
        return self.groups.optimizer

    @property
    def checkpoint_path(self):
        return self.checkpoints.path

    # ------------------------------------------------------------------ one step
    def train_step(self, batch: tuple) -> float:
        """One guarded optimisation step; returns the loss (a skipped step's too)."""
        for schedule in self.config.schedules:
            schedule.apply(self.step)
        with self.precision.region(_batch_device(batch)):
            loss, named = self.objective(batch)
        if not named:
            raise RuntimeError(
                "the objective has no trainable parameters: nothing called pyro.param or "
                "pyro.module. If the model is a PyroModule, decorate methods other than forward "
                "(model, guide) with pyro.nn.pyro_method so its parameters are registered.")
        self._register(named)
        if self.sync is not None:
            self.sync.gradients(named)
            loss = self.sync.scalar(loss, next(iter(named.values())).device)
        self.precision.unscale(self.groups.optimizer)
        self.last_grad_norms, finite = self.groups.clip()
        self._update(batch, loss, named, finite)
        self.precision.update()
        self.groups.zero_grad()
        self.step += 1
        self.last_loss = loss
        return loss

    def _register(self, named):
        new = self.groups.unseen(named)
        if new and self.sync is not None:
            self.sync.broadcast_parameters(new)  # every rank starts from rank 0's values
        self.groups.register(named)

    def _update(self, batch, loss, named, grads_finite):
        if self.precision.is_overflow(loss, grads_finite):
            return
        if not (math.isfinite(loss) and grads_finite):
            self.guard.bad(self.step, loss, named, lambda: self.objective.diagnose(batch),
                           checkpoint=self.checkpoints.path)
            return
        self.guard.good()
        self.groups.step(self.step)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything a resumed run needs, as plain values (see :mod:`probnets.checkpoint`)."""
        state = {
            "format": FORMAT_VERSION,
            "step": self.step,
            **self.guard.state_dict(),
            "params": self.objective.named_state(),
            "constraints": self.objective.state_constraints(),
            "modules": [m.state_dict() for m in self.modules],
            "optimizer": self.groups.state_dict(),
            "schedules": self._schedule_values(),
            "rng": (get_rng_state() if self.sync is None
                    else self.sync.gather_objects(get_rng_state())),
            "world_size": distributed.world_size(),
            # the model's class and configuration, so probnets.load can rebuild it
            "extra": {**recorded_model(self.modules), **(self.config.checkpoint_extra or {})},
        }
        if hasattr(self.data, "state_dict"):
            state["data"] = self.data.state_dict()
        optional = {"loss": self.objective.state_dict(), "loss_scale": self.precision.state_dict()}
        state.update({k: v for k, v in optional.items() if v is not None})
        return state

    def _schedule_values(self):
        # The annealed values the last step taken ran with.
        return {s.name: float(s.schedule(max(self.step - 1, 0))) for s in self.config.schedules
                if hasattr(s, "schedule")}

    def save(self, path: str | os.PathLike | None = None) -> str:
        """Write a checkpoint (default ``out_dir/last.pt``); collective under
        torch.distributed: every rank calls it, rank 0 writes."""
        target = path if path is not None else self.checkpoints.path
        if target is None:
            raise ValueError("no checkpoint path: pass path= or give the Trainer an out_dir")
        state = self.state_dict()
        if self.is_main:
            self.checkpoints.write(state, target)
        if self.sync is not None:
            self.sync.barrier()  # the checkpoint exists for every rank when save returns
        self.result.checkpoint = os.fspath(target)
        return self.result.checkpoint

    def load(self, path: str | os.PathLike) -> dict:
        """Continue from a checkpoint, exactly where the run that wrote it was."""
        state = load_checkpoint(path)
        self._check_compatible(state, path)
        # One pass creates every lazily registered parameter (estimator control variates,
        # PyroModule registrations) so values can be copied *into* the tensors the modules
        # hold; it draws random numbers and a batch, both restored below.
        batch = next(self.data)
        self.precision.prepare(_batch_device(batch))
        _, named = self.objective(batch)
        self._register(named)
        self.groups.zero_grad()
        for module, module_state in zip(self.modules, state["modules"]):
            module.load_state_dict(module_state)
        self.objective.load_named_state(state["params"], state["constraints"])
        self.groups.load_state_dict(state["optimizer"])
        if "data" in state and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(state["data"])
        self.objective.load_state_dict(state.get("loss"))
        self.precision.load_state_dict(state.get("loss_scale"))
        set_rng_state(state["rng"] if self.sync is None else state["rng"][distributed.rank()])
        self.step = state["step"]
        self.guard.load_state_dict(state)
        self._restore_schedules(state.get("schedules", {}), path)
        for logger in self.loggers:
            if hasattr(logger, "truncate_after"):
                logger.truncate_after(self.step)
        self.result.checkpoint = os.fspath(path)
        return state

    def _check_compatible(self, state, path):
        if state.get("world_size", 1) != distributed.world_size():
            raise ValueError(
                f"checkpoint {path!r} was written by {state.get('world_size', 1)} rank(s); resume "
                f"it with the same number (this run has {distributed.world_size()})")
        if len(state["modules"]) != len(self.modules):
            raise ValueError(
                f"checkpoint {path!r} holds {len(state['modules'])} module state(s) but this "
                f"trainer has {len(self.modules)}: it was written by a different model setup")

    def _restore_schedules(self, saved, path):
        """Set annealed attributes to the values the checkpointed step ran with, warning
        where this run's schedule gives another value there."""
        current = self._schedule_values()
        for schedule in self.config.schedules:
            name = schedule.name
            if name not in saved or name not in current:
                continue
            if math.isclose(saved[name], current[name], rel_tol=1e-6, abs_tol=1e-12):
                if self.step > 0:
                    schedule.apply(self.step - 1)
            else:
                warnings.warn(
                    f"checkpoint {os.fspath(path)!r}: {name!r} was {saved[name]:.6g} at step "
                    f"{self.step} but this run's schedule gives {current[name]:.6g}; the run "
                    "continues on this run's schedule", stacklevel=3)

    # ------------------------------------------------------------------ logging
    def _log_row(self, seconds):
        row = {"step": self.step, "loss": self.last_loss,
               "lr": self.groups.scheduled_lr(self.step - 1), "bad_steps": self.bad_steps,
               "seconds_per_step": seconds, **self.precision.metrics()}
        row.update({f"grad_norm[{name}]": norm for name, norm in self.last_grad_norms.items()})
        for schedule in self.config.schedules:
            row[schedule.name] = float(getattr(schedule.obj, schedule.attribute))
        for callback in self.callbacks:
            hook = getattr(callback, "on_log", None)
            extra = hook(self, row) if hook is not None else None
            row.update(extra or {})
        for logger in self.loggers:
            logger.log_metrics(self.step, {k: v for k, v in row.items() if k != "step"})
        self.result.history.append(row)
        return row

    def record_evaluation(self, values: dict) -> dict:
        """Log an evaluation's ``{name: value}`` at the current step (loggers get
        ``eval/<name>``), add it to ``result.eval_history`` and the progress bar."""
        row = {"step": self.step, **values}
        for logger in self.loggers:
            logger.log_metrics(self.step, {EVAL_PREFIX + k: v for k, v in values.items()})
        self.result.eval_history.append(row)
        self.last_evaluation = row
        return row

    def _callbacks(self, hook):
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self)

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        """Train up to ``config.steps``; returns a :class:`TrainResult`."""
        if self.config.resume:
            self.load(self.checkpoints.resume_path(self.config.resume))
        settings = self.config.to_dict()
        for logger in self.loggers:
            logger.log_config(settings)
        self._callbacks("on_run_start")
        bar = ProgressBar(self.config.steps, self.step, self.config.description,
                          enabled=self.config.progress and self.is_main)
        try:
            while self.step < self.config.steps:
                self._run_step(bar)
            self._callbacks("on_end")
        except KeyboardInterrupt:
            bar.write(f"interrupted at step {self.step}; last checkpoint: "
                      f"{self.result.checkpoint or 'none yet'}")
            raise
        finally:
            bar.close()
            for logger in self.loggers:
                logger.close()
        self.result.step, self.result.bad_steps = self.step, self.bad_steps
        return self.result

    def _run_step(self, bar):
        start = time.perf_counter()
        loss = self.train_step(next(self.data))
        seconds = time.perf_counter() - start
        last = self.step == self.config.steps
        row = None
        if self.step % self.config.log_every == 0 or last:
            row = self._log_row(seconds)
        self._callbacks("on_step_end")
        # Only after a good step, so the checkpoint on disk is the last good state when the
        # guard stops the run.
        if self.guard.consecutive == 0 and self.checkpoints.due(self.step, last):
            self.save()
        bar.update(loss, row, self.last_evaluation)


def _as_batches(data):
    if hasattr(data, "__next__"):
        return data
    if isinstance(data, (tuple, list, torch.Tensor)) or not hasattr(data, "__iter__"):
        raise TypeError(
            "data must be an iterator of batch tuples (e.g. BatchSampler(x, y, batch_size=...)) "
            f"or an iterable of batches such as a DataLoader, got {type(data).__name__}")
    return repeat_epochs(data)


def _batch_device(batch):
    for value in batch:
        if torch.is_tensor(value):
            return value.device
    return torch.device("cpu")


__all__ = ["TrainResult", "Trainer"]
