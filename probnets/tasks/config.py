"""Typed configurations of training and evaluation runs.

A run is described by one dataclass: :class:`RunConfig` holds the settings every task shares
(steps, optimiser, precision, checkpoints, run directory...) and each task subclasses it with
its own options and its own defaults, e.g. :class:`probnets.tasks.VAEConfig`. The config's
type identifies the task, so ``run_task(VAEConfig(steps=300, hidden_dim=32))`` needs nothing
else. Evaluation of a checkpoint is described the same way by :class:`EvalConfig`.

Every field is declared with :func:`setting`, whose metadata carries the help text and the
value check. ``__post_init__`` runs the checks, so a config that exists is valid; a bad value
raises :class:`ConfigError` (a ``ValueError``) naming the field. The command line builds its
``probnets train NAME`` options from the same fields (:mod:`probnets.cli`), so the two cannot
drift.
"""

import argparse
import dataclasses
import math
import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Optional, TypeVar

import torch

from probnets.train import parse_schedule

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRECISIONS = ("32", "bf16", "16-mixed")
PrecisionName = Literal["32", "bf16", "16-mixed"]
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class ConfigError(ValueError):
    """A configuration value that cannot be used.

    :param str field: the config field at fault.
    :param str message: what is wrong. Other fields may be referred to as ``{name}``:
        ``str(error)`` shows them as field names, :meth:`render` in another spelling (the
        command line shows its flags).
    """

    def __init__(self, field: str, message: str) -> None:
        self.field, self.template = field, message
        super().__init__(self.render(str))

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with every ``{name}`` placeholder replaced by ``spell(name)``."""
        return spell_fields(self.template, spell)


def spell_fields(text: str, spell: Callable[[str], str]) -> str:
    """``text`` with every ``{name}`` placeholder (a field name, as in error messages and help
    texts) replaced by ``spell(name)``."""
    return _PLACEHOLDER.sub(lambda match: spell(match.group(1)), text)


class UnsupportedSettingError(ConfigError):
    """A valid setting that this task or this machine cannot run (e.g. ``compile=True`` for an
    SVI model, bfloat16 autocast on a device without it)."""


# ---------------------------------------------------------------------------- value checks
# A check takes (name, value) and returns None, or raises ConfigError naming ``name``.
Check = Callable[[str, Any], None]


def _described(check: Check, description: str) -> Check:
    """``check`` carrying ``description`` (what :func:`flag_type`'s messages say is expected)."""
    setattr(check, "description", description)  # a function attribute: not in Check's type
    return check


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer_at_least(minimum: int) -> Check:
    """Check: an ``int`` >= ``minimum`` ("a positive integer" for 1)."""
    description = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def check(name: str, value: Any) -> None:
        if not (_is_int(value) and value >= minimum):
            raise ConfigError(name, f"{name} must be {description}, got {value!r}")

    return _described(check, description)


def number_in(
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    description: str | None = None,
) -> Check:
    """Check: a finite number in the interval, e.g. ``number_in(0, low_open=True)`` for > 0."""
    if description is None:
        description = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(name: str, value: Any) -> None:
        ok = _is_number(value) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low)
        ok = ok and (value < high if high_open else value <= high)
        if not ok:
            raise ConfigError(name, f"{name} must be {description}, got {value!r}")

    return _described(check, description)


positive_int = integer_at_least(1)
non_negative_int = integer_at_least(0)
positive = number_in(0, low_open=True, description="a positive number")
non_negative = number_in(0, description="a number >= 0")
# The models' own wording ("dropout must be in [0, 1)"), so both kinds of user read one message.
dropout_rate = number_in(0, 1, high_open=True)
probability = number_in(0, 1, low_open=True, high_open=True)


_Number = TypeVar("_Number", int, float)


def flag_type(kind: type[_Number], check: Check) -> Callable[[str], _Number]:
    """An argparse ``type`` reading one ``kind`` (``int`` or ``float``) and applying ``check``
    (one of the checks above), for commands whose options are not config fields:
    ``parser.add_argument("--samples", type=flag_type(int, positive_int))``."""
    description = getattr(check, "description", f"a valid {kind.__name__}")

    def parse(text: str) -> _Number:
        try:
            value = kind(text)
            check("value", value)
        except ValueError:  # ConfigError is one
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        return value

    parse.__name__ = kind.__name__
    return parse


finite = number_in(description="a finite number")


def one_of(choices: Collection[Any]) -> Check:
    """Check: one of ``choices``."""

    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ConfigError(name, f"{name} must be one of {tuple(choices)}, got {value!r}")

    return check


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(name, f"{name} must be True or False, got {value!r}")


def positive_ints(name: str, value: Any) -> None:
    """Check: a non-empty tuple of positive integers (lists are stored as tuples)."""
    if not (isinstance(value, tuple) and value and all(_is_int(v) and v > 0 for v in value)):
        raise ConfigError(
            name, f"{name} must be a non-empty sequence of positive integers, got {value!r}"
        )


def comma_separated_ints(text: str) -> tuple[int, ...]:
    """``"200,200"`` -> ``(200, 200)``; ``ValueError`` for anything else."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise ValueError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _device(name: str, value: Any) -> None:
    if not (isinstance(value, str) and _DEVICE.match(value)):
        raise ConfigError(
            name, f"{name} must be one of auto, cpu, cuda, cuda:N, mps; got {value!r}"
        )


def _schedule(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(name, f"{name} must be a schedule string, got {type(value).__name__}")
    try:
        parse_schedule(value, 1)
    except ValueError as error:
        raise ConfigError(name, f"{name}: {error}") from None


def _path(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(name, f"{name} must be a path, got {type(value).__name__}")


# ---------------------------------------------------------------------------- fields


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str | None,
    check: Check | None = None,
    choices: Collection[Any] | None = None,
    flag: str | None = None,
    nullable: bool | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A config field with its help text and value check.

    :param default: the default value (omit for a required field).
    :param help: one line for ``-h``; ``{default}`` is replaced by the field's default
        (``none`` for ``None``); None for a field whose name says enough.
    :param check: ``check(name, value)`` raising :class:`ConfigError`; with ``choices`` and
        no check, membership is checked.
    :param choices: the allowed values (also the command line's choices).
    :param str flag: the command-line flag when it is not ``--`` + the name with dashes; a
        ``--no-...`` flag of a ``True``-by-default boolean turns it off.
    :param bool nullable: whether ``None`` is allowed (default: when the default is None).
    :param parse: how the command line reads the value from one argument (``text -> value``,
        raising ``ValueError``), when the field's type alone does not say.
    :returns: the :func:`dataclasses.field` (typed ``Any``, so that it may stand as the
        default of a field of any type).
    """
    if check is None and choices is not None:
        check = one_of(tuple(choices))
    if check is None and isinstance(default, bool):
        check = _boolean
    metadata = {
        "help": help,
        "check": check,
        "choices": choices,
        "flag": flag,
        "nullable": default is None if nullable is None else nullable,
        "parse": parse,
    }
    return dataclasses.field(default=default, metadata=metadata)


def _check_fields(config: "_Checked") -> None:
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        if value is None and spec.metadata.get("nullable"):
            continue
        check = spec.metadata.get("check")
        if check is not None:
            check(spec.name, value)


class _Checked:
    """Runs every field's check after ``__init__``, then the class's :meth:`validate`."""

    # Every subclass is a dataclass.
    __dataclass_fields__: ClassVar[dict[str, "dataclasses.Field[Any]"]]

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):  # sequences are stored as tuples, paths as str
            value = getattr(self, spec.name)
            if isinstance(value, list):
                setattr(self, spec.name, tuple(value))
            elif isinstance(value, os.PathLike):
                setattr(self, spec.name, os.fspath(value))
        self.normalize()
        _check_fields(self)
        self.validate()

    def normalize(self) -> None:
        """Bring accepted spellings to the canonical value (lists to tuples...)."""

    def validate(self) -> None:
        """Checks that involve more than one field (raise :class:`ConfigError`)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples as lists):
        ``type(config)(**config.to_dict()) == config``."""
        return {spec.name: _plain(getattr(self, spec.name)) for spec in dataclasses.fields(self)}


@dataclass(kw_only=True)
class RunConfig(_Checked):
    """Settings every training run shares. Subclass it per task (see :mod:`probnets.tasks`);
    a subclass changes a shared default with :func:`retune`. Each field's help is in its
    metadata (``dataclasses.fields(config)``) and in ``probnets train NAME -h``.

    ``resumable_fields`` are the settings a resumed run may change (run length, schedule of
    logging and checkpoints, where and how fast it runs, and the learning rate and gradient
    clipping, the remedies of a diverged run); every other one must equal the run's
    ``config.json``.
    """

    resumable_fields: ClassVar[frozenset[str]] = frozenset(
        {
            "steps",
            "out",
            "resume",
            "device",
            "threads",
            "compile",
            "progress",
            "log_every",
            "eval_every",
            "checkpoint_every",
            "max_bad_steps",
            "tensorboard",
            "lr",
            "clip_norm",
        }
    )

    steps: int = setting(
        1000, help="total optimisation steps (default {default})", check=positive_int
    )
    batch_size: int = setting(64, help="examples per step (default {default})", check=positive_int)
    lr: float = setting(1e-3, help="learning rate (default {default})", check=positive)
    cv_lr: Optional[float] = setting(
        None,
        check=positive,
        help="learning rate of baselines and control variates (parameters named cv.* or "
        "*baseline*); default: {lr}",
    )
    weight_decay: float = setting(
        0.0,
        check=non_negative,
        help="decoupled weight decay (as AdamW's) of the weight matrices; biases and norm gains "
        "are not decayed (default 0)",
    )
    clip_norm: Optional[float] = setting(
        None,
        check=positive,
        nullable=True,
        help="clip each parameter group's gradient norm to this value, or none (default {default})",
    )
    lr_schedule: str = setting(
        "constant",
        check=_schedule,
        help="constant | cosine | exp:FINAL_FACTOR | warmup:N[,SCHEDULE]",
    )
    device: str = setting("auto", check=_device, help="auto | cpu | cuda[:N]")
    dtype: str = setting(
        "float32", choices=sorted(DTYPES), help="floating-point precision of model and data"
    )
    precision: PrecisionName = setting(
        "32",
        choices=list(PRECISIONS),
        help="32 (default); bf16 autocast; or 16-mixed: float16 autocast with dynamic loss scaling",
    )
    compile: bool = setting(
        False,
        help="torch.compile the objective of deterministic models (not SVI models: Pyro's "
        "effect handlers break the graph at every site)",
    )
    threads: Optional[int] = setting(
        None, check=positive_int, help="torch intra-op threads (default: torch's choice)"
    )
    seed: int = setting(0, check=non_negative_int, help="random seed")
    out: Optional[str] = setting(
        None,
        check=_path,
        help="run directory for checkpoints (*.pt), metrics.csv and figures "
        "(default runs/NAME-TIMESTAMP)",
    )
    resume: bool = setting(False, help="continue the run in {out} from its last checkpoint")
    checkpoint_every: int = setting(
        500,
        check=positive_int,
        help="steps between checkpoints (default 500; always one at the end)",
    )
    eval_every: Optional[int] = setting(
        None, check=positive_int, help="steps between held-out evaluations (default: steps / 10)"
    )
    log_every: int = setting(
        10, check=positive_int, help="steps between rows of metrics.csv (default 10)"
    )
    max_bad_steps: int = setting(
        10, check=positive_int, help="consecutive non-finite steps tolerated before stopping"
    )
    progress: bool = setting(True, flag="--no-progress", help="hide the progress bar")
    tensorboard: bool = setting(
        False, help="also log to OUT/tensorboard (needs the tensorboard package)"
    )

    def normalize(self) -> None:
        if isinstance(self.dtype, torch.dtype):  # accept torch.float64 as well as "float64"
            names = {dtype: name for name, dtype in DTYPES.items()}
            self.dtype = names.get(self.dtype, str(self.dtype))

    @property
    def torch_dtype(self) -> torch.dtype:
        """The :class:`torch.dtype` of :attr:`dtype`."""
        return DTYPES[self.dtype]

    @property
    def eval_interval(self) -> int:
        """Steps between evaluations: :attr:`eval_every`, or a tenth of the run."""
        return self.eval_every or max(self.steps // 10, 1)


@dataclass(kw_only=True)
class EvalConfig(_Checked):
    """Evaluation of a trained checkpoint; tasks with ``probnets eval`` subclass it."""

    checkpoint: str = setting(help="a checkpoint (*.pt) of this model", check=_path)
    device: str = setting("auto", check=_device, help="auto | cpu | cuda[:N]")


def retune(name: str, default: Any) -> Any:
    """Redeclare the shared :class:`RunConfig` field ``name`` with a task's own default,
    keeping its help and check: ``steps: int = retune("steps", 2000)``."""
    spec = _RUN_FIELDS[name]
    return dataclasses.field(default=default, metadata=spec.metadata)


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


def common_field_names() -> tuple[str, ...]:
    """Names of the fields every :class:`RunConfig` has."""
    return tuple(_RUN_FIELDS)


_RUN_FIELDS = {spec.name: spec for spec in dataclasses.fields(RunConfig)}
