"""SVI on a linear target with the identity generator against exact Bayesian linear regression.

With ``y = X w + ε``, ``ε ~ N(0, σ² I)`` and ``w ~ N(0, α² I)`` (bias included as a column of
ones), the posterior is ``N(μ, Σ)`` with precision ``Λ = Xᵀ X / σ² + I / α²``,
``Σ = Λ⁻¹`` and ``μ = Σ Xᵀ y / σ²``. The full-rank guide's family contains it, so SVI's
optimum is exact. The mean-field optimum of KL(q || p) for a Gaussian p has the exact mean and
variances ``1 / Λ_ii`` (not ``Σ_ii``); the inputs are correlated so the two differ.
"""

import pyro
import torch

from probnets.models.bayes_hypernet import BayesianHypernet
from probnets.train import Cosine

SIGMA, ALPHA = 0.5, 1.0


def regression_problem():
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(30, generator=g, dtype=torch.float64)
    # Strongly correlated inputs make the posterior covariance far from diagonal.
    x = torch.stack([x1, 0.8 * x1 + 0.6 * torch.randn(30, generator=g, dtype=torch.float64)], -1)
    y = (
        x @ torch.tensor([1.0, -2.0], dtype=torch.float64)
        + 0.5
        + SIGMA * torch.randn(30, generator=g, dtype=torch.float64)
    )
    design = torch.cat([x, torch.ones(30, 1, dtype=x.dtype)], -1)
    precision = design.T @ design / SIGMA**2 + torch.eye(3, dtype=x.dtype) / ALPHA**2
    covariance = torch.linalg.inv(precision)
    return x, y, covariance @ design.T @ y / SIGMA**2, covariance, precision


def fit(guide, x, y, steps=800):
    pyro.set_rng_seed(0)
    model = BayesianHypernet(
        [2, 1], generator="identity", guide=guide, noise_scale=SIGMA, prior_scale=ALPHA
    ).double()
    # Many vectorized particles and a decaying step keep the final iterate near the optimum.
    model.fit(x, y, num_steps=steps, lr=0.05, num_particles=16, lr_schedule=Cosine(1.0, 0.0, steps))
    return model


def test_full_rank_guide_recovers_the_exact_posterior():
    x, y, mean, covariance, _ = regression_problem()
    model = fit("full_rank", x, y)
    posterior = model.autoguide.get_posterior()  # over (w_1, w_2, b), the layer's weight vector
    assert posterior.loc.dtype == torch.float64
    assert torch.allclose(posterior.loc.detach(), mean, atol=0.02)
    relative = (posterior.covariance_matrix.detach() - covariance).norm() / covariance.norm()
    assert relative < 0.1
    # The posterior correlation of the two weights is strong and must be captured.
    correlation = covariance[0, 1] / (covariance[0, 0] * covariance[1, 1]).sqrt()
    fitted = posterior.covariance_matrix.detach()
    fitted_correlation = fitted[0, 1] / (fitted[0, 0] * fitted[1, 1]).sqrt()
    assert correlation < -0.6
    assert abs(fitted_correlation - correlation) < 0.05
    # The generated weights are the latent vector itself.
    ((weight, bias),) = model.sample_weights(x, 3)
    assert weight.shape == (3, 1, 2) and bias.shape == (3, 1) and weight.dtype == torch.float64


def test_mean_field_guide_matches_mean_and_diagonal_precision_only():
    x, y, mean, covariance, precision = regression_problem()
    model = fit("mean_field", x, y)
    loc, scale = model.autoguide._get_loc_and_scale("z.layer0")
    loc, variance = loc.detach()[0], scale.detach()[0] ** 2
    assert torch.allclose(loc, mean, atol=0.02)
    assert torch.allclose(variance, 1 / precision.diagonal(), rtol=0.1)
    # ... which understates the true marginal variances of the correlated weights.
    assert (variance[:2] < 0.75 * covariance.diagonal()[:2]).all()


def test_kl_weight_targets_the_tempered_posterior():
    """With ``kl_weight`` β the optimum is ``p(y | w)^(1/β) p(w)``: for a Gaussian likelihood
    the exact posterior under noise variance ``β σ²``."""
    x, y, _, _, _ = regression_problem()
    beta = 0.25
    design = torch.cat([x, torch.ones(30, 1, dtype=x.dtype)], -1)
    precision = design.T @ design / (beta * SIGMA**2) + torch.eye(3, dtype=x.dtype) / ALPHA**2
    covariance = torch.linalg.inv(precision)
    mean = covariance @ design.T @ y / (beta * SIGMA**2)
    pyro.set_rng_seed(0)
    model = BayesianHypernet(
        [2, 1],
        generator="identity",
        guide="full_rank",
        noise_scale=SIGMA,
        prior_scale=ALPHA,
        kl_weight=beta,
    ).double()
    # The narrower posterior takes the guide's scale longer to reach than the untempered one.
    model.fit(x, y, num_steps=2000, lr=0.05, num_particles=16, lr_schedule=Cosine(1.0, 0.0, 2000))
    posterior = model.autoguide.get_posterior()
    assert torch.allclose(posterior.loc.detach(), mean, atol=0.02)
    relative = (posterior.covariance_matrix.detach() - covariance).norm() / covariance.norm()
    assert relative < 0.1
    # ... which is about β times the untempered posterior covariance here (data dominate).
    untempered = torch.linalg.inv(
        design.T @ design / SIGMA**2 + torch.eye(3, dtype=x.dtype) / ALPHA**2
    )
    assert posterior.covariance_matrix.detach().trace() < 0.4 * untempered.trace()
