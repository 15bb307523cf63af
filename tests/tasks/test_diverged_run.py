"""``probnets train`` on a diverging run: one error line naming the sites and the remedy, the
last good parameters in ``last.pt``, and ``--resume`` with a lower ``--lr`` finishing the run;
a full disk while checkpointing is one line too."""

import csv
import errno
import json
import os

import probnets.checkpoint
from probnets.cli import main
from probnets.train import load_checkpoint

TINY_VAE = [
    "train",
    "vae",
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


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("probnets: error:")]


def test_a_diverging_vae_stops_with_one_line_and_resumes_with_a_lower_lr(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert (
        main([*TINY_VAE, "--out", out, "--steps", "200", "--lr", "100", "--max-bad-steps", "3"])
        == 3
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = error_lines(err)
    assert "training diverged: 3 consecutive bad steps" in line
    assert "invalid distribution parameter" in line and "guide:z (parameter scale)" in line
    assert f"probnets train vae --out {out} --resume --lr 10" in line
    stopped = load_checkpoint(os.path.join(out, "last.pt"))
    assert stopped["bad_steps"] == 3

    assert (
        main(
            [
                "train",
                "vae",
                "--out",
                out,
                "--resume",
                "--lr",
                "1e-3",
                "--steps",
                str(stopped["step"] + 4),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads(open(os.path.join(out, "summary.json")).read())
    assert summary["steps"] == stopped["step"] + 4 and summary["bad_steps"] == 3
    assert summary["final"]["step"] == summary["steps"]
    # the diverging part's skipped evaluation stays on record; the loss did not explode
    assert all("evaluation at step" in warning for warning in summary["warnings"])
    assert load_checkpoint(os.path.join(out, "last.pt"))["step"] == stopped["step"] + 4
    with open(os.path.join(out, "metrics.csv")) as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == sorted(set(steps)) and steps[-1] == summary["steps"]


def test_a_full_disk_while_checkpointing_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"

    def full_disk(state, f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(probnets.checkpoint.torch, "save", full_disk)
    assert main([*TINY_VAE, "--out", str(out), "--steps", "2"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert error_lines(err) == [
        f"probnets: error: cannot write the checkpoint {out / 'last.pt'}: No space left on "
        "device; the previous checkpoint there is intact"
    ]
    assert not (out / "last.pt").exists()
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]


def test_air_with_checkpoint_every_1_saves_before_its_failing_evaluation(tmp_path, capsys):
    # lr 100 breaks the guide at the first update: every evaluation and the figures fail on
    # invalid distribution parameters, and each step after the first is bad
    out = tmp_path / "air"
    assert (
        main(
            [
                "train",
                "air",
                "--steps",
                "2",
                "--num-train",
                "16",
                "--num-test",
                "4",
                "--rnn-hidden-size",
                "8",
                "--batch-size",
                "4",
                "--checkpoint-every",
                "1",
                "--eval-every",
                "1",
                "--lr",
                "100",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err and "warning: evaluation at step 1 skipped" in err
    assert load_checkpoint(out / "last.pt")["step"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["bad_steps"] == 1
    assert any("figures and final evaluations skipped" in w for w in summary["warnings"])
