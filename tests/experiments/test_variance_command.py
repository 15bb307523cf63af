"""``probnets variance custom --factory``: any Problem factory plugs in; bad names fail in one
line."""

import json

import pytest
import torch

from probnets.cli import main
from probnets.experiments import Problem, toy_problem


def small_toy():
    """A factory the command imports by name (this test module)."""
    return toy_problem(target=0.45, dtype=torch.float64)


def test_custom_factory_runs_and_matches_the_toy_problem(tmp_path, capsys):
    out = tmp_path / "custom"
    assert main(["variance", "custom", "--factory", f"{__name__}:small_toy", "--out", str(out),
                 "--samples", "20", "--estimators", "score"]) == 0
    report = json.loads((out / "variance.json").read_text())
    assert report["meta"]["problem"] == "toy_t0.45"
    assert report["params"] == ["theta"]
    assert report["exact_norm"] == pytest.approx(0.025)
    assert (out / "variance.png").exists()
    assert "score" in capsys.readouterr().out


@pytest.mark.parametrize("factory, message", [
    ("nomodule", "must be 'module:function'"),
    ("probnets_no_such_module:make", "No module named"),
    ("probnets.experiments:no_such_factory", "has no attribute 'no_such_factory'"),
    ("probnets.experiments:ADAPTIVE_ESTIMATORS", "is not callable"),
])
def test_bad_factory_is_a_one_line_error(tmp_path, capsys, factory, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["variance", "custom", "--factory", factory, "--out", str(tmp_path / "x")])
    text = str(exit_info.value.code)
    assert text.startswith("probnets: error: --factory") and message in text
    assert "\n" not in text


def test_problem_rejects_non_callable_model():
    with pytest.raises(TypeError, match="Problem model must be callable, got int"):
        Problem(name="x", model=1, guide=lambda: None)
