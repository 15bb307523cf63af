"""Files that are complete or absent: atomic writes with the user's permissions, and the
removal of what a killed writer left behind.

:func:`atomic_write` writes to a temporary file ``.tmp-*`` in the target's directory, flushes
it to disk, gives it the permissions a new file gets under the process's umask
(:func:`tempfile.mkstemp` creates files readable by their owner only), and renames it over the
target with :func:`os.replace`, which is atomic on POSIX and Windows: a reader, or a run
resumed after a kill, sees the previous file or the new one, never a truncated one. A process
killed during the write leaves its ``.tmp-*`` file behind; :func:`remove_orphans` deletes such
files, and a run calls it on its directory when it starts.
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO, Literal, TextIO, overload

TEMPORARY_PREFIX = ".tmp-"
"""The name prefix of the temporary files of :func:`atomic_write`."""


def umask() -> int:
    """The process's file-mode creation mask."""
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permission bits :func:`open` gives a new file: ``0o666`` less the umask."""
    return 0o666 & ~umask()


@overload
def atomic_write(
    path: str | os.PathLike[str], mode: Literal["w"] = ..., **open_arguments: Any
) -> contextlib.AbstractContextManager[TextIO]: ...


@overload
def atomic_write(
    path: str | os.PathLike[str], mode: Literal["wb"], **open_arguments: Any
) -> contextlib.AbstractContextManager[BinaryIO]: ...


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "w", **open_arguments: Any
) -> Iterator[Any]:  # the overloads above type the file by its mode
    """Open a temporary file to be renamed to ``path`` when the block ends without error.

    ``mode`` is ``"w"`` or ``"wb"``; further arguments go to :func:`open` (``newline``,
    ``encoding``). The directory is created if needed. On an error (disk full...) the
    temporary file is removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **open_arguments) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """A temporary path for writers that take a file name (``fig.savefig``), renamed to
    ``path`` when the block ends without error (see :func:`atomic_write`)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=TEMPORARY_PREFIX, suffix=os.path.splitext(path)[1], dir=directory
    )
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_orphans(directory: str | os.PathLike[str]) -> list[str]:
    """Delete the temporary files of interrupted :func:`atomic_write` calls in ``directory``
    (not recursively); returns their paths. Call it only when no other process writes
    there."""
    if not os.path.isdir(directory):
        return []
    removed = []
    for entry in os.scandir(directory):
        if entry.name.startswith(TEMPORARY_PREFIX) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(entry.path)
    return removed


__all__ = [
    "TEMPORARY_PREFIX",
    "atomic_path",
    "atomic_write",
    "new_file_mode",
    "remove_orphans",
    "umask",
]
