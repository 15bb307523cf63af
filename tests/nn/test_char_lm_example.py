"""``examples/hypernets_char_lm.py`` (the source of the guide's bits-per-character tables)
runs end to end on tiny models."""

import json

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
