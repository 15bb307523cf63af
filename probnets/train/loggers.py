"""Where a run's metrics go: a small logger protocol, CSV files by default, TensorBoard on
request.

A logger is any object with three methods (:class:`Logger`)::

    log_metrics(step, metrics)   # {name: number} at a training step
    log_config(config)           # the run's settings, once at the start, as plain values
    close()

The Trainer sends training rows with plain names (``loss``, ``lr``, ``grad_norm[default]``,
what :class:`~probnets.train.StepMetrics` adds) and evaluation rows with names prefixed by
``eval/``, the convention of TensorBoard, MLflow and Weights & Biases dashboards. A logger that
also has ``truncate_after(step)`` is told to forget what was logged after ``step``: everything
(``step=0``) when a run starts afresh in a directory a killed run left logs in, and from the
checkpoint's step on when a run resumes (the Trainer then logs the checkpoint's own row again
and repeats its evaluation), so the record reads as if the run had never stopped. A logger
that buffers also has ``flush()``, called before every checkpoint, so what a checkpoint's
resumed run keeps was on disk when the checkpoint was written.

Any other tracker (MLflow, Weights & Biases...) is a class with these three methods, passed
as ``TrainConfig(loggers=("csv", MyLogger(...)))``; ``guides/training.md`` writes one.
"""

import csv
import io
import json
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

from probnets.files import atomic_write

if TYPE_CHECKING:  # annotations only: the config imports this module; tensorboard is optional
    from torch.utils.tensorboard import SummaryWriter

    from probnets.train.config import TrainConfig

EVAL_PREFIX = "eval/"

LoggerName: TypeAlias = Literal["csv", "tensorboard"]
"""The loggers :class:`~probnets.train.TrainConfig` knows by name."""


@runtime_checkable
class Logger(Protocol):
    """What the Trainer calls on each of its loggers (rank 0 only)."""

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def log_config(self, config: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class CsvFile:
    """Rows of values appended to one CSV file; the header grows when new keys appear.

    Each row is appended with one ``write`` of a complete line, and a rewrite (a grown header,
    a truncation) replaces the file atomically, so a process killed at any moment leaves
    whole rows; a line cut short all the same (a full disk) is dropped when the file is next
    truncated. :meth:`truncate_after` drops the rows with a ``step`` after the given one.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.fields: list[str] = []
        if os.path.exists(self.path):
            with open(self.path, newline="") as f:
                self.fields = next(csv.reader(f), [])

    def _rows(self) -> list[dict[str, str]]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, newline="") as f:
            text = f.read()
        if not text.endswith("\n"):  # an interrupted append: drop the partial line
            text = text[: text.rfind("\n") + 1]
        return list(csv.DictReader(io.StringIO(text, newline="")))

    def _rewrite(self, rows: Sequence[Mapping[str, Any]]) -> None:
        with atomic_write(self.path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: Mapping[str, Any]) -> None:
        """Append ``row`` (``{column: value}``; missing columns are left empty)."""
        new = [k for k in row if k not in self.fields]
        if new:
            rows = self._rows()
            self.fields = self.fields + new
            self._rewrite(rows)
        line = io.StringIO(newline="")
        csv.DictWriter(line, fieldnames=self.fields, restval="").writerow(row)
        with open(self.path, "a", newline="") as f:
            f.write(line.getvalue())

    def truncate_after(self, step: int) -> None:
        """Keep the rows of steps up to ``step``; the file is removed when none is left."""
        if not os.path.exists(self.path):
            self.fields = []
            return
        kept = [r for r in self._rows() if (s := _step_of(r)) is not None and s <= step]
        if kept:
            self._rewrite(kept)
        else:
            os.unlink(self.path)
            self.fields = []


def _step_of(row: Mapping[str, str]) -> int | None:
    try:
        return int(float(row["step"]))
    except (KeyError, TypeError, ValueError):
        return None


class CsvLogger:
    """``metrics.csv`` (training rows) and ``eval.csv`` (``eval/`` rows, prefix dropped) in
    ``out_dir``, one row per logged step; the settings go to ``train_config.json``.

    :param out_dir: the run directory.
    """

    STREAMS = ("metrics", "eval")

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = os.fspath(out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        self.files: dict[str, CsvFile] = {}

    def _file(self, stream: str) -> CsvFile:
        if stream not in self.files:
            self.files[stream] = CsvFile(os.path.join(self.out_dir, f"{stream}.csv"))
        return self.files[stream]

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        train = {k: v for k, v in metrics.items() if not k.startswith(EVAL_PREFIX)}
        evaluation = {
            k[len(EVAL_PREFIX) :]: v for k, v in metrics.items() if k.startswith(EVAL_PREFIX)
        }
        for stream, values in (("metrics", train), ("eval", evaluation)):
            if values:
                self._file(stream).write({"step": step, **values})

    def log_config(self, config: Mapping[str, Any]) -> None:
        with atomic_write(os.path.join(self.out_dir, "train_config.json")) as f:
            json.dump(config, f, indent=2, default=repr)

    def truncate_after(self, step: int) -> None:
        """Drop the rows after ``step`` (all of them for ``step=0``, a fresh start)."""
        for stream in self.STREAMS:
            self._file(stream).truncate_after(step)

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Scalars in TensorBoard event files under ``log_dir``; the settings as hparams.

    Needs the ``tensorboard`` package. The settings :meth:`log_config` receives are written
    for TensorBoard's HPARAMS tab, flattened to scalar and string values
    (:func:`flatten_config`), with ``loss`` declared as the run's metric. On resume, events
    after the checkpoint's step are purged (``SummaryWriter(purge_step=...)``), as the CSV rows
    are.

    :param log_dir: the event-file directory (the Trainer uses ``out_dir/tensorboard``).
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        # Imported on use: TensorBoard is an optional dependency.
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError as error:
            raise ImportError(
                "the 'tensorboard' logger needs the tensorboard package (pip install tensorboard)"
            ) from error
        self._writer_class = SummaryWriter
        self._hparams_summaries = hparams
        self.log_dir = os.fspath(log_dir)
        self._purge_step: int | None = None
        self._writer: SummaryWriter | None = None

    @property
    def writer(self) -> "SummaryWriter":
        """The :class:`~torch.utils.tensorboard.writer.SummaryWriter`, opened on first use."""
        if self._writer is None:
            self._writer = self._writer_class(self.log_dir, purge_step=self._purge_step)
        return self._writer

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            if isinstance(value, numbers.Real):
                self.writer.add_scalar(key, value, step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        # The three summaries add_hparams writes, but into this run's own event file (it
        # would open a sub-run) and declaring the logged loss as the metric.
        file_writer = self.writer.file_writer
        assert file_writer is not None  # opened by the SummaryWriter's constructor
        for summary in self._hparams_summaries(flatten_config(config), {"loss": 0.0}):
            file_writer.add_summary(summary)

    def truncate_after(self, step: int) -> None:
        """Drop the events after ``step``: the next writer purges them."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._purge_step = step + 1

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def flatten_config(
    config: Mapping[str, Any], prefix: str = ""
) -> dict[str, bool | int | float | str]:
    """``config`` with nested dicts flattened to ``"outer/inner"`` keys and every value a
    bool, number or string (``None`` becomes ``"None"``, lists their JSON)."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=name + "/"))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif value is None:
            flat[name] = "None"
        else:
            flat[name] = json.dumps(value, default=repr)
    return flat


def make_loggers(config: "TrainConfig", out_dir: str | os.PathLike[str] | None) -> list[Logger]:
    """The loggers ``config.loggers`` / ``config.tensorboard`` ask for, for ``out_dir``.

    Named file loggers need a run directory and are left out without one; logger objects are
    used as they are.
    """
    names: list[str] = [x for x in config.loggers if isinstance(x, str)]
    if config.tensorboard and "tensorboard" not in names:
        names.append("tensorboard")
    loggers: list[Logger] = []
    if out_dir is not None:
        factories: dict[str, Callable[[], Logger]] = {
            "csv": lambda: CsvLogger(out_dir),
            "tensorboard": lambda: TensorBoardLogger(os.path.join(out_dir, "tensorboard")),
        }
        loggers += [factories[name]() for name in dict.fromkeys(names)]
    return loggers + [x for x in config.loggers if not isinstance(x, str)]


__all__ = [
    "EVAL_PREFIX",
    "CsvFile",
    "LoggerName",
    "CsvLogger",
    "Logger",
    "TensorBoardLogger",
    "flatten_config",
    "make_loggers",
]
