import json
import math

import pytest
import torch

from probnets.cli import main
from probnets.nn import hyperlstm


@pytest.mark.parametrize(
    "argv, metric",
    [
        (
            [
                "hyperlstm",
                "--hidden-size",
                "16",
                "--hyper-size",
                "8",
                "--embedding-size",
                "8",
                "--seq-len",
                "10",
                "--batch-size",
                "4",
            ],
            "valid_bpc",
        ),
        pytest.param(
            [
                "hyperlstm",
                "--compile-steps",
                "--hidden-size",
                "16",
                "--hyper-size",
                "8",
                "--embedding-size",
                "8",
                "--seq-len",
                "10",
                "--batch-size",
                "4",
            ],
            "valid_bpc",
            marks=pytest.mark.slow,
        ),  # ~100 s with a cold Inductor cache; fast test below
        (
            [
                "hyperlstm",
                "--rnn",
                "layernorm_lstm",
                "--hidden-size",
                "16",
                "--seq-len",
                "10",
                "--batch-size",
                "4",
            ],
            "valid_bpc",
        ),
        (
            [
                "hyperlstm",
                "--recurrent-dropout",
                "0.1",
                "--hyper-recurrent-dropout",
                "0.1",
                "--dropout",
                "0.1",
                "--weight-decay",
                "0.1",
                "--hidden-size",
                "16",
                "--hyper-size",
                "8",
                "--embedding-size",
                "8",
                "--seq-len",
                "10",
                "--batch-size",
                "4",
            ],
            "valid_bpc",
        ),
        (["reactive", "--iterations", "2", "--batch-size", "16"], "test_accuracy"),
        (["hypercnn", "--batch-size", "16"], "test_accuracy"),
        (["hypercnn", "--no-hyper", "--batch-size", "16"], "test_accuracy"),
    ],
)
def test_deterministic_hypernet_tasks_train_and_evaluate(tmp_path, argv, metric):
    out = tmp_path / "run"
    assert main(["train", *argv, "--steps", "3", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["bad_steps"] == 0
    assert metric in summary["eval"]
    assert (out / "last.pt").exists()


def test_hyperlstm_task_trains_on_the_docstring_corpus(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "hyperlstm",
                "--corpus",
                "docstrings",
                "--rnn",
                "lstm",
                "--hidden-size",
                "8",
                "--embedding-size",
                "4",
                "--seq-len",
                "10",
                "--batch-size",
                "4",
                "--steps",
                "2",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"].startswith("standard-library docstrings (Python 3.")
    assert 0.0 < summary["eval"]["valid_bpc"] < 8.0


def test_hyperlstm_task_defaults_to_the_validated_hyper_cell_and_records_it(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "hyperlstm",
                "--hidden-size",
                "16",
                "--embedding-size",
                "8",
                "--seq-len",
                "10",
                "--batch-size",
                "4",
                "--steps",
                "1",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["lr"] == pytest.approx(4e-3)
    config = torch.load(out / "last.pt", weights_only=False)["extra"]["config"]
    assert config["hyper_size"] == 16 and config["hyper_embedding_size"] == 4
    assert config["rnn"] == "hyperlstm" and config["parameters"] > 0


@pytest.mark.parametrize(
    "flags, expected",
    [([], 1.0), (["--clip-norm", "none"], math.inf), (["--clip-norm", "0.5"], 0.5)],
)
def test_hyperlstm_task_clips_gradients_at_one_unless_told_otherwise(
    tmp_path, monkeypatch, flags, expected
):
    bounds = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(
        torch.nn.utils,
        "clip_grad_norm_",
        lambda params, max_norm: bounds.append(max_norm) or clip(params, max_norm),
    )
    assert (
        main(
            [
                "train",
                "hyperlstm",
                "--rnn",
                "lstm",
                "--hidden-size",
                "8",
                "--embedding-size",
                "4",
                "--seq-len",
                "10",
                "--batch-size",
                "4",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "run"),
                "--no-progress",
                *flags,
            ]
        )
        == 0
    )
    assert bounds == [expected, expected]


def test_clip_norm_default_is_per_task_and_rejects_bad_values(capsys):
    with pytest.raises(SystemExit):
        main(["train", "hyperlstm", "--clip-norm", "0", "--steps", "1"])
    assert "expected a positive number, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "reactive", "--help"])
    assert "(default none)" in capsys.readouterr().out


def test_hyperlstm_task_matches_the_baselines_to_the_default_hyperlstm_by_default(tmp_path):
    parameters = {}
    for rnn in ("hyperlstm", "layernorm_lstm", "lstm"):
        out = tmp_path / rnn
        assert (
            main(
                [
                    "train",
                    "hyperlstm",
                    "--rnn",
                    rnn,
                    "--embedding-size",
                    "8",
                    "--seq-len",
                    "10",
                    "--batch-size",
                    "4",
                    "--steps",
                    "1",
                    "--out",
                    str(out),
                    "--no-progress",
                ]
            )
            == 0
        )
        config = torch.load(out / "last.pt", weights_only=False)["extra"]["config"]
        parameters[rnn] = config["parameters"]
        if rnn == "hyperlstm":
            assert config["hidden_size"] == 128
        else:
            assert config["hidden_size"] > 128  # no hyper cell: the width takes its parameters
    for rnn in ("layernorm_lstm", "lstm"):
        assert abs(parameters[rnn] - parameters["hyperlstm"]) < 0.01 * parameters["hyperlstm"]
    out = tmp_path / "given"
    assert (
        main(
            [
                "train",
                "hyperlstm",
                "--rnn",
                "lstm",
                "--hidden-size",
                "20",
                "--embedding-size",
                "8",
                "--seq-len",
                "10",
                "--batch-size",
                "4",
                "--steps",
                "1",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert torch.load(out / "last.pt", weights_only=False)["extra"]["config"]["hidden_size"] == 20


def test_compile_steps_flag_compiles_the_hyperlstm_chunks(tmp_path, monkeypatch):
    compiled = []

    def record_compile(fn, **options):
        compiled.append(fn.__name__)
        return fn

    monkeypatch.setattr(hyperlstm, "_compiled_chunks", {})
    monkeypatch.setattr(torch, "compile", record_compile)
    assert (
        main(
            [
                "train",
                "hyperlstm",
                "--compile-steps",
                "--hidden-size",
                "16",
                "--hyper-size",
                "8",
                "--embedding-size",
                "8",
                "--seq-len",
                "10",
                "--batch-size",
                "4",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "run"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert compiled == ["_scan_forward_chunk", "_scan_backward_chunk"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rnn", "lstm", "--recurrent-dropout", "0.1"], "nn.LSTM has no recurrent dropout"),
        (["--recurrent-dropout", "1.5"], r"recurrent_dropout must be in \[0, 1\)"),
        (
            ["--rnn", "layernorm_lstm", "--hyper-recurrent-dropout", "0.1"],
            "only the HyperLSTM has a hyper cell",
        ),
        (["--hyper-recurrent-dropout", "1.5"], r"hyper_recurrent_dropout must be in \[0, 1\)"),
        (["--rnn", "lstm", "--dropout", "-0.1"], r"dropout must be in \[0, 1\)"),
    ],
)
def test_hyperlstm_task_rejects_bad_dropout(tmp_path, argv, message):
    with pytest.raises(SystemExit, match=message):
        main(
            [
                "train",
                "hyperlstm",
                *argv,
                "--hidden-size",
                "8",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "run"),
                "--no-progress",
            ]
        )


@pytest.mark.parametrize("gate", ["hard_concrete", "bernoulli"])
def test_gated_task_reports_recovered_wiring(tmp_path, gate):
    out = tmp_path / gate
    assert (
        main(
            [
                "train",
                "gated",
                "--gate",
                gate,
                "--estimator",
                "disarm",
                "--steps",
                "5",
                "--num-train",
                "200",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    evaluation = json.loads((out / "summary.json").read_text())["eval"]
    assert 0 <= evaluation["true_dependencies"] <= 10
    assert {"spurious_dependencies", "input_a_cut", "active_edges"} <= set(evaluation)
    assert (out / "adjacency.png").exists()
