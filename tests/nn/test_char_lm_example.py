"""``examples/hypernets_char_lm.py`` (the source of the guide's bits-per-character tables)
runs end to end on tiny models."""

import json

import pytest
import torch


def test_char_lm_example_trains_three_models_of_matched_size(tmp_path, load_example):
    out = tmp_path / "char_lm.json"
    load_example("hypernets_char_lm").main([
        "--steps", "4", "--eval-every", "2", "--seq-len", "10", "--batch-size", "4",
        "--embedding", "8", "--hidden", "16", "--hyper-size", "8", "--hyper-embedding", "4",
        "--recurrent-dropout", "0.1", "--dropout", "0.1", "--valid-chars", "500",
        "--no-compile-steps", "--threads", str(torch.get_num_threads()),
        "--out", str(out), "--figures", str(tmp_path)])
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


def test_char_lm_example_follows_the_learning_rate_schedule(load_example, monkeypatch):
    seen = []

    class RecordingAdam(torch.optim.Adam):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    load_example("hypernets_char_lm").main([
        "--steps", "4", "--eval-every", "4", "--seq-len", "10", "--batch-size", "4",
        "--embedding", "8", "--hidden", "16", "--valid-chars", "200", "--models", "lstm",
        "--lr", "0.01", "--lr-schedule", "warmup:2,cosine", "--threads", "1"])
    # Warm-up halves the first step; the half-cosine over 4 steps gives 1, 0.854, 0.5, 0.146.
    assert seen == pytest.approx([0.005, 0.00854, 0.005, 0.00146], abs=1e-5)


def test_char_lm_example_rejects_an_unknown_schedule(load_example, capsys):
    with pytest.raises(SystemExit):
        load_example("hypernets_char_lm").main(["--lr-schedule", "linear"])
    assert "unknown schedule 'linear'" in capsys.readouterr().err
