"""Callbacks: user code that runs at fixed points of a :class:`~probnets.train.Trainer` run.

A callback subclasses :class:`Callback` and overrides the hooks it needs; each receives the
trainer (``trainer.step`` is the number of steps taken so far, ``trainer.last_loss`` the last
step's loss, ``trainer.config`` the settings):

- ``on_run_start(trainer)``: after resuming, before the first step of this run;
- ``on_train_step_end(trainer)``: right after every optimizer step, before its logging and
  its checkpoint: the place for a callback that changes the training state the checkpoint
  must hold (e.g. a moving average of the weights);
- ``on_log(trainer, row)``: a metrics row is being logged; the returned dict (if any) is
  merged into it;
- ``on_step_end(trainer)``: after every step, its logging and its checkpoint (if one is due),
  so a callback that fails or is interrupted does not cost the step's checkpoint (evaluations
  run here);
- ``on_end(trainer)``: after the last step.

Evaluation callbacks run on rank 0 only under :mod:`torch.distributed`; the others on every
rank.
"""

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from probnets.checkpoint import get_rng_state, set_rng_state
from probnets.train.guard import invalid_parameter

if TYPE_CHECKING:  # for annotations only: the trainer imports this module
    from probnets.train.trainer import Trainer


class Callback:
    """Base class; every hook does nothing."""

    def on_run_start(self, trainer: "Trainer") -> None:
        pass

    def on_train_step_end(self, trainer: "Trainer") -> None:
        pass

    def on_log(self, trainer: "Trainer", row: dict[str, Any]) -> Mapping[str, Any] | None:
        return None

    def on_step_end(self, trainer: "Trainer") -> None:
        pass

    def on_end(self, trainer: "Trainer") -> None:
        pass


class StepMetrics(Callback):
    """Extra scalars in every logged metrics row (and the progress bar).

    :param fn: ``fn(trainer) -> dict`` of scalars, e.g.
        ``lambda t: {"elbo_per_image": -t.last_loss / batch_size}``.
    """

    def __init__(self, fn: Callable[["Trainer"], Mapping[str, Any]]) -> None:
        if not callable(fn):
            raise TypeError(f"StepMetrics needs a callable fn(trainer) -> dict, got {fn!r}")
        self.fn = fn

    def on_log(self, trainer: "Trainer", row: dict[str, Any]) -> Mapping[str, Any]:
        return self.fn(trainer)


class Evaluation(Callback):
    """A held-out evaluation every ``every`` steps and at the end of the run.

    Its rows go to the loggers under ``eval/`` names (``eval.csv`` for the CSV logger), to
    ``TrainResult.eval_history`` and to the progress bar. It runs after the step's
    checkpoint, with every random state restored afterwards, so evaluating does not change
    the training's draws (a run trains the same with any ``every``) and a run resumed from a
    checkpoint repeats the evaluation due at that step with the same values: the record has
    one row per evaluated step whatever was interrupted. An evaluation that fails because the
    parameters build an invalid distribution (a diverging run) is skipped with one warning.

    :param fn: ``fn(trainer) -> dict`` of scalars.
    :param int every: steps between evaluations (default: the config's ``eval_every``;
        ``None`` there too: only at the end).
    """

    def __init__(
        self, fn: Callable[["Trainer"], Mapping[str, float]], every: int | None = None
    ) -> None:
        if not callable(fn):
            raise TypeError(f"Evaluation needs a callable fn(trainer) -> dict, got {fn!r}")
        if every is not None and not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every must be a positive integer or None, got {every!r}")
        self.fn = fn
        self.every = every
        self._interval: int | None = None
        self._last_step: int | None = None
        self._failed = False  # an evaluation was skipped (warned once)

    def on_run_start(self, trainer: "Trainer") -> None:
        self._interval = self.every if self.every is not None else trainer.config.eval_every
        self._last_step = None
        if trainer.step > 0 and self._due(trainer):  # resumed: the checkpoint's evaluation
            self._evaluate(trainer)

    def _due(self, trainer: "Trainer") -> bool:
        return trainer.step == trainer.config.steps or bool(
            self._interval and trainer.step % self._interval == 0
        )

    def _evaluate(self, trainer: "Trainer") -> None:
        if trainer.is_main:
            state = get_rng_state()
            values: Mapping[str, float] | None
            try:
                values = self.fn(trainer)
            except ValueError as error:
                # Parameters that build invalid distributions are the bad-step guard's
                # business (it stops the run if they persist); the evaluation is skipped.
                reason = invalid_parameter(error)
                if reason is None:
                    raise
                values = None
                if not self._failed:
                    trainer.warn(
                        f"evaluation at step {trainer.step} skipped: invalid "
                        f"distribution parameter {reason}"
                    )
                self._failed = True
            finally:
                set_rng_state(state)
            if values is not None:
                trainer.record_evaluation(values)
        self._last_step = trainer.step

    def on_step_end(self, trainer: "Trainer") -> None:
        if self._due(trainer):
            self._evaluate(trainer)

    def on_end(self, trainer: "Trainer") -> None:
        # A run resumed from its final checkpoint takes no step but still reports.
        if self._last_step is None and trainer.step == trainer.config.steps:
            self._evaluate(trainer)


__all__ = ["Callback", "Evaluation", "StepMetrics"]
