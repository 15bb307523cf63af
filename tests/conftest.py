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
