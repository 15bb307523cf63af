"""The ``probnets`` command: ``probnets train NAME [options]`` and friends.

Every ``probnets train NAME`` option is a field of the task's config dataclass (see
:mod:`probnets.tasks`): the options shared by every model come from
:class:`~probnets.tasks.RunConfig`, the model's own from its subclass, help text included, so
the command line and ``run_task(config)`` cannot drift. This module parses flags into a
config, calls :func:`~probnets.tasks.run_task` and turns errors into one
``probnets: error: ...`` line, naming the flag of the config field at fault.
``probnets train --help`` lists the models; ``probnets train NAME -h`` a model's options.
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import traceback
import typing
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import probnets.tasks  # noqa: F401  (registers the tasks)
from probnets.tasks import (
    ConfigError,
    EvalConfig,
    RunConfig,
    UnsupportedSettingError,
    evaluate_task,
    load_config,
    run_task,
    tasks,
)
from probnets.tasks import variance as variance_command
from probnets.tasks.config import spell_fields
from probnets.tasks.run import CONFIG_FILE
from probnets.train import (
    CheckpointWriteError,
    NonFiniteLossError,
    distributed,
    parse_schedule,
    resolve_device,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Config = TypeVar("_Config", bound="DataclassInstance")
# where the options of one config go: a parser or one of its argument groups
_ArgumentContainer = argparse.ArgumentParser | argparse._ArgumentGroup


def _int_at_least(minimum: int, description: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _float_above(minimum: float, strict: bool, description: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (value > minimum if strict else value >= minimum) or value == math.inf:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    return parse


_positive_float = _float_above(0.0, True, "a positive number")
_non_negative_float = _float_above(0.0, False, "a number >= 0")


def _clip_norm(text: str) -> float | None:
    """A positive gradient-norm bound, or ``none`` to turn a task's default clipping off."""
    return None if text.lower() == "none" else _positive_float(text)


def _device(text: str) -> str:
    try:
        resolve_device(text)
    except ValueError as error:  # "device ...": name the flag
        raise argparse.ArgumentTypeError(f"--{error}") from None
    return text


def _schedule(text: str) -> str:
    try:
        parse_schedule(text, 1)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


# The shared flags keep the parsers (and so the messages) they had before configs existed;
# every other field is read by its type and checked by its config.
_SHARED_TYPES: dict[str, Callable[[str], Any]] = {
    "steps": _positive_int,
    "batch_size": _positive_int,
    "lr": _positive_float,
    "cv_lr": _positive_float,
    "weight_decay": _non_negative_float,
    "clip_norm": _clip_norm,
    "lr_schedule": _schedule,
    "device": _device,
    "threads": _positive_int,
    "seed": _non_negative_int,
    "checkpoint_every": _positive_int,
    "eval_every": _positive_int,
    "log_every": _positive_int,
    "max_bad_steps": _positive_int,
}
_SHARED_GROUP = "training (common to every model)"


def flag_of(config_class: "type[DataclassInstance]", name: str) -> str:
    """The command-line flag of field ``name`` of ``config_class``."""
    spec = {spec.name: spec for spec in dataclasses.fields(config_class)}.get(name)
    if spec is not None and spec.metadata.get("flag"):
        return spec.metadata["flag"]
    return "--" + name.replace("_", "-")


def _help(config_class: "type[DataclassInstance]", spec: dataclasses.Field[Any]) -> str | None:
    text = spec.metadata.get("help")
    if text is None:
        return None
    shown = "none" if spec.default is None else str(spec.default)
    text = spell_fields(
        text, lambda name: shown if name == "default" else flag_of(config_class, name)
    )
    return text.replace("%", "%%")


def _value_type(hint: Any) -> tuple[Any, bool]:
    """``(element type, is_sequence)`` of a field's annotation (``Optional`` unwrapped)."""
    arguments = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union:
        return _value_type(arguments[0])
    if typing.get_origin(hint) is tuple:
        return arguments[0], True
    return hint, False


def _parser_of(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    read.__name__ = getattr(parse, "__name__", "value")
    return read


def _add_field(
    group: _ArgumentContainer,
    config_class: "type[DataclassInstance]",
    spec: dataclasses.Field[Any],
    hint: Any,
    defaults: bool = True,
) -> argparse.Action:
    options: dict[str, Any] = {"dest": spec.name, "help": _help(config_class, spec)}
    if spec.default is dataclasses.MISSING:
        options["required"] = True
    else:
        options["default"] = spec.default if defaults else argparse.SUPPRESS
    flag = flag_of(config_class, spec.name)
    kind, sequence = _value_type(hint)
    if kind is bool:
        options["action"] = "store_false" if spec.default else "store_true"
        return group.add_argument(flag, **options)
    if spec.metadata.get("choices") is not None:
        options["choices"] = spec.metadata["choices"]
    if spec.metadata.get("parse") is not None:  # one argument, read by the field's parser
        options["type"] = _parser_of(spec.metadata["parse"])
    else:
        if sequence:
            options["nargs"] = "+"
        if spec.name in _SHARED_TYPES:
            options["type"] = _SHARED_TYPES[spec.name]
        elif kind in (int, float):
            options["type"] = kind
    return group.add_argument(flag, **options)


def add_config_arguments(
    parser: _ArgumentContainer,
    config_class: "type[DataclassInstance]",
    names: Sequence[str],
    defaults: bool = True,
) -> None:
    """Add to ``parser`` (or an argument group) the option of each field in ``names``;
    ``defaults=False`` leaves the fields of flags not given out of the parsed namespace."""
    hints = typing.get_type_hints(config_class)
    specs = {spec.name: spec for spec in dataclasses.fields(config_class)}
    for name in names:
        _add_field(parser, config_class, specs[name], hints[name], defaults)


def _field_names(config_class: "type[DataclassInstance]") -> list[str]:
    return [spec.name for spec in dataclasses.fields(config_class)]


def config_from_args(config_class: type[_Config], args: argparse.Namespace) -> _Config:
    """The ``config_class`` of parsed ``args``; a bad value exits with one error line."""
    values = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(config_class)}
    try:
        return config_class(**values)
    except ConfigError as error:
        raise SystemExit(error_line(config_class, error)) from None


def error_line(config_class: "type[DataclassInstance]", error: ConfigError) -> str:
    """``probnets: error: --flag: ...`` for a :class:`ConfigError` of ``config_class``."""
    flag = flag_of(config_class, error.field)
    text = error.render(lambda name: flag_of(config_class, name))
    return f"probnets: error: {text if text.startswith(flag) else f'{flag}: {text}'}"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``probnets: error: ...`` line (``-h`` shows
    the usage) and which takes ``--debug`` at every level of the command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="on an error, show the full traceback",
        )

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"probnets: error: {message} (see {self.prog} -h)\n")


def build_parser(defaults: bool = True) -> argparse.ArgumentParser:
    """The ``probnets`` parser; with ``defaults=False``, ``train`` namespaces hold only the
    options given on the command line."""
    parser = _Parser(prog="probnets", description="Probabilistic neural networks in Pyro.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    train = commands.add_parser(
        "train", help="train a model", description="Train a model with SVI."
    )
    models = train.add_subparsers(dest="task", metavar="MODEL")
    models.required = True
    shared = _field_names(RunConfig)
    for name, task in sorted(tasks().items()):
        sub = models.add_parser(name, help=task.help, description=task.help)
        own = [field for field in _field_names(task.config_class) if field not in shared]
        add_config_arguments(sub, task.config_class, own, defaults)
        add_config_arguments(
            sub.add_argument_group(_SHARED_GROUP), task.config_class, shared, defaults
        )
    variance_command.add_arguments(commands)
    evaluate = commands.add_parser(
        "eval", help="evaluate a trained model", description="Evaluate a checkpoint."
    )
    evaluators = evaluate.add_subparsers(dest="task", metavar="MODEL")
    evaluators.required = True
    for name, task in sorted(tasks().items()):
        if not task.supports_eval:
            continue
        eval_config_class = task.eval_config_class
        assert eval_config_class is not None  # supports_eval says so
        sub = evaluators.add_parser(name, help=task.help, description=task.help)
        common = _field_names(EvalConfig)
        add_config_arguments(sub, eval_config_class, common)
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        add_config_arguments(
            sub,
            eval_config_class,
            [field for field in _field_names(eval_config_class) if field not in common],
        )
    return parser


def evaluate(args: argparse.Namespace) -> int:
    """``probnets eval``: prints the task's results (as one JSON object with ``--json``)."""
    config_class = tasks()[args.task].eval_config_class
    assert config_class is not None  # only tasks that support eval have a subcommand
    config = config_from_args(config_class, args)
    try:
        results = evaluate_task(config)
    except ConfigError as error:
        raise SystemExit(error_line(config_class, error)) from None
    if args.json:
        print(json.dumps(results, default=float))
    else:
        for key, value in results.items():
            print(f"{key}: {value}")
    return 0


def _resumed_config(config: RunConfig, given: Collection[str]) -> RunConfig:
    """``config`` with the settings of the run it resumes, except those given as flags (which
    :func:`~probnets.tasks.run_task` checks against the run)."""
    if config.out is None or not os.path.exists(os.path.join(config.out, CONFIG_FILE)):
        return config  # no run to read (run_task says so), or one from before config.json
    try:
        stored = load_config(config.out)
    except ConfigError as error:
        raise SystemExit(error_line(type(config), error)) from None
    if type(stored) is not type(config):
        return config  # another task's run: run_task refuses it
    values = stored.to_dict()
    values.update({name: getattr(config, name) for name in given}, out=config.out, resume=True)
    return config_from_args(type(config), argparse.Namespace(**values))


def train(args: argparse.Namespace, given: Collection[str] = ()) -> int:
    """``probnets train``: ``given`` names the fields set by flags (with ``--resume``, the
    others come from the run's ``config.json``)."""
    config_class = tasks()[args.task].config_class
    config = config_from_args(config_class, args)
    if config.resume:
        config = _resumed_config(config, given)
    try:
        with _warnings_as_lines():
            summary = run_task(config)
    except UnsupportedSettingError as error:
        print(error_line(config_class, error), file=sys.stderr)
        return 2
    except ConfigError as error:
        raise SystemExit(error_line(config_class, error)) from None
    except NonFiniteLossError as error:
        print(f"probnets: error: {error}{_resume_hint(config, error)}", file=sys.stderr)
        return 3
    except OSError as error:  # a full disk while writing a checkpoint or the logs
        print(f"probnets: error: {_os_error_text(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if config.out is not None:
            print(
                f"probnets: interrupted; continue with --out {config.out} --resume", file=sys.stderr
            )
        return 130
    if summary is not None:  # ranks other than 0 of a distributed run report nothing
        print(json.dumps({k: summary[k] for k in ("steps", "bad_steps", "eval")}, default=float))
    return 0


def _resume_hint(config: RunConfig, error: NonFiniteLossError) -> str:
    """The command that continues a diverged run from its last good checkpoint."""
    if error.checkpoint is None or config.out is None:
        return " (lower --lr, or set --clip-norm)"
    return (
        f" Continue it with: probnets train {_task_name(config)} --out {config.out} "
        f"--resume --lr {config.lr / 10:g} (or add --clip-norm)"
    )


def _task_name(config: RunConfig) -> str:
    return next(name for name, task in tasks().items() if type(config) is task.config_class)


def _os_error_text(error: OSError) -> str:
    if isinstance(error, CheckpointWriteError) or error.filename is None:
        return str(error) if str(error) else type(error).__name__
    return f"cannot write {error.filename}: {error.strerror}"


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Show warnings as ``warning: ...`` lines on stderr (rank 0 only)."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if distributed.is_main_process():
            print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _progress_on_stderr() -> Iterator[None]:
    """Print the library's ``probnets`` log records (the run's start...) on stderr."""
    logger = logging.getLogger("probnets")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("probnets %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    An error is one ``probnets: error: ...`` line on stderr and a non-zero status; with
    ``--debug`` the traceback of its cause is printed first, and an unexpected exception
    propagates instead of being summarised.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        with _progress_on_stderr():
            return _dispatch(parser, args, argv)
    except SystemExit as error:
        if debug and isinstance(error.code, str):  # the error's cause, or where it was found
            traceback.print_exception(
                error.__cause__ or error.__context__ or error, file=sys.stderr
            )
        raise
    except Exception as error:
        if debug:
            raise
        raise SystemExit(_unexpected_error_line(args, error)) from error


def _unexpected_error_line(args: argparse.Namespace, error: Exception) -> str:
    """One line for an exception no check turned into a ``probnets: error:`` line: a
    ``ValueError``/``TypeError`` whose message starts with a config field's name (as the
    library's argument checks do) is shown under that field's flag; anything else with its
    type and a pointer to ``--debug``."""
    first_line = next(iter(str(error).strip().splitlines()), "")
    task = tasks().get(str(getattr(args, "task", "")))
    config_class = (
        None
        if task is None
        else (task.config_class if args.command == "train" else task.eval_config_class)
    )
    name = first_line.split(" ", 1)[0].rstrip(":")
    if (
        isinstance(error, (ValueError, TypeError))
        and config_class is not None
        and name in _field_names(config_class)
    ):
        return f"probnets: error: {flag_of(config_class, name)}: {first_line}"
    return (
        f"probnets: error: {type(error).__name__}: {first_line} (run again with --debug "
        "for the traceback)"
    )


def _dispatch(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str] | None
) -> int:
    if args.command == "train":
        given = vars(build_parser(defaults=False).parse_args(argv))
        return train(args, given=set(given) - {"command", "task", "debug"})
    if args.command == "eval":
        return evaluate(args)
    if args.command == "variance":
        return variance_command.run(args)
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":
    raise SystemExit(main())
