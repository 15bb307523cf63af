"""The command line is generated from the task configs: its flags and defaults are the ones
the hand-written parsers had, parsing no flags gives each config's defaults, and a bad value
is one ``probnets: error:`` line naming the flag."""

import argparse
import dataclasses

import pytest

from probnets.cli import build_parser, config_from_args, main
from probnets.tasks import tasks

SWITCH = "switch"  # a flag without a value: off unless given

# Each command's own flags, in order, then the task-specific defaults of the shared ones.
TASK_FLAGS = {
    "air": {
        "--estimator": "score",
        "--baseline": "lstm",
        "--baseline-lr": 0.01,
        "--temperature": 0.5,
        "--num-particles": 5,
        "--dair": SWITCH,
        "--fixed-canvases": SWITCH,
        "--num-train": 10000,
        "--validation-fraction": 0.1,
        "--num-validation": 1000,
        "--num-test": 2000,
        "--ema": 0.999,
        "--max-digits": 2,
        "--canvas-size": 50,
        "--max-objects": 3,
        "--window-size": 28,
        "--rnn-hidden-size": 256,
        "--z-pres-prior": 0.0001,
        "--z-pres-prior-start": None,
        "--anneal-steps": None,
        "--scale-prior-sd": 0.2,
    },
    "bayes-hypernet": {
        "--problem": "gap1d",
        "--guide": "mean_field",
        "--parameterization": None,
        "--generator": None,
        "--embedding-dim": None,
        "--hidden-dim": 32,
        "--width": None,
        "--depth": None,
        "--activation": None,
        "--noise": "fixed",
        "--noise-scale": 0.1,
        "--prior-scale": 1.0,
        "--init-scale": None,
        "--kl-weight": 1.0,
        "--hypernet-prior-scale": None,
        "--hypernet-posterior": SWITCH,
        "--num-particles": 1,
        "--num-points": 120,
        "--num-train": 60000,
        "--num-test": 1000,
        "--num-samples": 50,
    },
    "gated": {
        "--problem": "toy",
        "--gate": "bernoulli",
        "--estimator": "relaxed",
        "--prior-p": 0.01,
        "--gate-lr": 0.05,
        "--hidden": None,
        "--num-train": 2000,
        "--noise-scale": "auto",
    },
    "hypercnn": {"--no-hyper": SWITCH, "--embedding-dim": 4},
    "hyperlstm": {
        "--rnn": "hyperlstm",
        "--hidden-size": None,
        "--embedding-size": 32,
        "--num-layers": 1,
        "--hyper-size": 16,
        "--hyper-embedding-size": 4,
        "--compile-steps": SWITCH,
        "--dropout": 0.0,
        "--recurrent-dropout": 0.0,
        "--hyper-recurrent-dropout": 0.0,
        "--seq-len": 50,
        "--corpus": "pydoc",
    },
    "reactive": {
        "--iterations": 2,
        "--context-size": 64,
        "--update": "gru",
        "--channels": (8, 16, 16),
        "--generator-init-scale": 0.1,
    },
    "sbn": {
        "--estimator": "nvil",
        "--layers": (200,),
        "--temperature": 0.5,
        "--num-particles": 2,
        "--num-test": 1000,
        "--ll-samples": 100,
    },
    "vae": {"--latent-dim": 16, "--hidden-dim": 256, "--num-test": 1000},
}
# (--steps, --batch-size, --lr, --clip-norm) of each command
TASK_DEFAULTS = {
    "air": (10000, 64, 5e-4, None),
    "bayes-hypernet": (3000, 100, 1e-2, None),
    "gated": (4000, 200, 1e-2, None),
    "hypercnn": (2000, 64, 1e-3, None),
    "hyperlstm": (1500, 16, 4e-3, 1.0),
    "reactive": (2000, 64, 1e-3, None),
    "sbn": (5000, 24, 3e-4, None),
    "vae": (2000, 100, 1e-3, None),
}
# --lr-schedule of the commands whose default is not constant
TASK_SCHEDULES = {"bayes-hypernet": "cosine:0.1"}
SHARED_FLAGS = {
    "--steps": None,
    "--batch-size": None,
    "--lr": None,
    "--cv-lr": None,
    "--weight-decay": 0.0,
    "--clip-norm": None,
    "--lr-schedule": "constant",
    "--device": "auto",
    "--dtype": "float32",
    "--precision": "32",
    "--compile": SWITCH,
    "--threads": None,
    "--seed": 0,
    "--out": None,
    "--resume": SWITCH,
    "--checkpoint-every": 500,
    "--eval-every": None,
    "--log-every": 10,
    "--max-bad-steps": 10,
    "--no-progress": SWITCH,
    "--tensorboard": SWITCH,
}
EVAL_FLAGS = {
    "air": {"--checkpoint": None, "--device": "auto", "--json": SWITCH, "--data": None},
    "bayes-hypernet": {
        "--checkpoint": None,
        "--device": "auto",
        "--json": SWITCH,
        "--data": None,
        "--num-samples": 100,
    },
}


def _subcommands(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _flags_and_defaults(parser):
    return {
        action.option_strings[0]: SWITCH if action.nargs == 0 else action.default
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
    }


@pytest.fixture(scope="module")
def commands():
    return _subcommands(build_parser())


@pytest.mark.parametrize("name", sorted(TASK_FLAGS))
def test_train_flags_and_defaults_are_the_hand_written_ones(commands, name):
    steps, batch_size, lr, clip_norm = TASK_DEFAULTS[name]
    shared = dict(
        SHARED_FLAGS,
        **{
            "--steps": steps,
            "--batch-size": batch_size,
            "--lr": lr,
            "--clip-norm": clip_norm,
            "--lr-schedule": TASK_SCHEDULES.get(name, "constant"),
        },
    )
    parser = _subcommands(commands["train"])[name]
    got = _flags_and_defaults(parser)
    # same flags, same order, after --debug (which every level of the command takes)
    assert list(got) == ["--debug", *TASK_FLAGS[name], *SHARED_FLAGS]
    assert got == {"--debug": SWITCH, **TASK_FLAGS[name], **shared}


@pytest.mark.parametrize("name", sorted(EVAL_FLAGS))
def test_eval_flags_and_defaults_are_the_hand_written_ones(commands, name):
    parser = _subcommands(commands["eval"])[name]
    got = _flags_and_defaults(parser)
    assert list(got) == ["--debug", *EVAL_FLAGS[name]]
    assert got == {"--debug": SWITCH, **EVAL_FLAGS[name]}
    assert [a.option_strings[0] for a in parser._actions if a.required] == [
        "--checkpoint",
        "--data",
    ]


def test_every_task_is_on_the_command_line(commands):
    assert set(_subcommands(commands["train"])) == set(tasks()) == set(TASK_FLAGS)


@pytest.mark.parametrize("name", sorted(TASK_FLAGS))
def test_no_flags_give_the_config_defaults(name):
    """The parser and the dataclass cannot drift: every field has a flag, and an empty
    command line is the default config (with the output directory given)."""
    config_class = tasks()[name].config_class
    args = build_parser().parse_args(["train", name, "--out", "somewhere"])
    assert config_from_args(config_class, args) == config_class(out="somewhere")


@pytest.mark.parametrize(
    "name, argv, field, value",
    [
        ("sbn", ["--layers", "200,100"], "layers", (200, 100)),
        ("reactive", ["--channels", "4", "8"], "channels", (4, 8)),
        ("hypercnn", ["--no-hyper"], "hyper", False),
        ("vae", ["--no-progress"], "progress", False),
        ("hyperlstm", ["--clip-norm", "none"], "clip_norm", None),
        ("air", ["--dair", "--z-pres-prior-start", "0.5"], "z_pres_prior_start", 0.5),
        ("vae", ["--dtype", "float64"], "dtype", "float64"),
    ],
)
def test_flags_set_their_config_field(name, argv, field, value):
    config_class = tasks()[name].config_class
    config = config_from_args(config_class, build_parser().parse_args(["train", name, *argv]))
    assert getattr(config, field) == value
    assert [f.name for f in dataclasses.fields(config)] == [
        f.name for f in dataclasses.fields(config_class)
    ]


@pytest.mark.parametrize(
    "argv, line",
    [
        (
            ["vae", "--num-test", "0"],
            "probnets: error: --num-test: num_test must be a positive integer, got 0",
        ),
        (
            ["gated", "--prior-p", "1.5"],
            "probnets: error: --prior-p: prior_p must be in (0, 1), got 1.5",
        ),
        (
            ["sbn", "--num-particles", "0"],
            "probnets: error: --num-particles: num_particles must be a positive integer, got 0",
        ),
        (
            ["bayes-hypernet", "--hypernet-posterior"],
            "probnets: error: --hypernet-posterior needs --hypernet-prior-scale",
        ),
        (
            ["hyperlstm", "--rnn", "lstm", "--recurrent-dropout", "0.1"],
            "probnets: error: --recurrent-dropout: nn.LSTM has no recurrent dropout (set --rnn to "
            "hyperlstm or layernorm_lstm, or use --dropout)",
        ),
        (
            ["bayes-hypernet", "--activation", "swish"],
            "probnets: error: --activation: activation must be one of",
        ),
    ],
)
def test_bad_config_values_are_one_line_naming_the_flag(argv, line):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *argv])
    assert str(exit_info.value.code).startswith(line)


def test_bad_layers_are_refused_while_parsing(capsys):
    with pytest.raises(SystemExit):
        main(["train", "sbn", "--layers", "200,x"])
    assert (
        "argument --layers: expected comma-separated positive integers, got '200,x'"
        in capsys.readouterr().err
    )


def test_help_renders_field_references_as_flags(commands):
    helps = {
        action.option_strings[0]: action.help
        for action in _subcommands(commands["train"])["air"]._actions
    }
    assert helps["--resume"] == "continue the run in --out from its last checkpoint"
    assert helps["--z-pres-prior-start"] == (
        "anneal k exponentially from this value to --z-pres-prior"
    )
    assert helps["--cv-lr"].endswith("default: --lr")
    assert helps["--steps"] == "total optimisation steps (default 10000)"
    assert not any("{" in (text or "") for text in helps.values())
