import torch

from probnets.cli import main
from probnets.train.checkpoint import load_checkpoint

_ARGS = [
    "train",
    "hyperlstm",
    "--hidden-size",
    "12",
    "--hyper-size",
    "6",
    "--hyper-embedding-size",
    "3",
    "--embedding-size",
    "6",
    "--seq-len",
    "8",
    "--batch-size",
    "3",
    "--no-progress",
    "--seed",
    "3",
]


def test_resumed_hyperlstm_run_equals_uninterrupted_one(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main([*_ARGS, "--steps", "6", "--out", str(whole)]) == 0
    assert main([*_ARGS, "--steps", "3", "--out", str(split)]) == 0
    saved = load_checkpoint(split / "last.pt")["data"]["rnn_state"]
    # The carried state after 3 steps is in the checkpoint: (h, c, hyper_h, hyper_c).
    assert [tuple(s.shape) for s in saved] == [(1, 3, 12), (1, 3, 12), (1, 3, 6), (1, 3, 6)]
    assert saved[0].abs().sum() > 0
    assert main([*_ARGS, "--steps", "6", "--out", str(split), "--resume"]) == 0
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(split / "last.pt")
    assert a["step"] == b["step"] == 6
    for name, value in a["modules"][0].items():
        assert torch.equal(value, b["modules"][0][name]), name
    for s, t in zip(a["data"]["rnn_state"], b["data"]["rnn_state"]):
        assert torch.equal(s, t)
