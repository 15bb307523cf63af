import pytest
import torch
import torch.nn.functional as F

from probnets.nn.spatial import (
    affine_matrix,
    extract_window,
    guard_scale,
    inverse_z_where,
    place_window,
    window_box,
)


def _compose(a, b):
    """Affine maps as 3x3 matrices: apply b then a."""

    def full(z):
        m = affine_matrix(z)
        bottom = torch.tensor([0.0, 0.0, 1.0], dtype=m.dtype).expand(m.shape[0], 1, 3)
        return torch.cat([m, bottom], dim=1)

    return full(a) @ full(b)


def test_inverse_composes_to_identity():
    z = torch.tensor([[3.0, 0.5, -0.7], [0.8, -1.2, 0.3], [-2.0, 0.1, 0.2]], dtype=torch.float64)
    product = _compose(z, inverse_z_where(z))
    assert torch.allclose(product, torch.eye(3, dtype=torch.float64).expand(3, 3, 3))


def test_inverse_guards_scale_near_zero():
    z = torch.tensor([[0.0, 0.5, 0.5], [1e-6, 0.0, 0.0], [-1e-6, 0.0, 0.0]])
    inv = inverse_z_where(z, min_scale=1e-2)
    assert torch.isfinite(inv).all()
    assert torch.allclose(inv[:, 0], torch.tensor([100.0, 100.0, -100.0]))
    assert torch.equal(guard_scale(torch.tensor([0.5, -0.5])), torch.tensor([0.5, -0.5]))
    images = torch.rand(3, 20, 20)
    assert torch.isfinite(extract_window(images, z, 8)).all()


@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_placement_is_exact(align_corners):
    windows = torch.rand(2, 16, 16)
    z = torch.tensor([[1.0, 0.0, 0.0]]).expand(2, 3)
    assert torch.allclose(place_window(windows, z, 16, align_corners), windows, atol=1e-6)
    assert torch.allclose(extract_window(windows, z, 16, align_corners), windows, atol=1e-6)


def test_round_trip_recovers_a_smooth_window():
    pyro_rows = torch.linspace(-1, 1, 28)
    blob = torch.exp(-4 * (pyro_rows[:, None] ** 2 + pyro_rows[None, :] ** 2))
    windows = torch.stack([blob, blob.t() * 0.5])
    z = torch.tensor([[2.0, 0.4, -0.3], [1.5, -0.2, 0.5]])
    canvas = place_window(windows, z, 64)
    back = extract_window(canvas, z, 28)
    assert (back - windows).abs().max() < 0.03
    # the mass lands where window_box says: nothing outside the box
    boxes = window_box(z, 64)
    for n in range(2):
        x0, y0, x1, y1 = boxes[n].tolist()
        inside = torch.zeros(64, 64, dtype=torch.bool)
        inside[max(int(y0) - 1, 0) : int(y1) + 2, max(int(x0) - 1, 0) : int(x1) + 2] = True
        assert canvas[n][~inside].abs().max() == 0
        assert canvas[n][inside].sum() > 0


def test_placement_matches_reference_affine_grid():
    windows = torch.rand(4, 10, 10, dtype=torch.float64)
    z = torch.randn(4, 3, dtype=torch.float64) * 0.3 + torch.tensor(
        [2.0, 0.0, 0.0], dtype=torch.float64
    )
    theta = torch.zeros(4, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = z[:, 0]
    theta[:, 0, 2], theta[:, 1, 2] = z[:, 1], z[:, 2]
    grid = F.affine_grid(theta, [4, 1, 30, 30], align_corners=False)
    expected = F.grid_sample(windows[:, None], grid, align_corners=False)[:, 0]
    out = place_window(windows, z, 30)
    assert out.dtype == torch.float64
    assert torch.allclose(out, expected)


def test_window_box_of_centred_window():
    # scale 2 covers half the canvas side, centred
    box = window_box(torch.tensor([[2.0, 0.0, 0.0]]), 40)
    assert torch.allclose(box, torch.tensor([[10.0, 10.0, 30.0, 30.0]]))
    # positive x shifts the object left (canvas point p maps to window point s p + x)
    box = window_box(torch.tensor([[2.0, 1.0, 0.0]]), 40)
    assert torch.allclose(box, torch.tensor([[0.0, 10.0, 20.0, 30.0]]))


def test_bad_z_where_is_rejected():
    with pytest.raises(ValueError, match=r"z_where must have shape \(N, 3\)"):
        place_window(torch.rand(2, 8, 8), torch.rand(2, 2), 16)
    with pytest.raises(ValueError, match="z_where has 3 rows but the images/windows have 2"):
        extract_window(torch.rand(2, 16, 16), torch.rand(3, 3), 8)
    with pytest.raises(ValueError, match=r"windows must have shape \(N, w, w\)"):
        place_window(torch.rand(2, 1, 8, 8), torch.rand(2, 3), 16)
