"""Where and when a run's checkpoints are written, and which are kept.

The file format (atomic writes, ``weights_only`` loading, constraint and random-state encoding)
lives in :mod:`probnets.checkpoint` and is re-exported here; this module decides the policy:

- ``<out_dir>/last.pt`` is rewritten every ``every`` steps and at the end of the run, and is
  what ``resume=True`` continues from;
- with ``keep > 0`` a copy of each periodic checkpoint is also kept as
  ``<out_dir>/checkpoints/step-<step>.pt``, the ``keep`` most recent ones, older ones deleted.
  Copies are written atomically too, so every file on disk is complete, and the temporary
  files of writes a kill interrupted are removed when the next run starts
  (:meth:`Checkpointer.remove_orphans`).

A write that fails (a full disk) raises :class:`CheckpointWriteError` naming the file and
leaves the previous checkpoint there as it was.
"""

import errno
import os
import re
import shutil
from collections.abc import Mapping
from typing import Any, Literal

from probnets.checkpoint import (
    FORMAT_VERSION,
    decode_constraint,
    encode_constraint,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from probnets.files import atomic_path, remove_orphans

CHECKPOINT_NAME = "last.pt"
KEPT_DIRECTORY = "checkpoints"
_KEPT_PATTERN = re.compile(r"^step-(\d+)\.pt$")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (``errno`` says why, ``filename`` names the file);
    the previous checkpoint at that path is intact."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class Checkpointer:
    """The checkpoint policy of one run directory.

    :param out_dir: the run directory (``None``: no checkpoints unless a path is given).
    :param int every: steps between periodic checkpoints (``None``: only at the end).
    :param int keep: how many step-numbered copies to keep besides ``last.pt`` (0: none).
    """

    def __init__(
        self, out_dir: str | os.PathLike[str] | None, every: int | None = None, keep: int = 0
    ) -> None:
        self.out_dir = None if out_dir is None else os.fspath(out_dir)
        self.every = every
        self.keep = keep

    @property
    def path(self) -> str | None:
        """``<out_dir>/last.pt``, or ``None`` without a run directory."""
        return None if self.out_dir is None else os.path.join(self.out_dir, CHECKPOINT_NAME)

    def resume_path(self, resume: Literal[True] | str | os.PathLike[str]) -> str:
        """The checkpoint ``resume`` names: ``True`` for :attr:`path`, else a path."""
        if resume is not True:
            return os.fspath(resume)
        if self.path is None:
            raise ValueError("resume=True needs out_dir (the run directory holding last.pt)")
        return self.path

    def due(self, step: int, last: bool) -> bool:
        """Whether a checkpoint is written after ``step`` (``last``: the run's final step)."""
        if self.out_dir is None:
            return False
        return last or bool(self.every and step % self.every == 0)

    def write(self, state: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> str:
        """Write ``state`` atomically to ``path`` (default :attr:`path`) and apply retention."""
        path = os.fspath(path) if path is not None else self.path
        if path is None:
            raise ValueError("no checkpoint path: pass path= or give the Trainer an out_dir")
        try:
            save_checkpoint(path, state)
            if self.keep and path == self.path:
                self._keep_copy(path, state["step"])
        except OSError as error:
            reason = error.strerror or os.strerror(error.errno or errno.EIO)
            raise CheckpointWriteError(
                error.errno,
                f"cannot write the checkpoint {path}: {reason}; the previous "
                "checkpoint there is intact",
                path,
            ) from error
        return path

    def remove_orphans(self) -> list[str]:
        """Delete the temporary files that writes interrupted by a kill left in the run
        directory and its ``checkpoints/``; returns their paths."""
        if self.out_dir is None:
            return []
        return remove_orphans(self.out_dir) + remove_orphans(
            os.path.join(self.out_dir, KEPT_DIRECTORY)
        )

    def kept(self) -> list[str]:
        """The retained step-numbered checkpoints, oldest first."""
        directory = os.path.join(self.out_dir, KEPT_DIRECTORY) if self.out_dir else None
        if directory is None or not os.path.isdir(directory):
            return []
        found = sorted(
            (int(m.group(1)), name)
            for name in os.listdir(directory)
            if (m := _KEPT_PATTERN.match(name))
        )
        return [os.path.join(directory, name) for _, name in found]

    def _keep_copy(self, path: str, step: int) -> None:
        assert self.out_dir is not None  # path is self.path, in out_dir
        directory = os.path.join(self.out_dir, KEPT_DIRECTORY)
        os.makedirs(directory, exist_ok=True)
        with atomic_path(os.path.join(directory, f"step-{step:08d}.pt")) as tmp:
            shutil.copyfile(path, tmp)
        for old in self.kept()[: -self.keep]:
            os.unlink(old)


__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT_VERSION",
    "CheckpointWriteError",
    "Checkpointer",
    "decode_constraint",
    "encode_constraint",
    "get_rng_state",
    "load_checkpoint",
    "save_checkpoint",
    "set_rng_state",
]
