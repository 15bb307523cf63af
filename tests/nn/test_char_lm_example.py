"""``examples/hypernets_char_lm.py`` (the source of the guide's bits-per-character tables)
runs end to end on tiny models."""

import json

import matplotlib.pyplot as plt
import pytest
import torch

from probnets.nn import CharLanguageModel


def test_char_lm_example_trains_three_models_of_matched_size(tmp_path, load_example):
    out = tmp_path / "char_lm.json"
    load_example("hypernets_char_lm").main(
        [
            "--steps",
            "4",
            "--eval-every",
            "2",
            "--seq-len",
            "10",
            "--batch-size",
            "4",
            "--embedding",
            "8",
            "--hidden",
            "16",
            "--hyper-size",
            "8",
            "--hyper-embedding",
            "4",
            "--recurrent-dropout",
            "0.1",
            "--dropout",
            "0.1",
            "--valid-chars",
            "500",
            "--no-compile-steps",
            "--threads",
            str(torch.get_num_threads()),
            "--out",
            str(out),
            "--figures",
            str(tmp_path),
        ]
    )
    result = json.loads(out.read_text())
    rows = {row["model"]: row for row in result["rows"]}
    assert set(rows) == {"hyperlstm", "layernorm_lstm", "lstm"}
    target = rows["hyperlstm"]["params"]
    for row in rows.values():
        assert abs(row["params"] - target) < 0.03 * target
        assert 0.0 < row["test_bpc"] < 8.0  # log2(103) = 6.7 for a uniform guess
    assert [step for step, _ in result["curves"]["lstm"]] == [2, 4]
    for figure in ("hypernets_char_lm.png", "hypernets_weight_change.png"):
        assert (tmp_path / figure).stat().st_size > 0


def test_char_lm_validation_figure_names_the_models_and_its_legend_covers_no_curve(load_example):
    example = load_example("hypernets_char_lm")
    curves = {
        "hyperlstm": [(500, 2.6), (1000, 2.4)],
        "layernorm_lstm": [(500, 2.6), (1000, 2.3)],
        "lstm": [(500, 2.9), (1000, 2.5)],
    }
    fig = example.validation_curve_figure(curves)
    (ax,) = fig.axes
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["HyperLSTM", "layer-norm LSTM", "nn.LSTM"]
    assert ax.get_xlabel() == "training step"
    assert "bits per character" in ax.get_ylabel()
    fig.canvas.draw()
    # The legend is beside the axes, not over them.
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 > ax.get_window_extent(renderer).x1
    plt.close(fig)


def test_char_lm_example_follows_the_learning_rate_schedule(load_example, monkeypatch):
    seen = []

    class RecordingAdam(torch.optim.Adam):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    load_example("hypernets_char_lm").main(
        [
            "--steps",
            "4",
            "--eval-every",
            "4",
            "--seq-len",
            "10",
            "--batch-size",
            "4",
            "--embedding",
            "8",
            "--hidden",
            "16",
            "--valid-chars",
            "200",
            "--models",
            "lstm",
            "--lr",
            "0.01",
            "--lr-schedule",
            "warmup:2,cosine",
            "--threads",
            "1",
        ]
    )
    # Warm-up halves the first step; the half-cosine over 4 steps gives 1, 0.854, 0.5, 0.146.
    assert seen == pytest.approx([0.005, 0.00854, 0.005, 0.00146], abs=1e-5)


def test_char_lm_example_rejects_an_unknown_schedule(load_example, capsys):
    with pytest.raises(SystemExit):
        load_example("hypernets_char_lm").main(["--lr-schedule", "linear"])
    assert "unknown schedule 'linear'" in capsys.readouterr().err


TINY_RUN = [
    "--steps",
    "6",
    "--eval-every",
    "2",
    "--seq-len",
    "10",
    "--batch-size",
    "4",
    "--embedding",
    "8",
    "--hidden",
    "16",
    "--hyper-size",
    "8",
    "--hyper-embedding",
    "4",
    "--dropout",
    "0.1",
    "--recurrent-dropout",
    "0.1",
    "--hyper-recurrent-dropout",
    "0.1",
    "--weight-decay",
    "0.1",
    "--valid-chars",
    "300",
    "--models",
    "hyperlstm,layernorm_lstm",
    "--no-compile-steps",
    "--threads",
    "1",
]


def test_char_lm_example_resumes_a_killed_run_exactly(tmp_path, load_example):
    def run(name, kill_at_call=None):
        example = load_example("hypernets_char_lm")
        if kill_at_call is not None:
            calls, evaluate = [], example.evaluate_bpc

            def evaluate_until_killed(*args, **kwargs):
                calls.append(None)
                if len(calls) == kill_at_call:
                    raise KeyboardInterrupt
                return evaluate(*args, **kwargs)

            example.evaluate_bpc = evaluate_until_killed
        example.main(
            TINY_RUN
            + [
                "--checkpoint-dir",
                str(tmp_path / name),
                "--out",
                str(tmp_path / f"{name}.json"),
                "--save-hyperlstm",
                str(tmp_path / f"{name}.pt"),
            ]
        )
        return json.loads((tmp_path / f"{name}.json").read_text())

    uninterrupted = run("straight")
    # The HyperLSTM evaluates at steps 2, 4, 6 and on the test text (4 calls); the
    # layer-norm LSTM's third call is its step-6 evaluation, so the kill leaves its step-4
    # checkpoint (and the HyperLSTM's finished one) behind.
    with pytest.raises(KeyboardInterrupt):
        run("killed", kill_at_call=7)
    assert not (tmp_path / "killed.json").exists()
    saved = torch.load(tmp_path / "killed" / "layernorm_lstm.pt", weights_only=True)
    assert saved["step"] == 4
    resumed = run("killed")
    assert resumed["curves"] == uninterrupted["curves"]
    for new, old in zip(resumed["rows"], uninterrupted["rows"]):
        assert (new["model"], new["valid_bpc"], new["test_bpc"]) == (
            old["model"],
            old["valid_bpc"],
            old["test_bpc"],
        )
    straight = torch.load(tmp_path / "straight.pt", weights_only=True)
    for name, tensor in torch.load(tmp_path / "killed.pt", weights_only=True).items():
        assert torch.equal(tensor, straight[name]), name


def test_char_lm_example_refuses_a_checkpoint_of_other_arguments(tmp_path, load_example):
    example = load_example("hypernets_char_lm")
    tiny_lstm = TINY_RUN + ["--models", "lstm", "--checkpoint-dir", str(tmp_path)]
    example.main(tiny_lstm)
    with pytest.raises(ValueError, match=r"--lr 0.002 -> 0.01.*another --checkpoint-dir"):
        example.main(tiny_lstm + ["--lr", "0.01"])


@pytest.mark.parametrize(
    "flag, new_value", [("--hyper-recurrent-dropout", "0.2"), ("--weight-decay", "0.1")]
)
def test_char_lm_example_resumes_a_checkpoint_written_before_an_argument_existed(
    tmp_path, load_example, flag, new_value
):
    """A checkpoint whose arguments lack one added later resumes when the new argument has
    the value the old runs used, and only then."""
    example = load_example("hypernets_char_lm")
    tiny = list(TINY_RUN)
    at = tiny.index(flag)
    del tiny[at : at + 2]
    tiny_hyper = tiny + ["--models", "hyperlstm", "--steps", "2", "--checkpoint-dir", str(tmp_path)]
    example.main(tiny_hyper)
    path = tmp_path / "hyperlstm.pt"
    saved = torch.load(path, weights_only=True)
    del saved["args"][flag[2:].replace("-", "_")]
    torch.save(saved, path)
    with pytest.raises(ValueError, match=rf"{flag} 0.0 -> {new_value}"):
        example.main(tiny_hyper + [flag, new_value])
    example.main(tiny_hyper)  # resumes at its last step and finishes


def test_weight_decay_shrinks_the_weight_matrices_only(load_example):
    example = load_example("hypernets_char_lm")
    model = CharLanguageModel(7, "layernorm_lstm", 3, 4, 1)
    with torch.no_grad():  # gains and shifts away from 1 and 0, so that shrinking would show
        for p in model.parameters():
            p.uniform_(0.5, 1.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = example.make_optimizer(model, lr=0.1, weight_decay=0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # with no gradient, AdamW only decays: W <- (1 - lr * decay) W
    for name, p in model.named_parameters():
        # the per-gate layer-norm gains and shifts are (4, H) matrices, but not decayed
        factor = (
            0.95
            if name.endswith(("weight_ih", "weight_hh", "embedding.weight", "decoder.weight"))
            else 1.0
        )
        assert torch.allclose(p, factor * before[name]), name
    assert type(example.make_optimizer(model, lr=0.1, weight_decay=0.0)) is torch.optim.Adam


def test_char_lm_example_rejects_a_negative_weight_decay(load_example, capsys):
    with pytest.raises(SystemExit):
        load_example("hypernets_char_lm").main(["--weight-decay", "-0.1"])
    assert "--weight-decay must be >= 0, got -0.1" in capsys.readouterr().err
