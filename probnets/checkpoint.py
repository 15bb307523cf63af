"""The checkpoint file format: files that survive a kill and load with ``weights_only=True``.

This module knows how a checkpoint is written and read, not what a training run puts in it
(that is :class:`probnets.train.Trainer`'s business), so models can read their own
checkpoints (``Model.load(path)``) without depending on the training loop.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dicts, so it can be
loaded with ``weights_only=True`` (no pickled code is executed on load). Objects that are not of
those kinds are encoded here:

- Pyro parameter constraints become small tuples (``("interval", 0.0, 1.0)``) and are decoded
  back to :mod:`torch.distributions.constraints` objects;
- the NumPy and Python random states become tensors / nested lists.

Writes go to a temporary file in the same directory, are flushed to disk, and are then renamed
over the target (:func:`os.replace` is atomic on POSIX and Windows), so a process killed mid-write
leaves either the previous checkpoint or the new one, never a truncated file.
"""

import os
import pickle
import random
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from pyro.distributions import constraints
from torch.distributions.constraints import Constraint

from probnets.files import new_file_mode

FORMAT_VERSION = 1
"""Bumped when a key's meaning changes; new keys can be added within a version."""

CHECKPOINT_NAME = "last.pt"
"""A run directory's latest checkpoint, which ``resume`` continues and :func:`probnets.load`
reads when given the directory."""

_SIMPLE_CONSTRAINTS = {
    "real": constraints.real,
    "real_vector": constraints.real_vector,
    "positive": constraints.positive,
    "nonnegative": constraints.nonnegative,
    "unit_interval": constraints.unit_interval,
    "simplex": constraints.simplex,
    "lower_cholesky": constraints.lower_cholesky,
    "positive_definite": constraints.positive_definite,
    "corr_cholesky": constraints.corr_cholesky,
    "ordered_vector": constraints.ordered_vector,
}


def encode_constraint(constraint: Constraint, name: str = "<param>") -> tuple[Any, ...]:
    """Encode a constraint as a tuple that ``weights_only`` loading accepts (a name, then
    numbers); ``name`` is the parameter's, for the error raised on an unknown constraint."""
    for key, known in _SIMPLE_CONSTRAINTS.items():
        if constraint is known:
            return (key,)
    if isinstance(constraint, constraints.independent):
        base = encode_constraint(constraint.base_constraint, name)
        return ("independent", constraint.reinterpreted_batch_ndims) + base
    if isinstance(constraint, constraints.interval):
        return ("interval", float(constraint.lower_bound), float(constraint.upper_bound))
    if isinstance(constraint, constraints.greater_than):
        return ("greater_than", float(constraint.lower_bound))
    if isinstance(constraint, constraints.less_than):
        return ("less_than", float(constraint.upper_bound))
    raise ValueError(
        f"cannot checkpoint parameter {name!r}: its constraint {constraint!r} has no encoding; "
        f"supported are {sorted(_SIMPLE_CONSTRAINTS)} and interval/greater_than/less_than/"
        "independent"
    )


def decode_constraint(code: Sequence[Any]) -> Constraint:
    """Inverse of :func:`encode_constraint`."""
    kind, args = code[0], code[1:]
    if kind in _SIMPLE_CONSTRAINTS:
        return _SIMPLE_CONSTRAINTS[kind]
    if kind == "independent":
        return constraints.independent(decode_constraint(args[1:]), args[0])
    if kind == "interval":
        return constraints.interval(*args)
    if kind == "greater_than":
        return constraints.greater_than(*args)
    if kind == "less_than":
        return constraints.less_than(*args)
    raise ValueError(f"unknown constraint code {code!r} in checkpoint")


def get_rng_state() -> dict[str, Any]:
    """All random states that influence a run: Python, NumPy, torch CPU and CUDA."""
    py_version, py_state, py_gauss = random.getstate()
    # the legacy tuple (the default); numpy's stub also allows the dict of legacy=False
    np_state = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    np_kind, np_keys, np_pos, np_has_gauss, np_cached = np_state
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [
            np_kind,
            torch.from_numpy(np_keys.astype(np.int64)),
            int(np_pos),
            int(np_has_gauss),
            float(np_cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`get_rng_state`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_cached = state["numpy"]
    np.random.set_state(
        (np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_cached)
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())  # mkstemp's 0600, not what the umask gives
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class CheckpointError(ValueError):
    """A file that is not a readable probnets checkpoint (empty, truncated, corrupted, another
    format); the message names the file."""


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | dict[str, str] | None = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    :raises FileNotFoundError: when ``path`` does not exist.
    :raises CheckpointError: when it is empty, unreadable or not a probnets checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.getsize(path) == 0:
        raise CheckpointError(
            f"checkpoint {path!r} is empty (0 bytes): its write never "
            "completed; use an earlier checkpoint or start the run again"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    # torch.load reports truncated or corrupted files as any of these
    except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"checkpoint {path!r} is truncated or corrupted and cannot be "
            f"read ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path!r} is not a probnets checkpoint of format {FORMAT_VERSION} "
            f"(found format {state.get('format') if isinstance(state, dict) else type(state)})"
        )
    return state


__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "decode_constraint",
    "encode_constraint",
    "get_rng_state",
    "load_checkpoint",
    "save_checkpoint",
    "set_rng_state",
]
