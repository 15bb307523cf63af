"""The TensorBoard logger's hparams, and the flattened config they are made from."""

import pytest
import torch
from torch import nn

from probnets.train import LossObjective, TrainConfig, Trainer
from probnets.train.loggers import flatten_config


def test_flatten_config_gives_scalars_and_strings():
    flat = flatten_config(
        {
            "lr": 0.1,
            "param_groups": {"*bias": {"lr": 0.5}},
            "clip_norm": None,
            "loggers": ["csv"],
            "progress": False,
        }
    )
    assert flat == {
        "lr": 0.1,
        "param_groups/*bias/lr": 0.5,
        "clip_norm": "None",
        "loggers": '["csv"]',
        "progress": False,
    }


def test_tensorboard_records_the_config_as_hparams(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    net = nn.Linear(2, 1)
    x = torch.randn(8, 2)
    Trainer(
        LossObjective(lambda a: net(a).pow(2).mean(), net),
        x,
        TrainConfig(
            steps=2,
            lr=0.02,
            param_groups={"*bias": {"lr": 0.5}},
            out_dir=tmp_path,
            tensorboard=True,
            progress=False,
        ),
    ).run()
    files = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1  # the hparams are in the run's own event file, not a sub-run
    hparams, metrics = {}, []
    for event in EventFileLoader(str(files[0])).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name != "hparams":
                continue
            data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
            if data.HasField("session_start_info"):
                hparams = dict(data.session_start_info.hparams)
            if data.HasField("experiment"):
                metrics = [m.name.tag for m in data.experiment.metric_infos]
    assert hparams["lr"].number_value == pytest.approx(0.02)
    assert hparams["param_groups/*bias/lr"].number_value == 0.5
    assert hparams["optimizer"].string_value == "adam"
    assert hparams["clip_norm"].string_value == "None"
    assert metrics == ["loss"]
