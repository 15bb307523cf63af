"""What a ``probnets train NAME`` command is made of.

A :class:`Task` adds its own command-line options, builds everything a
:class:`~probnets.train.Trainer` needs from the parsed arguments (:class:`TaskRun`), and writes
its figures when the run ends. The command line (:mod:`probnets.cli`) does the rest: common
flags, seeding, device selection, the run directory, resuming.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

_REGISTRY = {}


@dataclass
class TaskRun:
    """Everything a training run needs; ``model_fn is None`` means a deterministic objective."""

    data: object
    model_fn: Optional[Callable] = None
    guide_fn: Optional[Callable] = None
    loss: object = None
    objective_fn: Optional[Callable] = None
    module: object = None
    param_groups: dict = field(default_factory=dict)
    schedules: list = field(default_factory=list)
    metrics_fn: Optional[Callable] = None
    eval_fn: Optional[Callable] = None
    config: dict = field(default_factory=dict)
    data_source: str = ""
    extras: dict = field(default_factory=dict)  # task-private objects for finish()


class Task:
    """A trainable model family on the command line."""

    name = None
    help = ""
    default_steps = 1000
    default_batch_size = 64
    default_lr = 1e-3
    default_clip_norm = None

    def add_arguments(self, parser):
        """Add the task's own options to its ``argparse`` sub-parser."""

    def build(self, args, device):
        """Return a :class:`TaskRun` for the parsed ``args`` on ``device``."""
        raise NotImplementedError

    def finish(self, run, result, args):
        """Write figures and summaries into ``args.out`` after training."""

    # ``probnets eval NAME --checkpoint C ...``; tasks without evaluation keep the defaults.
    supports_eval = False

    def add_eval_arguments(self, parser):
        """Add options of ``probnets eval NAME`` (``--checkpoint`` and ``--json`` are common)."""

    def evaluate(self, args):
        """Evaluate ``args.checkpoint``; return a dict of results (printed, or JSON with
        ``--json``)."""
        raise NotImplementedError


def load_npz_arrays(path, names):
    """The arrays ``names`` of the ``--data`` file ``path``, or a command-line error naming
    what is missing and what the file holds."""
    with np.load(path) as stored:
        missing = set(names) - set(stored.files)
        if missing:
            raise SystemExit(f"probnets: error: --data {path} lacks {sorted(missing)} "
                             f"(has {stored.files})")
        return tuple(stored[name] for name in names)


def register(task_class):
    """Class decorator adding a :class:`Task` to ``probnets train``."""
    task = task_class()
    if not task.name or task.name in _REGISTRY:
        raise ValueError(f"task name {task.name!r} is missing or already registered")
    _REGISTRY[task.name] = task
    return task_class


def tasks():
    return dict(_REGISTRY)
