"""Task configs: the type names the task, values are checked on construction with errors
naming the field, and a config survives a round trip through JSON (``config.json``)."""

import dataclasses
import json
import math

import pytest
import torch

from probnets.tasks import (
    AIRConfig,
    AIREvalConfig,
    BayesHypernetConfig,
    ConfigError,
    GatedConfig,
    HyperCNNConfig,
    HyperLSTMConfig,
    ReactiveConfig,
    RunConfig,
    SBNConfig,
    VAEConfig,
    task_for,
    tasks,
)

CONFIGS = [
    AIRConfig,
    BayesHypernetConfig,
    GatedConfig,
    HyperCNNConfig,
    HyperLSTMConfig,
    ReactiveConfig,
    SBNConfig,
    VAEConfig,
]


@pytest.mark.parametrize(
    "config, field, message",
    [
        (lambda: VAEConfig(num_test=0), "num_test", "num_test must be a positive integer, got 0"),
        (lambda: VAEConfig(steps=2.5), "steps", "steps must be a positive integer, got 2.5"),
        (lambda: VAEConfig(steps=True), "steps", "steps must be a positive integer, got True"),
        (lambda: VAEConfig(lr=-1e-3), "lr", "lr must be a positive number, got -0.001"),
        (lambda: VAEConfig(lr=math.nan), "lr", "lr must be a positive number, got nan"),
        (lambda: VAEConfig(clip_norm=0), "clip_norm", "clip_norm must be a positive number"),
        (lambda: VAEConfig(weight_decay=-1), "weight_decay", "weight_decay must be a number >= 0"),
        (lambda: VAEConfig(seed=-1), "seed", "seed must be an integer >= 0, got -1"),
        (
            lambda: VAEConfig(dtype="float16"),
            "dtype",
            "dtype must be one of ('float32', 'float64'), got 'float16'",
        ),
        (lambda: VAEConfig(precision="8"), "precision", "precision must be one of"),
        (lambda: VAEConfig(device="gpu"), "device", "device must be one of auto, cpu, cuda"),
        (
            lambda: VAEConfig(lr_schedule="linear"),
            "lr_schedule",
            "lr_schedule: unknown schedule 'linear'",
        ),
        (lambda: VAEConfig(resume="yes"), "resume", "resume must be True or False, got 'yes'"),
        (lambda: VAEConfig(out=3), "out", "out must be a path, got int"),
        (
            lambda: SBNConfig(layers=(200, 0)),
            "layers",
            "layers must be a non-empty sequence of positive integers, got (200, 0)",
        ),
        (lambda: SBNConfig(estimator="reinforce"), "estimator", "estimator must be one of"),
        (lambda: GatedConfig(prior_p=1.0), "prior_p", "prior_p must be in (0, 1), got 1.0"),
        (lambda: AIRConfig(canvas_size=20), "canvas_size", "canvas_size must be an integer >= 28"),
        (lambda: AIRConfig(z_pres_prior=2.0), "z_pres_prior", "z_pres_prior must be in (0, 1]"),
        (lambda: ReactiveConfig(channels=()), "channels", "channels must be a non-empty sequence"),
        (
            lambda: HyperLSTMConfig(recurrent_dropout=1.5),
            "recurrent_dropout",
            "recurrent_dropout must be in [0, 1), got 1.5",
        ),
        (
            lambda: HyperLSTMConfig(rnn="lstm", recurrent_dropout=0.1),
            "recurrent_dropout",
            "recurrent_dropout: nn.LSTM has no recurrent dropout",
        ),
        (
            lambda: HyperLSTMConfig(rnn="lstm", hyper_recurrent_dropout=0.1),
            "hyper_recurrent_dropout",
            "hyper_recurrent_dropout: only the HyperLSTM has a hyper cell (set rnn to hyperlstm)",
        ),
        (
            lambda: BayesHypernetConfig(hypernet_posterior=True),
            "hypernet_posterior",
            "hypernet_posterior needs hypernet_prior_scale",
        ),
        (
            lambda: BayesHypernetConfig(activation="swish"),
            "activation",
            "activation must be one of",
        ),
    ],
)
def test_bad_values_raise_a_value_error_naming_the_field(config, field, message):
    with pytest.raises(ValueError) as error_info:
        config()
    assert isinstance(error_info.value, ConfigError)
    assert error_info.value.field == field
    assert str(error_info.value).startswith(message)


def test_replace_checks_again():
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        dataclasses.replace(VAEConfig(), batch_size=0)


def test_accepted_spellings_are_normalized():
    assert SBNConfig(layers=[200, 100]).layers == (200, 100)
    assert ReactiveConfig(channels=[4, 8]).channels == (4, 8)
    config = VAEConfig(dtype=torch.float64)
    assert config.dtype == "float64" and config.torch_dtype == torch.float64
    assert VAEConfig(out=__import__("pathlib").Path("runs/x")).to_dict()["out"] == "runs/x"


def test_fields_are_keyword_only():
    with pytest.raises(TypeError):
        VAEConfig(300)


@pytest.mark.parametrize("config_class", CONFIGS)
def test_config_type_names_its_task(config_class):
    task = task_for(config_class())
    assert task.config_class is config_class
    assert tasks()[task.name] is task


def test_a_config_subclass_runs_its_parent_task_and_the_base_config_none():
    @dataclasses.dataclass(kw_only=True)
    class Wider(VAEConfig):
        hidden_dim: int = 512

    assert task_for(Wider()).name == "vae"
    assert task_for(AIREvalConfig(checkpoint="c.pt", data="d.npz")).name == "air"
    with pytest.raises(TypeError, match="config must be one of the task configs"):
        task_for(RunConfig())


@pytest.mark.parametrize("config_class", CONFIGS)
def test_config_round_trips_through_json(config_class):
    config = config_class(seed=3, out="runs/x")
    assert config_class(**json.loads(json.dumps(config.to_dict()))) == config


def test_eval_interval_defaults_to_a_tenth_of_the_run():
    assert VAEConfig(steps=300).eval_interval == 30
    assert VAEConfig(steps=5).eval_interval == 1
    assert VAEConfig(steps=300, eval_every=7).eval_interval == 7
