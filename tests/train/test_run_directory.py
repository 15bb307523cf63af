"""The run directory after interruptions: one row per logged step whatever was restarted or
resumed, no orphaned temporary files, files with the user's umask, and a full disk while
checkpointing reported with the previous checkpoint intact."""

import csv
import errno
import os

import pyro
import pyro.infer
import pytest
import torch

import probnets.checkpoint
import probnets.train.checkpoint
from probnets.files import atomic_write, remove_orphans
from probnets.train import (
    Callback,
    CheckpointWriteError,
    Evaluation,
    SVIObjective,
    TrainConfig,
    Trainer,
    load_checkpoint,
)


def quadratic_model():
    w = pyro.param("w", torch.zeros(2))
    pyro.factor("f", -(w - 1.0).pow(2).sum())


def trainer(tmp_path, steps, callbacks=(), **settings):
    pyro.clear_param_store()
    settings.setdefault("progress", False)
    return Trainer(
        SVIObjective(quadratic_model, lambda: None, pyro.infer.Trace_ELBO()),
        iter(lambda: (), None),
        TrainConfig(steps=steps, lr=0.1, out_dir=str(tmp_path), **settings),
        callbacks=[Evaluation(lambda t: {"score": float(t.step)}, every=2), *callbacks],
    )


def steps_in(path):
    with open(path) as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


class Crash(Exception):
    pass


class CrashAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer):
        if trainer.step == self.step:
            raise Crash


def test_a_run_killed_before_its_first_checkpoint_starts_again_cleanly(tmp_path):
    with pytest.raises(Crash):
        trainer(tmp_path, 6, [CrashAt(5)]).run()  # a checkpoint only at the end
    assert not (tmp_path / "last.pt").exists() and steps_in(tmp_path / "metrics.csv")
    trainer(tmp_path, 6).run()
    assert steps_in(tmp_path / "metrics.csv") == [1, 2, 3, 4, 5, 6]
    assert steps_in(tmp_path / "eval.csv") == [2, 4, 6]


@pytest.mark.parametrize("crash_at", [3, 4])
def test_resume_logs_each_step_and_evaluation_once(tmp_path, crash_at):
    with pytest.raises(Crash):
        trainer(tmp_path, 8, [CrashAt(crash_at)], checkpoint_every=2).run()
    # step 4 is checkpointed before its evaluation: a crash there repeats the evaluation
    result = trainer(tmp_path, 8, checkpoint_every=2, resume=True).run()
    assert steps_in(tmp_path / "metrics.csv") == list(range(1, 9))
    assert steps_in(tmp_path / "eval.csv") == [2, 4, 6, 8]
    with open(tmp_path / "eval.csv") as f:
        assert [float(row["score"]) for row in csv.DictReader(f)] == [2.0, 4.0, 6.0, 8.0]
    assert result.history[0]["step"] == 4 - (crash_at == 3) * 2  # the checkpoint's own row


def test_resuming_a_finished_run_adds_no_rows(tmp_path):
    trainer(tmp_path, 4).run()
    files = {name: (tmp_path / name).read_text() for name in ("metrics.csv", "eval.csv")}
    for _ in range(2):
        result = trainer(tmp_path, 4, resume=True).run()
        assert {name: (tmp_path / name).read_text() for name in files} == files
        assert result.history[-1]["step"] == 4 and result.eval_history[-1]["step"] == 4


def test_orphaned_temporary_files_are_removed_at_the_next_start(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    orphans = [
        tmp_path / ".tmp-abc.pt",
        tmp_path / ".tmp-x.json",
        tmp_path / "checkpoints" / ".tmp-y.pt",
    ]
    for path in orphans:
        path.write_bytes(b"partial")
    (tmp_path / "notes.tmp").write_text("not ours")
    trainer(tmp_path, 2, keep_checkpoints=1).run()
    assert not any(path.exists() for path in orphans)
    assert (tmp_path / "notes.tmp").exists()
    assert remove_orphans(tmp_path / "missing") == []


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, mask, mode):
    previous = os.umask(mask)
    try:
        trainer(tmp_path, 2, keep_checkpoints=1).run()
        with atomic_write(tmp_path / "x.txt") as f:
            f.write("x")
    finally:
        os.umask(previous)
    files = [
        "last.pt",
        "metrics.csv",
        "eval.csv",
        "train_config.json",
        "x.txt",
        os.path.join("checkpoints", "step-00000002.pt"),
    ]
    assert {name: os.stat(tmp_path / name).st_mode & 0o777 for name in files} == dict.fromkeys(
        files, mode
    )


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer(tmp_path, 2).run()
    before = (tmp_path / "last.pt").read_bytes()

    def full_disk(state, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(probnets.checkpoint.torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError) as error:
        trainer(tmp_path, 4, checkpoint_every=1, resume=True).run()
    assert error.value.errno == errno.ENOSPC
    assert error.value.filename == str(tmp_path / "last.pt")
    assert str(error.value) == (
        f"cannot write the checkpoint {tmp_path / 'last.pt'}: No space "
        "left on device; the previous checkpoint there is intact"
    )
    assert (tmp_path / "last.pt").read_bytes() == before
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2


def test_figures_follow_the_umask_and_leave_no_temporary_file(tmp_path):
    import matplotlib.pyplot as plt

    from probnets.viz.images import save_figure

    previous = os.umask(0o022)
    try:
        save_figure(plt.figure(), tmp_path / "a.png")
        save_figure(plt.figure(), tmp_path / "b")  # no extension: PNG
    finally:
        os.umask(previous)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b"]
    assert {os.stat(tmp_path / n).st_mode & 0o777 for n in ("a.png", "b")} == {0o644}
    assert (tmp_path / "b").read_bytes()[:4] == b"\x89PNG"


def test_buffering_loggers_are_flushed_before_each_checkpoint(tmp_path, monkeypatch):
    events = []

    class Buffering:
        def log_metrics(self, step, metrics):
            events.append(("row", step))

        def log_config(self, config):
            pass

        def flush(self):
            events.append(("flush",))

        def close(self):
            pass

    write = probnets.train.checkpoint.Checkpointer.write

    def recording_write(self, state, path=None):
        events.append(("checkpoint", state["step"]))
        return write(self, state, path)

    monkeypatch.setattr(probnets.train.checkpoint.Checkpointer, "write", recording_write)
    trainer(tmp_path, 2, checkpoint_every=1, loggers=("csv", Buffering())).run()
    # (the evaluation of step 2 follows its checkpoint)
    assert events == [
        ("row", 1),
        ("flush",),
        ("checkpoint", 1),
        ("row", 2),
        ("flush",),
        ("checkpoint", 2),
        ("row", 2),
    ]
