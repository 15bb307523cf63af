"""Kill ``probnets train`` with SIGKILL at random moments (before the first checkpoint, during
steps, during checkpoint writes: every step writes one) and start it again, with ``--resume``
when a checkpoint exists: the finished run directory has one metrics row per step, one
evaluation row per evaluated step, a complete ``summary.json`` and no temporary files, and
its parameters are those of an uninterrupted run."""

import csv
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from probnets.train import load_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS, EVAL_EVERY = 30, 4
FLAGS = [
    "--steps",
    str(STEPS),
    "--num-train",
    "50",
    "--hidden",
    "3",
    "--seed",
    "3",
    "--checkpoint-every",
    "1",
    "--eval-every",
    str(EVAL_EVERY),
    "--log-every",
    "1",
    "--no-progress",
]


def command(out, resume):
    return [
        sys.executable,
        "-m",
        "probnets",
        "train",
        "gated",
        "--out",
        str(out),
        *FLAGS,
        *(["--resume"] if resume else []),
    ]


def environment():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYTHONWARNINGS", None)
    return env


def start(out, flags=()):
    """The run in ``out`` started again: resumed if it has a checkpoint, else from scratch."""
    return subprocess.Popen(
        [*command(out, resume=(out / "last.pt").exists()), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment(),
        cwd=str(ROOT),
    )


def wait_for(path, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)


def kill_at(out, trigger, delay, flags=()):
    """Start the run, wait for ``trigger`` to appear in ``out``, then SIGKILL it ``delay``
    seconds later (unless it has finished)."""
    process = start(out, flags)
    wait_for(out / trigger, process)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    _, err = process.communicate()
    assert process.returncode in (0, -signal.SIGKILL), err.decode()


def finish(out):
    process = start(out)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()
    # a finished run resumed again changes nothing
    before = {name: (out / name).read_bytes() for name in ("metrics.csv", "eval.csv")}
    again = subprocess.run(
        command(out, resume=True),
        capture_output=True,
        env=environment(),
        cwd=str(ROOT),
        timeout=600,
    )
    assert again.returncode == 0 and b"nothing to do" in again.stderr
    assert {name: (out / name).read_bytes() for name in before} == before


def steps_in(path):
    with open(path) as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def check_run_directory(out):
    assert steps_in(out / "metrics.csv") == list(range(1, STEPS + 1))
    evaluated = sorted({*range(EVAL_EVERY, STEPS + 1, EVAL_EVERY), STEPS})
    assert steps_in(out / "eval.csv") == evaluated
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["bad_steps"] == 0
    assert summary["final"]["step"] == STEPS and summary["eval"]["step"] == STEPS
    assert summary["checkpoint"] == str(out / "last.pt") and summary["warnings"] == []
    assert load_checkpoint(out / "last.pt")["step"] == STEPS
    leftovers = [
        p for p in (*out.iterdir(), *out.glob("checkpoints/*")) if p.name.startswith(".tmp-")
    ]
    assert leftovers == []


def same_parameters(a, b):
    first, second = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert first["params"].keys() == second["params"].keys()
    for name, value in first["params"].items():
        assert torch.equal(value, second["params"][name]), name
    with open(a / "eval.csv") as f, open(b / "eval.csv") as g:
        assert f.read() == g.read()


def interrupted_run(out, kills, seed):
    """Kill the run before its first checkpoint with some steps logged, then ``kills`` times
    at random, then finish it."""
    rng = random.Random(seed)
    # checkpoints only at the end (the last flag wins), so the kill leaves logged rows and no
    # checkpoint; the run starts again from scratch, with a checkpoint every step
    kill_at(out, "metrics.csv", 0.05, flags=["--checkpoint-every", "1000"])
    assert not (out / "last.pt").exists() and (out / "metrics.csv").read_text()
    for _ in range(kills):
        kill_at(out, "metrics.csv", rng.uniform(0.0, 1.5))
    finish(out)


def test_a_run_killed_twice_finishes_as_if_uninterrupted(tmp_path):
    interrupted_run(tmp_path / "killed", kills=1, seed=0)
    check_run_directory(tmp_path / "killed")
    whole = tmp_path / "whole"
    subprocess.run(
        command(whole, resume=False),
        check=True,
        capture_output=True,
        env=environment(),
        cwd=str(ROOT),
        timeout=600,
    )
    same_parameters(tmp_path / "killed", whole)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_random_kills(tmp_path, seed):
    interrupted_run(tmp_path / "killed", kills=6, seed=seed)
    check_run_directory(tmp_path / "killed")
