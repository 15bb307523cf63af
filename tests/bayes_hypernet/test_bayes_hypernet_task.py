"""``probnets train bayes-hypernet`` end to end on the gap problem (a few steps)."""

import json
import os

import pytest

from probnets.cli import main


def test_gap1d_run_writes_metrics_and_bands(tmp_path):
    out = str(tmp_path / "run")
    code = main(["train", "bayes-hypernet", "--problem", "gap1d", "--steps", "4", "--width", "8",
                 "--guide", "flow", "--num-samples", "3", "--out", out, "--no-progress",
                 "--dtype", "float64"])
    assert code == 0
    assert os.path.getsize(os.path.join(out, "predictive_bands.png")) > 0
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["steps"] == 4
    assert {"std_data", "epistemic_gap", "std_ratio_outside"} <= set(summary["eval"])


def test_bad_task_argument_is_reported(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "bayes-hypernet", "--guide", "laplace", "--out", str(tmp_path)])
    assert "invalid choice: 'laplace'" in capsys.readouterr().err
