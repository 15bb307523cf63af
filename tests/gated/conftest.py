import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    # These models are small: intra-op threads only add contention on a shared CPU
    # (a 16x16 max-reduction ran 100x slower with 2 threads under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
