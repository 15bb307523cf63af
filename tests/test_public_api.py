"""The public surface: every subpackage re-exports its names, imports stay light."""

import importlib
import pathlib
import subprocess
import sys

import pytest

import probnets

SUBPACKAGES = ["data", "distributions", "infer", "models", "nn", "train", "viz"]
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_exported_name_resolves(name):
    module = importlib.import_module(f"probnets.{name}")
    assert module.__doc__, f"probnets.{name} has no docstring"
    assert module.__all__ and len(set(module.__all__)) == len(module.__all__)
    for exported in module.__all__:
        assert getattr(module, exported) is not None


def test_model_classes_import_from_their_subpackage():
    from probnets.distributions import HardConcrete
    from probnets.models import AIR, VAE, BayesianHypernet, LayerDAG, NeuronDAG, SigmoidBeliefNet
    from probnets.models.air import AIR as AIRDefinition
    from probnets.viz import curves

    assert AIR is AIRDefinition
    for cls in (VAE, BayesianHypernet, LayerDAG, NeuronDAG, SigmoidBeliefNet):
        assert cls.__module__.startswith("probnets.models."), cls
    assert HardConcrete.__module__ == "probnets.distributions.hard_concrete"
    assert curves.__module__ == "probnets.viz.images"
    assert set(probnets.__all__) == set(SUBPACKAGES) | {"load"}
    assert callable(probnets.load)


def test_library_subpackages_do_not_import_matplotlib():
    code = (
        "import sys\n"
        "import probnets.data, probnets.distributions, probnets.infer, probnets.models, "
        "probnets.nn, probnets.train, probnets.viz\n"
        "print('matplotlib' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "False"


def test_version_and_type_marker_ship_with_the_package():
    package = pathlib.Path(probnets.__file__).parent
    assert (package / "py.typed").exists()
    assert probnets.__version__.count(".") == 2
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "probnets.__version__" }' in pyproject


def test_viz_lazy_table_matches_all():
    import probnets.viz as viz

    assert sorted(viz._SOURCES) == sorted(viz.__all__)
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        viz.missing  # noqa: B018
