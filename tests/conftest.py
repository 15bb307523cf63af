import importlib.util
import pathlib

import pyro
import pytest
import torch

# The tests use small tensors, for which one intra-op thread is fastest; on a loaded 2-core
# machine two threads spin against each other and tiny ops become hundreds of times slower.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    """Every test starts with an empty param store and seed 0."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)


@pytest.fixture
def load_example():
    """``load_example(name)`` imports ``examples/<name>.py`` as a module, so a test can call
    its ``main(argv)``."""
    examples = pathlib.Path(__file__).resolve().parents[1] / "examples"

    def load(name):
        spec = importlib.util.spec_from_file_location(name, examples / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
