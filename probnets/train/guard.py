"""The bad-step guard: skip updates that would corrupt the parameters, stop a run that keeps
producing them, and notice a loss that explodes while staying finite.

One NaN in a long run (a rare extreme sample, a score-function term that overflows) should
cost one skipped step, not the run; a model that has diverged should stop with a message that
says where, not train on NaNs. A step is *bad* when

- its loss or one of its gradients is not finite, or
- the model or guide built a distribution whose parameter violates its constraint (the
  ``ValueError`` "Expected parameter scale ... to satisfy the constraint ..." of
  :mod:`torch.distributions` argument validation, which Pyro enables), which is how a
  diverging model usually fails first: a ``scale`` of ``exp(hidden)`` overflows to ``inf``
  or a NaN reaches a ``loc`` before any loss is computed.

Any other exception (a shape mismatch, a ``TypeError``) is a programming error and
propagates. A bad step leaves the parameters and the optimizer state as the last good step
left them; it is counted, written to ``bad_steps.csv`` (the step, in the numbering of
``metrics.csv``, the loss, why, the parameters with a non-finite gradient and the sample
sites involved), and after ``max_bad_steps`` consecutive ones the run stops with
:class:`NonFiniteLossError`, once the parameters a recent good step started from are on disk
as a checkpoint (:class:`~probnets.train.Trainer` keeps a copy of them every
``rollback_every`` good steps: the update of the last good step may be the one that diverged).

:class:`LossExplosion` watches the losses of good steps for the other way a run diverges: a
learning rate so large that the loss grows by orders of magnitude without overflowing.
"""

import math
import os
import re
import statistics
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from probnets.train.loggers import CsvFile

_INVALID_PARAMETER = re.compile(
    r"Expected parameter (?P<parameter>\w+) .*?of distribution (?P<distribution>\w+)"
    r".*?to satisfy the constraint (?P<constraint>.+?), but found invalid values",
    re.DOTALL,
)


_SITES_SHOWN = 6  # in the error message; bad_steps.csv has them all


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive bad steps (see :mod:`probnets.train.guard`).

    :ivar int step: the step at which the run stopped.
    :ivar list sites: the sample sites and parameters named by the last bad step.
    :ivar checkpoint: the checkpoint holding the last good state, or ``None``.
    """

    def __init__(
        self,
        message: str,
        step: int | None = None,
        sites: Iterable[str] = (),
        checkpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.step = step
        self.sites = list(sites)
        self.checkpoint = checkpoint


def invalid_parameter(error: BaseException | None) -> str | None:
    """``"Normal.scale outside GreaterThan(lower_bound=0.0)"`` when ``error`` (or the error it
    wraps: Pyro re-raises with the trace's shapes) is a distribution-parameter validation
    error, else ``None``."""
    seen: set[int] = set()
    while isinstance(error, ValueError) and id(error) not in seen:
        seen.add(id(error))
        match = _INVALID_PARAMETER.search(str(error))
        if match is not None:
            return (
                f"{match['distribution']}.{match['parameter']} outside "
                f"{match['constraint'].strip()}"
            )
        error = error.__cause__
    return None


def raised_at(error: BaseException) -> str | None:
    """``"file.py:123 in guide"``: the innermost frame of ``error``'s traceback outside torch
    and Pyro, where the invalid distribution was built (``None`` if there is none)."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not _is_library_file(frame.filename)
    ]
    if not frames:
        return None
    return f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}"


def _is_library_file(filename: str) -> bool:
    parts = os.path.normpath(filename).split(os.sep)
    return "torch" in parts or "pyro" in parts or parts[-1] == "contextlib.py"


class BadStepGuard:
    """Counts bad steps, logs them and says when the run must stop.

    :param int max_bad_steps: consecutive bad steps tolerated.
    :param log_path: CSV file for one row per bad step (``None``: not written).
    """

    def __init__(
        self, max_bad_steps: int = 10, log_path: str | os.PathLike[str] | None = None
    ) -> None:
        self.max_bad_steps = max_bad_steps
        self.log = CsvFile(log_path) if log_path is not None else None
        self.bad_steps = 0
        self.consecutive = 0
        self.last_good_step = 0
        self.last_message: str | None = None
        self.last_reason: str | None = None
        self.last_sites: list[str] = []

    @property
    def exhausted(self) -> bool:
        """Whether the last ``max_bad_steps`` steps were all bad."""
        return self.consecutive >= self.max_bad_steps

    def good(self, step: int) -> None:
        """Record that ``step`` (counted from 1) updated the parameters."""
        self.consecutive = 0
        self.last_good_step = step

    def bad(
        self,
        step: int,
        loss: float,
        named: Mapping[str, torch.Tensor],
        diagnose: Callable[[], list[str]],
        reason: str | None = None,
    ) -> str:
        """Record a bad step.

        :param int step: the step, counted from 1 as in ``metrics.csv``.
        :param named: the ``{name: parameter}`` of the step, to name the non-finite gradients.
        :param diagnose: a callable returning the sample sites involved.
        :param str reason: why the step is bad when it is not the loss or a gradient (an
            invalid distribution parameter).
        :returns: a one-line description of the step.
        """
        self.bad_steps += 1
        self.consecutive += 1
        params = sorted(
            n for n, p in named.items() if p.grad is not None and not torch.isfinite(p.grad).all()
        )
        sites = diagnose()
        if reason is None:
            reason = "non-finite loss" if not math.isfinite(loss) else "non-finite gradient"
        self.last_sites = sites + [f"param:{name} (gradient)" for name in params]
        self.last_reason = f"step {step}: {reason} (loss {loss})"
        self.last_message = (
            f"step {step}: {reason}; loss {loss}; non-finite gradients in "
            f"{params or 'no parameter'}; sites: {sites or 'none found'}"
        )
        if self.log is not None:
            self.log.write(
                {
                    "step": step,
                    "loss": loss,
                    "reason": reason,
                    "params": " ".join(params),
                    "sites": " ".join(sites),
                }
            )
        return self.last_message

    def error(
        self, checkpoint: str | None = None, kept_step: int | None = None
    ) -> NonFiniteLossError:
        """The :class:`NonFiniteLossError` that stops the run; ``checkpoint``: where the last
        good state is (``None``: nowhere); ``kept_step``: the good step whose starting
        parameters it holds (default: the last good step)."""
        kept_step = self.last_good_step if kept_step is None else kept_step
        if checkpoint is None:
            kept = "no checkpoint was written (no run directory)"
        elif kept_step == 0:
            kept = f"{checkpoint} holds the initial parameters (no step was good)"
        else:
            kept = f"{checkpoint} holds the parameters good step {kept_step} started from"
        shown = self.last_sites[:_SITES_SHOWN]
        more = len(self.last_sites) - len(shown)
        where = f" (see {self.log.path})" if self.log is not None else ""
        sites = (
            ", ".join(shown) + (f" and {more} more{where}" if more else "")
            if shown
            else "none found"
        )
        return NonFiniteLossError(
            f"training diverged: {self.consecutive} consecutive bad steps, the last at "
            f"{self.last_reason}; sites involved: {sites}; {kept}. Resume with a lower learning "
            "rate or gradient clipping, or check the data.",
            step=None if self.last_message is None else self.last_good_step + self.consecutive,
            sites=self.last_sites,
            checkpoint=checkpoint,
        )

    def truncate_after(self, step: int) -> None:
        """Forget the logged bad steps after ``step`` (a resumed or restarted run)."""
        if self.log is not None:
            self.log.truncate_after(step)

    def state_dict(self) -> dict[str, int]:
        """The count of bad steps (merged into the checkpoint's top level)."""
        return {"bad_steps": self.bad_steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the count from a checkpoint, whose ``step`` was the last good one."""
        self.bad_steps = state["bad_steps"]
        self.consecutive = 0
        self.last_good_step = state["step"]


class LossExplosion:
    """Notice a loss that grows by orders of magnitude without becoming NaN.

    The rule: the loss has exploded when the median of the last ``window`` good-step losses
    exceeds a reference level by more than ``factor`` times ``max(|first|, |reference|)``,
    where ``first`` is the loss of the first step (computed at the initial parameters, so no
    learning rate has acted on it yet) and the reference is the lower of ``first`` and the
    lowest such median seen so far. Comparing with the first loss catches a learning rate so
    high that the first update already throws the loss up by orders of magnitude, however it
    moves afterwards; comparing with the lowest level catches a run that first learns and
    then blows up. The medians make one extreme sample (common with score-function
    estimators) no explosion, and the margin is relative, so the rule reads the same for
    losses of any scale and sign. It is checked once ``window`` good steps have been taken,
    and reported once.

    :param float factor: how far above the reference, in magnitudes, the loss may go.
    :param int window: good steps whose median loss is compared.
    """

    def __init__(self, factor: float = 1e3, window: int = 5) -> None:
        if not factor > 0:
            raise ValueError(f"factor must be positive, got {factor!r}")
        if not (isinstance(window, int) and window >= 1):
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.factor, self.window = float(factor), window
        self.first: float | None = None
        self.recent: list[float] = []
        self.lowest = math.inf
        self.exploded_at: int | None = None

    def observe(self, step: int, loss: float) -> str | None:
        """Record the loss of a good step; returns a one-line warning the first time the loss
        has exploded, else ``None``."""
        if self.first is None:
            self.first = loss
        self.recent = (self.recent + [loss])[-self.window :]
        if len(self.recent) < self.window:
            return None
        level = statistics.median(self.recent)
        self.lowest = min(self.lowest, level)
        reference = min(self.first, self.lowest)
        margin = self.factor * max(abs(self.first), abs(reference))
        if self.exploded_at is not None or level - reference <= margin:
            return None
        self.exploded_at = step
        return (
            f"the loss exploded: at step {step} its median over the last {self.window} "
            f"steps is {level:.4g}, more than {self.factor:g} times the magnitude of "
            f"{reference:.4g} (its first or lowest level) above it; the learning rate is "
            "probably too high and the results are not meaningful"
        )

    def state_dict(self) -> dict[str, Any]:
        """The losses seen so far, as plain values."""
        return {
            "first": self.first,
            "recent": list(self.recent),
            "lowest": self.lowest,
            "exploded_at": self.exploded_at,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s losses."""
        self.first, self.recent = state["first"], list(state["recent"])
        self.lowest, self.exploded_at = state["lowest"], state["exploded_at"]


__all__ = ["BadStepGuard", "LossExplosion", "NonFiniteLossError", "invalid_parameter", "raised_at"]
