"""Resuming takes the run's settings from its ``config.json``: the command line needs only
``--out``, ``--resume`` and what may change; contradicting flags are refused; a run that has
reached ``--steps`` is left alone."""

import dataclasses
import json

import pytest
import torch

from probnets.cli import main
from probnets.tasks import ConfigError, GatedConfig, VAEConfig, load_config, run_task
from probnets.train import load_checkpoint

FIRST = [
    "train",
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
    "--seed",
    "2",
    "--no-progress",
]


def _read(path):
    return path.read_text()


def test_resume_from_the_command_line_needs_only_out_and_steps(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main([*FIRST, "--out", str(whole), "--steps", "6"]) == 0
    assert main([*FIRST, "--out", str(split)]) == 0
    # the guide's command: no model flags; a mismatch of sizes used to be a traceback
    assert (
        main(["train", "vae", "--out", str(split), "--resume", "--steps", "6", "--no-progress"])
        == 0
    )
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(split / "last.pt")
    assert a["step"] == b["step"] == 6
    for name, value in a["params"].items():
        assert torch.equal(value, b["params"][name]), name
    assert load_config(split).steps == 6 and load_config(split).hidden_dim == 16


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--hidden-dim", "32"], "probnets: error: --hidden-dim 32 contradicts the run in"),
        (["--batch-size", "10"], "probnets: error: --batch-size 10 contradicts the run in"),
    ],
)
def test_resume_refuses_flags_that_contradict_the_run(tmp_path, flags, message):
    out = tmp_path / "run"
    assert main([*FIRST, "--out", str(out)]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "vae", "--out", str(out), "--resume", "--steps", "6", *flags])
    line = str(exit_info.value.code)
    assert line.startswith(message)
    assert "started with" in line and "only --checkpoint-every" in line and "--steps" in line
    assert load_checkpoint(out / "last.pt")["step"] == 4  # nothing was trained


def test_resuming_a_finished_run_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*FIRST, "--out", str(out)]) == 0
    files = {name: _read(out / name) for name in ("summary.json", "metrics.csv", "eval.csv")}
    for steps in ("4", "2"):
        capsys.readouterr()
        assert main(["train", "vae", "--out", str(out), "--resume", "--steps", steps]) == 0
        assert "nothing to do" in capsys.readouterr().err
        assert {name: _read(out / name) for name in files} == files
    assert json.loads(files["summary.json"])["final"]  # the summary was kept, not emptied


def test_python_resume_checks_the_stored_config(tmp_path):
    config = GatedConfig(steps=2, num_train=50, hidden=3, out=str(tmp_path / "run"), progress=False)
    run_task(config)
    assert load_config(tmp_path / "run") == config
    with pytest.raises(
        ConfigError, match=r"hidden 4 contradicts the run in .*started with 3"
    ) as error:
        run_task(dataclasses.replace(config, hidden=4, steps=3, resume=True))
    assert error.value.field == "hidden"
    with pytest.raises(ConfigError, match="is a gated run, not vae") as error:
        run_task(VAEConfig(out=config.out, resume=True))
    assert error.value.field == "resume"
    summary = run_task(dataclasses.replace(config, steps=3, resume=True))
    assert summary["steps"] == 3


def test_load_config_names_an_unreadable_run(tmp_path):
    with pytest.raises(ConfigError, match="no readable config.json") as error:
        load_config(tmp_path)
    assert error.value.field == "out"


def test_a_run_from_before_config_json_and_the_model_record_still_resumes(tmp_path):
    out = tmp_path / "old"
    assert main([*FIRST, "--out", str(out)]) == 0
    (out / "config.json").unlink()
    state = torch.load(out / "last.pt", weights_only=True)
    state["extra"].pop("model")
    torch.save(state, out / "last.pt")
    # without config.json the flags must be repeated, as they had to be then
    assert main([*FIRST, "--out", str(out), "--resume", "--steps", "6"]) == 0
    assert load_checkpoint(out / "last.pt")["step"] == 6
    assert load_config(out).steps == 6  # and the run has a config.json from now on


def test_a_float64_config_trains_in_float64(tmp_path):
    run_task(
        GatedConfig(
            steps=2, num_train=50, hidden=3, dtype=torch.float64, out=str(tmp_path), progress=False
        )
    )
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["params"] and all(
        v.dtype == torch.float64 for v in state["params"].values() if v.is_floating_point()
    )
    assert json.loads((tmp_path / "config.json").read_text())["config"]["dtype"] == "float64"
