"""The bad-step guard: skip updates with a non-finite loss or gradient, and stop a run that
keeps producing them.

One NaN in a long run (a rare extreme sample, a score-function term that overflows) should
cost one skipped step, not the run; a model that has diverged should stop with a message that
says where, not train on NaNs. A skipped step is counted, written to ``bad_steps.csv`` with the
parameters whose gradient is non-finite and the sample sites whose value or density is, and
after ``max_bad_steps`` consecutive ones :class:`NonFiniteLossError` is raised. Checkpoints are
written only after good steps, so the last one on disk is the last good state.
"""

import os

import torch

from probnets.train.loggers import CsvFile


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive steps with a non-finite loss or gradient."""


class BadStepGuard:
    """Counts bad steps, logs them and stops the run after too many in a row.

    :param int max_bad_steps: consecutive bad steps tolerated.
    :param str log_path: CSV file for one row per bad step (``None``: not written).
    """

    def __init__(self, max_bad_steps=10, log_path=None):
        self.max_bad_steps = max_bad_steps
        self.log = CsvFile(log_path) if log_path is not None else None
        self.bad_steps = 0
        self.consecutive = 0

    def good(self):
        self.consecutive = 0

    def bad(self, step, loss, named, diagnose, checkpoint=None):
        """Record a bad step; raise :class:`NonFiniteLossError` if it is one too many.

        :param named: the ``{name: parameter}`` of the step, to name the non-finite gradients.
        :param diagnose: a callable returning the non-finite sample sites.
        :param checkpoint: path of the run's checkpoint, named in the error if it exists.
        :returns: a one-line description of the step.
        """
        self.bad_steps += 1
        self.consecutive += 1
        params = sorted(n for n, p in named.items()
                        if p.grad is not None and not torch.isfinite(p.grad).all())
        sites = diagnose()
        message = (f"step {step}: loss {loss}; non-finite gradients in "
                   f"{params or 'no parameter'}; non-finite sites: {sites or 'none found'}")
        if self.log is not None:
            self.log.write({"step": step, "loss": loss, "params": " ".join(params),
                            "sites": " ".join(sites)})
        if self.consecutive >= self.max_bad_steps:
            kept = (f"the last good checkpoint is {checkpoint}"
                    if checkpoint and os.path.exists(checkpoint) else "no checkpoint was written")
            raise NonFiniteLossError(
                f"stopping: {self.consecutive} consecutive steps with a non-finite loss or "
                f"gradient (last at {message}); {kept}. Try a lower learning rate, gradient "
                "clipping, or check the data.")
        return message

    def state_dict(self):
        return {"bad_steps": self.bad_steps}

    def load_state_dict(self, state):
        self.bad_steps = state["bad_steps"]
        self.consecutive = 0


__all__ = ["BadStepGuard", "NonFiniteLossError"]
