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
    assert (
        main(
            [
                "variance",
                "custom",
                "--factory",
                f"{__name__}:small_toy",
                "--out",
                str(out),
                "--samples",
                "20",
                "--estimators",
                "score",
            ]
        )
        == 0
    )
    report = json.loads((out / "variance.json").read_text())
    assert report["meta"]["problem"] == "toy_t0.45"
    assert report["params"] == ["theta"]
    assert report["exact_norm"] == pytest.approx(0.025)
    assert (out / "variance.png").exists()
    assert "score" in capsys.readouterr().out


@pytest.mark.parametrize(
    "factory, message",
    [
        ("nomodule", "must be 'module:function'"),
        ("probnets_no_such_module:make", "No module named"),
        ("probnets.experiments:no_such_factory", "has no attribute 'no_such_factory'"),
        ("probnets.experiments:ADAPTIVE_ESTIMATORS", "is not callable"),
    ],
)
def test_bad_factory_is_a_one_line_error(tmp_path, capsys, factory, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["variance", "custom", "--factory", factory, "--out", str(tmp_path / "x")])
    text = str(exit_info.value.code)
    assert text.startswith("probnets: error: --factory") and message in text
    assert "\n" not in text


def test_problem_rejects_non_callable_model():
    with pytest.raises(TypeError, match="Problem model must be callable, got int"):
        Problem(name="x", model=1, guide=lambda: None)


PLUGIN = '''
import torch

from probnets.experiments import toy_problem
from probnets.infer import register_estimator
from probnets.infer.estimators import ScoreFunction


@register_estimator
class PluginScore(ScoreFunction):
    """The score function under another name, registered when this module is imported."""

    name = "plugin-score"


def problem():
    return toy_problem(target=0.45, dtype=torch.float64)
'''


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """A module that registers an estimator on import; the registry is restored afterwards."""
    import probnets.infer.estimators as estimators

    monkeypatch.setattr(estimators, "_REGISTRY", dict(estimators._REGISTRY))
    (tmp_path / "probnets_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "probnets_test_plugin"
    import sys

    sys.modules.pop("probnets_test_plugin", None)


def test_an_estimator_the_factory_module_registers_can_be_compared(tmp_path, plugin_module):
    out = tmp_path / "plugin"
    assert (
        main(
            [
                "variance",
                "custom",
                "--factory",
                f"{plugin_module}:problem",
                "--out",
                str(out),
                "--samples",
                "20",
                "--estimators",
                "score",
                "plugin-score",
            ]
        )
        == 0
    )
    report = json.loads((out / "variance.json").read_text())
    assert list(report["estimators"]) == ["score", "plugin-score"]
    # the plugin is the score function under another name: same draws, same variance
    assert report["estimators"]["plugin-score"]["variance"] == pytest.approx(
        report["estimators"]["score"]["variance"]
    )


def test_an_unknown_estimator_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "variance",
                "custom",
                "--factory",
                f"{__name__}:small_toy",
                "--out",
                str(tmp_path / "x"),
                "--estimators",
                "no-such-estimator",
            ]
        )
    text = str(exit_info.value.code)
    assert text.startswith("probnets: error: --estimators") and "no-such-estimator" in text
    assert "\n" not in text
