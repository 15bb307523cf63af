import pytest
import torch

from probnets.data import dag_toy
from probnets.data.dag_toy import DNM_TOY_DEPENDENCIES, dnm_toy


def test_dnm_toy_dependencies_are_the_nonzeros_of_the_targets_jacobian():
    toy = dnm_toy(7, seed=3, dtype=torch.float64)
    assert toy.x.shape == (7, 5) and toy.y.shape == (7, 4) and toy.x.dtype == torch.float64
    a, b, c, d, e = toy.x.unbind(-1)
    torch.testing.assert_close(toy.y, torch.stack([b + e, e - d, b + e + d, e - d - c], -1))
    # The targets are linear in x, so the Jacobian at any point gives the true wiring.
    jacobian = torch.autograd.functional.jacobian(
        lambda x: torch.stack([x[1] + x[4], x[4] - x[3], x[1] + x[4] + x[3], x[4] - x[3] - x[2]]),
        toy.x[0],
    )
    assert torch.equal(jacobian != 0, toy.dependencies)
    assert int(toy.dependencies.sum()) == 10 and not toy.dependencies[:, 0].any()
    # A private generator: same seed, same data; the constant is not handed out by reference.
    assert torch.equal(dnm_toy(7, seed=3, dtype=torch.float64).x, toy.x)
    toy.dependencies[0, 0] = True
    assert not DNM_TOY_DEPENDENCIES[0, 0]


def test_old_names_still_work_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="dnm_toy"):
        old = dag_toy.seed002_toy(4, seed=1)
    assert torch.equal(old.x, dnm_toy(4, seed=1).x)
    with pytest.warns(DeprecationWarning, match="DNM_TOY_DEPENDENCIES"):
        assert torch.equal(dag_toy.SEED002_DEPENDENCIES, DNM_TOY_DEPENDENCIES)
    with pytest.raises(AttributeError):
        dag_toy.no_such_name  # noqa: B018
