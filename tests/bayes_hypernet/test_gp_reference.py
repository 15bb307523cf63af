"""The exact GP reference for the gap problem's uncertainty."""

import pytest
import torch

from probnets.models.bayes_hypernet import GaussianProcessRegression
from probnets.models.bayes_hypernet.toy import gap_regression
from probnets.experiments.bayes_hypernet import gap_metrics


def test_interpolates_with_small_noise_and_reverts_to_the_prior_far_away():
    x = torch.tensor([[-1.0], [0.0], [2.0]], dtype=torch.float64)
    y = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    gp = GaussianProcessRegression(x, y, lengthscale=0.7, signal_scale=1.5, noise_scale=1e-4)
    at_data = gp.predict(x)
    assert at_data.mean.dtype == torch.float64
    torch.testing.assert_close(at_data.mean, y, atol=1e-5, rtol=0)
    assert at_data.epistemic_std.max() < 1e-3
    far = gp.predict(torch.tensor([[40.0]], dtype=torch.float64))
    torch.testing.assert_close(far.mean, torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(far.epistemic_std, torch.full((1,), 1.5, dtype=torch.float64))
    torch.testing.assert_close(far.std**2, far.epistemic_std**2 + far.aleatoric_std**2)


def test_matches_conditioning_the_joint_gaussian():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 1, generator=g, dtype=torch.float64)
    y = torch.randn(7, generator=g, dtype=torch.float64)
    x_new = torch.linspace(-3, 3, 5, dtype=torch.float64).unsqueeze(-1)
    gp = GaussianProcessRegression(x, y, lengthscale=0.8, noise_scale=0.3)
    # Joint covariance of (f(x_new), y), conditioned with a plain linear solve.
    points = torch.cat([x_new, x])
    k = torch.exp(-0.5 * (points - points.T) ** 2 / 0.8**2)
    k_ff, k_fy, k_yy = k[:5, :5], k[:5, 5:], k[5:, 5:] + 0.09 * torch.eye(7, dtype=k.dtype)
    mean = k_fy @ torch.linalg.solve(k_yy, y)
    cov = k_ff - k_fy @ torch.linalg.solve(k_yy, k_fy.T)
    prediction = gp.predict(x_new)
    torch.testing.assert_close(prediction.mean, mean)
    torch.testing.assert_close(prediction.epistemic_std, cov.diagonal().sqrt())


def test_gap_ratios_shrink_as_the_lengthscale_grows():
    x, y = gap_regression(120, seed=0, dtype=torch.float64)
    rows = [
        gap_metrics(GaussianProcessRegression(x, y, lengthscale=ell), None)
        for ell in (0.5, 1.0, 1.5)
    ]
    gaps = [row["std_ratio_gap"] for row in rows]
    assert gaps[0] > 5 > gaps[1] > gaps[2] > 1, gaps
    assert all(row["std_ratio_outside"] > 5 for row in rows)
    assert all(row["rmse_data"] < 0.05 for row in rows)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lengthscale": 0.0}, "lengthscale"),
        ({"noise_scale": -1.0}, "noise_scale"),
    ],
)
def test_rejects_bad_scales(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianProcessRegression(torch.zeros(3, 1), torch.zeros(3), **kwargs)


def test_rejects_mismatched_data():
    with pytest.raises(ValueError, match="one target per row"):
        GaussianProcessRegression(torch.zeros(3, 1), torch.zeros(4))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        GaussianProcessRegression(torch.zeros(3), torch.zeros(3))
