"""The training loop, composed of parts with one job each.

One step is::

    apply the schedules (annealed attributes) of this step
    with autocast and loss scaling:                       # precision.Precision
        loss, params = objective(batch)                   # fills .grad (objectives)
    bring new parameters into the optimizer               # param_groups.ParameterGroups
    sum gradients over ranks                              # distributed.GradientSync
    unscale, clip each group's gradient norm
    if a float16 overflow: skip, lower the scale
    elif the loss or a gradient is not finite, or the objective raised a distribution's
        parameter-validation error: skip, count, maybe stop          # guard.BadStepGuard
    else: scheduled learning rates, weight decay, optimizer.step(), watch the loss

as in :class:`pyro.infer.SVI`, and around the steps, in this order: the step's metrics row to
the loggers (:mod:`probnets.train.loggers`), its checkpoint if one is due
(:mod:`probnets.train.checkpoint`; after a bad step too, which left the parameters as they
were), then the callbacks (:mod:`probnets.train.callbacks`: evaluations), so an evaluation that
fails or is interrupted never costs the checkpoint it evaluates; and a progress bar. A
checkpoint holds parameters, module buffers, optimizer state by parameter name, estimator
state, the data's position, every random state, the step and the metrics row logged at it, so
a resumed run takes exactly the steps of an uninterrupted one.

The run directory reads the same after any sequence of runs, kills and resumptions: a run
removes the temporary files of interrupted writes when it starts; a fresh run clears the logs
a run killed before its first checkpoint left; a resumed one drops what was logged after its
checkpoint, logs the checkpoint's own row again and repeats an evaluation due at that step
(evaluations do not consume the training's random numbers, so it gives the same values).
After ``max_bad_steps`` consecutive bad steps the run stops with
:class:`~probnets.train.NonFiniteLossError`, once ``last.pt`` holds parameters a good step was
computed at (the update of the last good step may be what diverged). A copy of the parameters
is kept every ``rollback_every`` good steps (a copy costs memory traffic of the size of the
model each time), so the run rolls back at most ``rollback_every - 1`` good steps further than
the last one.
A loss that explodes without becoming NaN is reported (:class:`~probnets.train.guard.
LossExplosion`): one warning, kept in ``TrainResult.warnings`` and in the checkpoint.
"""

import math
import numbers
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from probnets.loading import recorded_model
from probnets.train import distributed
from probnets.train.callbacks import Callback
from probnets.train.checkpoint import (
    FORMAT_VERSION,
    Checkpointer,
    get_rng_state,
    load_checkpoint,
    set_rng_state,
)
from probnets.train.config import TrainConfig
from probnets.train.guard import (
    BadStepGuard,
    LossExplosion,
    NonFiniteLossError,
    invalid_parameter,
    raised_at,
)
from probnets.train.loggers import EVAL_PREFIX, Logger, make_loggers
from probnets.train.objectives import Objective
from probnets.train.param_groups import ParameterGroups
from probnets.train.precision import Precision
from probnets.train.progress import ProgressBar
from probnets.train.sampler import Batch, TrainData, as_batches, batches_per_epoch

_OBJECTIVE_METHODS = ("named_state", "state_constraints", "load_named_state", "diagnose")


@dataclass
class TrainResult:
    """What :meth:`Trainer.run` returns: logged rows and where the run ended."""

    history: list[dict[str, Any]] = field(default_factory=list)
    eval_history: list[dict[str, float]] = field(default_factory=list)
    step: int = 0
    bad_steps: int = 0
    checkpoint: str | None = None
    warnings: list[str] = field(default_factory=list)


class Trainer:
    """Minimise an objective over a stream of batches, with the bookkeeping of a long run.

    :param objective: what is minimised: :class:`~probnets.train.SVIObjective` (an ELBO of a
        Pyro model and guide) or :class:`~probnets.train.LossObjective` (a deterministic
        loss of a module); see :mod:`probnets.train.objectives` for the protocol.
    :param data: tensors or NumPy arrays (one, or a tuple sharing the first dimension),
        drawn in shuffled mini-batches of ``config.batch_size``, floating-point arrays
        converted to the dtype of the objective's modules; an iterator of batch tuples, such
        as :class:`~probnets.train.BatchSampler`; or an iterable of batches such as a
        :class:`torch.utils.data.DataLoader`, passed over again whenever it ends
        (:func:`~probnets.train.sampler.as_batches`). The position of the stream
        (``state_dict()``, if it has one, as all of these do) is checkpointed, so a resumed
        run sees exactly the batches an uninterrupted run would have.
    :param config: the run's :class:`~probnets.train.TrainConfig`.
    :param callbacks: :class:`~probnets.train.Callback` objects, e.g.
        :class:`~probnets.train.StepMetrics` and :class:`~probnets.train.Evaluation`.

    A callback ends the run early by setting ``trainer.should_stop = True`` (checked after
    each step). Under :mod:`torch.distributed` every rank runs the same Trainer; gradients and
    losses are summed over ranks, and rank 0 alone logs, evaluates and writes checkpoints.
    """

    def __init__(
        self,
        objective: Objective,
        data: TrainData,
        config: TrainConfig,
        callbacks: Iterable[Callback] = (),
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config)}")
        if not (callable(objective) and all(hasattr(objective, m) for m in _OBJECTIVE_METHODS)):
            raise TypeError(
                "objective must be an SVIObjective, a LossObjective or an object "
                f"with their methods, got {type(objective)}"
            )
        self.objective: Objective = objective
        self.data: Iterator[Batch] = as_batches(
            data, config.batch_size, config.data_seed, _module_dtype(objective.modules)
        )
        self.config = config.for_data(batches_per_epoch(self.data))
        config = self.config
        self.callbacks: list[Callback] = list(callbacks)
        self.modules: list[torch.nn.Module] = list(objective.modules)
        sync = config.distributed_sync
        if sync is None:
            sync = distributed.world_size() > 1
        self.sync = distributed.GradientSync() if sync else None
        self.is_main = distributed.is_main_process()
        self.groups = ParameterGroups(config, self.modules)
        self.precision = Precision(config.precision, config.initial_loss_scale)
        self.checkpoints = Checkpointer(
            config.out_dir, config.checkpoint_every, config.keep_checkpoints
        )
        log_dir = config.out_dir if self.is_main else None
        self.guard = BadStepGuard(
            config.max_bad_steps,
            log_path=None if log_dir is None else os.path.join(log_dir, "bad_steps.csv"),
        )
        self.loggers: list[Logger] = make_loggers(config, log_dir) if self.is_main else []
        self.explosion = LossExplosion()
        self._good_parameters: dict[str, torch.Tensor] = {}  # from a recent good step
        self._good_steps_since_copy = 0
        self._good_copy_step = 0  # the good step (as metrics.csv counts) the copy started
        self._logged_row: dict[str, Any] | None = None  # the metrics row of the last logged step
        self.step = 0
        self.last_loss = float("nan")
        self.last_grad_norms: dict[str, float] = {}
        self.last_evaluation: dict[str, float] | None = None
        self.result = TrainResult()
        self.should_stop = False

    # ------------------------------------------------------------------ the parts' state
    @property
    def bad_steps(self) -> int:
        """Steps skipped as bad: a non-finite loss or gradient, or an invalid distribution
        parameter (float16 overflows not counted)."""
        return self.guard.bad_steps

    @property
    def overflow_steps(self) -> int:
        """``"16-mixed"`` steps skipped because the scaled gradients overflowed."""
        return self.precision.overflow_steps

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        """The :class:`torch.amp.GradScaler` of ``"16-mixed"`` (``None`` otherwise)."""
        return self.precision.scaler

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The :class:`torch.optim.Optimizer`, made at the first step."""
        return self.groups.optimizer

    @property
    def checkpoint_path(self) -> str | None:
        """``out_dir/last.pt``, where :meth:`save` writes by default (``None``: no
        ``out_dir``)."""
        return self.checkpoints.path

    # ------------------------------------------------------------------ one step
    def train_step(self, batch: Batch) -> float:
        """One guarded optimisation step; returns the loss (a skipped step's too, NaN when the
        objective raised a parameter-validation error).

        :raises NonFiniteLossError: after ``max_bad_steps`` consecutive bad steps, once the
            last good state is checkpointed (when the run has an ``out_dir``).
        """
        loss = self._step(batch)
        if self.guard.exhausted:
            raise self._diverged()
        return loss

    def _step(self, batch: Batch) -> float:
        for schedule in self.config.schedules:
            schedule.apply(self.step)
        device = _batch_device(batch)
        with self.precision.region(device):
            loss, named, failure = self._objective(batch)
        if not named and failure is None:
            raise RuntimeError(
                "the objective has no trainable parameters: nothing called pyro.param or "
                "pyro.module. If the model is a PyroModule, decorate methods other than forward "
                "(model, guide) with pyro.nn.pyro_method so its parameters are registered."
            )
        self._register(named)
        if self.sync is not None:
            self.sync.gradients(named)
            loss = self.sync.scalar(loss, device)
        self.precision.unscale(self.groups.optimizer)
        self.last_grad_norms, finite = self.groups.clip()
        if failure is not None:  # no gradient was computed
            self.last_grad_norms = dict.fromkeys(self.last_grad_norms, math.nan)
        self._update(batch, loss, named, finite, failure)
        if self.groups.optimizer is not None:  # no scaler step before the first parameters
            self.precision.update()
        self.groups.zero_grad()
        self.step += 1
        self.last_loss = loss
        return loss

    def _objective(self, batch: Batch) -> tuple[float, dict[str, torch.Tensor], str | None]:
        """``(loss, {name: parameter}, failure)``. A distribution-parameter validation error
        raised by the model or guide is a bad step, not a crash: the loss is NaN, the known
        parameters get zero gradients (so every rank takes part in the gradient sum) and
        ``failure`` says what was invalid and where. Any other error propagates."""
        try:
            loss, named = self.objective(batch)
            return loss, named, None
        except ValueError as error:
            reason = invalid_parameter(error)
            if reason is None:
                raise
            where = raised_at(error)
        self.groups.zero_grad()  # whatever a partial backward pass left
        named = dict(self.groups.by_name)
        for param in named.values():
            param.grad = torch.zeros_like(param)
        failure = f"invalid distribution parameter {reason}"
        return math.nan, named, failure + (f" (built at {where})" if where else "")

    def _register(self, named: Mapping[str, torch.Tensor]) -> None:
        new = self.groups.unseen(named)
        if new and self.sync is not None:
            self.sync.broadcast_parameters(new)  # every rank starts from rank 0's values
        self.groups.register(named)

    def _update(
        self,
        batch: Batch,
        loss: float,
        named: Mapping[str, torch.Tensor],
        grads_finite: bool,
        failure: str | None = None,
    ) -> None:
        if failure is None and self.precision.is_overflow(loss, grads_finite):
            return
        step = self.step + 1  # as metrics.csv counts it
        if failure is not None or not (math.isfinite(loss) and grads_finite):
            self.guard.bad(
                step, loss, named, lambda: self.objective.diagnose(batch), reason=failure
            )
            return
        self.guard.good(step)
        self._keep_good_parameters()
        self.groups.step(self.step)
        warning = self.explosion.observe(step, loss)
        if warning is not None:
            self.warn(warning)

    def warn(self, message: str) -> None:
        """Report something the run's results should be read with: a :class:`RuntimeWarning`
        (on rank 0) and an entry of ``TrainResult.warnings``, which checkpoints keep."""
        self.result.warnings.append(message)
        if self.is_main:
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    @torch.no_grad()
    def _keep_good_parameters(self) -> None:
        """Copy the parameters a good step was computed at, before its update moves them, on
        the first good step and then every ``rollback_every`` good steps: an update can be the
        one that diverges (a learning rate far too high), after which every step is bad, so
        the copy holds parameters known to be good. A parameter first seen since the last
        copy (Pyro creates them on first use) makes a copy due at once."""
        self._good_steps_since_copy += 1
        complete = len(self._good_parameters) == len(self.groups.by_name)
        if complete and self._good_steps_since_copy < self.config.rollback_every:
            return
        self._good_steps_since_copy = 0
        self._good_copy_step = self.step + 1
        for name, param in self.groups.by_name.items():
            kept = self._good_parameters.get(name)
            if (
                kept is None
                or kept.shape != param.shape
                or kept.dtype != param.dtype
                or kept.device != param.device
            ):
                self._good_parameters[name] = param.detach().clone()
            else:
                kept.copy_(param)

    def _diverged(self) -> NonFiniteLossError:
        """Restore the parameters of the last copy (:meth:`_keep_good_parameters`), checkpoint
        them (with the optimizer state, the step count and the random states as they are) and
        return the error that stops the run."""
        with torch.no_grad():
            for name, kept in self._good_parameters.items():
                self.groups.by_name[name].copy_(kept)
        checkpoint = self.save() if self.checkpoints.out_dir is not None else None
        return self.guard.error(checkpoint, kept_step=self._good_copy_step or None)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as plain values (see :mod:`probnets.checkpoint`)."""
        state: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "step": self.step,
            **self.guard.state_dict(),
            "params": self.objective.named_state(),
            "constraints": self.objective.state_constraints(),
            "modules": [m.state_dict() for m in self.modules],
            "optimizer": self.groups.state_dict(),
            "schedules": self._schedule_values(),
            "rng": (
                get_rng_state() if self.sync is None else self.sync.gather_objects(get_rng_state())
            ),
            "world_size": distributed.world_size(),
            # the model's class and configuration, so probnets.load can rebuild it
            "extra": {**recorded_model(self.modules), **(self.config.checkpoint_extra or {})},
            "logged_row": (
                _plain_row(self._logged_row)
                if self._logged_row is not None and self._logged_row["step"] == self.step
                else None
            ),
            "warnings": list(self.result.warnings),
            "loss_explosion": self.explosion.state_dict(),
        }
        if self.groups.scheduler_state_dict() is not None:
            state["lr_scheduler"] = self.groups.scheduler_state_dict()
        if hasattr(self.data, "state_dict"):
            state["data"] = self.data.state_dict()
        optional = {"loss": self.objective.state_dict(), "loss_scale": self.precision.state_dict()}
        state.update({k: v for k, v in optional.items() if v is not None})
        return state

    def _schedule_values(self) -> dict[str, float]:
        # The annealed values the last step taken ran with.
        return {
            s.name: float(s.schedule(max(self.step - 1, 0)))
            for s in self.config.schedules
            if hasattr(s, "schedule")
        }

    def save(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write a checkpoint (default ``out_dir/last.pt``); collective under
        torch.distributed: every rank calls it, rank 0 writes."""
        target = path if path is not None else self.checkpoints.path
        if target is None:
            raise ValueError("no checkpoint path: pass path= or give the Trainer an out_dir")
        state = self.state_dict()
        for logger in self.loggers:  # what the checkpoint's resumed run keeps is on disk
            flush = getattr(logger, "flush", None)
            if flush is not None:
                flush()
        if self.is_main:
            self.checkpoints.write(state, target)
        if self.sync is not None:
            self.sync.barrier()  # the checkpoint exists for every rank when save returns
        self.result.checkpoint = os.fspath(target)
        return self.result.checkpoint

    def load(self, path: str | os.PathLike[str]) -> dict[str, Any]:
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
        self.groups.load_scheduler_state_dict(state.get("lr_scheduler"))
        if "data" in state and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(state["data"])
        self.objective.load_state_dict(state.get("loss"))
        self.precision.load_state_dict(state.get("loss_scale"))
        set_rng_state(state["rng"] if self.sync is None else state["rng"][distributed.rank()])
        self.step = state["step"]
        self.guard.load_state_dict(state)
        if "loss_explosion" in state:  # checkpoints from before it have none
            self.explosion.load_state_dict(state["loss_explosion"])
        self.result.warnings = list(state.get("warnings", []))
        self._restore_schedules(state.get("schedules", {}), path)
        # The logs continue from the checkpoint: what was logged at its step and after is
        # dropped, and the checkpoint's own row is logged again (its evaluation, if due,
        # is repeated by the Evaluation callback).
        if "logged_row" in state:
            self._forget_logs_after(self.step - 1, bad_steps_after=self.step)
            if state["logged_row"] is not None:
                self._send_row(dict(state["logged_row"]))
        else:  # a checkpoint from before rows were kept in it: its step's row stays
            self._forget_logs_after(self.step)
        self.result.checkpoint = os.fspath(path)
        return state

    def _forget_logs_after(self, step: int, bad_steps_after: int | None = None) -> None:
        for logger in self.loggers:
            if hasattr(logger, "truncate_after"):
                logger.truncate_after(max(step, 0))
        self.guard.truncate_after(step if bad_steps_after is None else bad_steps_after)

    def _check_compatible(self, state: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
        if state.get("world_size", 1) != distributed.world_size():
            raise ValueError(
                f"checkpoint {path!r} was written by {state.get('world_size', 1)} rank(s); resume "
                f"it with the same number (this run has {distributed.world_size()})"
            )
        if len(state["modules"]) != len(self.modules):
            raise ValueError(
                f"checkpoint {path!r} holds {len(state['modules'])} module state(s) but this "
                f"trainer has {len(self.modules)}: it was written by a different model setup"
            )

    def _restore_schedules(self, saved: Mapping[str, float], path: str | os.PathLike[str]) -> None:
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
                    "continues on this run's schedule",
                    stacklevel=3,
                )

    # ------------------------------------------------------------------ logging
    def _log_row(self, seconds: float) -> dict[str, Any]:
        row = {
            "step": self.step,
            "loss": self.last_loss,
            "lr": self.groups.scheduled_lr(self.step - 1),
            "bad_steps": self.bad_steps,
            "seconds_per_step": seconds,
            **self.precision.metrics(),
        }
        row.update({f"grad_norm[{name}]": norm for name, norm in self.last_grad_norms.items()})
        for schedule in self.config.schedules:
            row[schedule.name] = float(getattr(schedule.obj, schedule.attribute))
        for callback in self.callbacks:
            hook = getattr(callback, "on_log", None)
            extra = hook(self, row) if hook is not None else None
            row.update(extra or {})
        self._send_row(row)
        return row

    def _send_row(self, row: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_metrics(row["step"], {k: v for k, v in row.items() if k != "step"})
        self.result.history.append(row)
        self._logged_row = row

    def record_evaluation(self, values: Mapping[str, float]) -> dict[str, float]:
        """Log an evaluation's ``{name: value}`` at the current step (loggers get
        ``eval/<name>``), add it to ``result.eval_history`` and the progress bar."""
        row = {"step": self.step, **values}
        for logger in self.loggers:
            logger.log_metrics(self.step, {EVAL_PREFIX + k: v for k, v in values.items()})
        self.result.eval_history.append(row)
        self.last_evaluation = row
        return row

    def _callbacks(self, hook: str) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self)

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        """Train up to ``config.steps``; returns a :class:`TrainResult`.

        :raises NonFiniteLossError: when the run diverges (see :mod:`probnets.train.guard`).
        :raises CheckpointWriteError: when a checkpoint cannot be written (a full disk); the
            previous one is intact.
        """
        if self.is_main:
            self.checkpoints.remove_orphans()
        if self.config.resume:
            self.load(self.checkpoints.resume_path(self.config.resume))
        elif self.step == 0:  # logs of a run killed before its first checkpoint
            self._forget_logs_after(0)
        settings = self.config.to_dict()
        for logger in self.loggers:
            logger.log_config(settings)
        self._callbacks("on_run_start")
        steps = self.config.steps
        assert steps is not None  # for_data turned num_epochs into steps
        bar = ProgressBar(
            steps,
            self.step,
            self.config.description,
            enabled=self.config.progress and self.is_main,
        )
        try:
            while self.step < steps and not self.should_stop:
                self._run_step(bar)
            self._callbacks("on_end")
        except KeyboardInterrupt:
            bar.write(
                f"interrupted at step {self.step}; last checkpoint: "
                f"{self.result.checkpoint or 'none yet'}"
            )
            raise
        finally:
            bar.close()
            for logger in self.loggers:
                logger.close()
        self.result.step, self.result.bad_steps = self.step, self.bad_steps
        return self.result

    def _run_step(self, bar: ProgressBar) -> None:
        start = time.perf_counter()
        loss = self._step(next(self.data))
        seconds = time.perf_counter() - start
        self._callbacks("on_train_step_end")
        last = self.step == self.config.steps
        stopping = self.guard.exhausted
        row = None
        if self.step % self.config.log_every == 0 or last or stopping:
            row = self._log_row(seconds)
        if stopping:
            raise self._diverged()
        # Before the callbacks, so it does not depend on an evaluation succeeding.
        if self.checkpoints.due(self.step, last):
            self.save()
        self._callbacks("on_step_end")
        bar.update(loss, row, self.last_evaluation)


def _module_dtype(modules: Iterable[torch.nn.Module]) -> torch.dtype:
    for module in modules:
        for p in module.parameters():
            if p.is_floating_point():
                return p.dtype
    return torch.get_default_dtype()


def _plain_row(row: Mapping[str, Any]) -> dict[str, int | float | str]:
    """A metrics row as values a ``weights_only`` checkpoint holds."""
    plain: dict[str, int | float | str] = {}
    for key, value in row.items():
        if torch.is_tensor(value) and value.numel() == 1:
            value = value.item()
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            plain[key] = int(value)
        elif isinstance(value, numbers.Real):
            plain[key] = float(value)
        else:
            plain[key] = str(value)
    return plain


def _batch_device(batch: Batch) -> torch.device:
    for value in batch:
        if torch.is_tensor(value):
            return value.device
    return torch.device("cpu")


__all__ = ["TrainResult", "Trainer"]
