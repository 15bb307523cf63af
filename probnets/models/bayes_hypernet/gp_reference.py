r"""Exact Gaussian-process regression: a reference for how uncertain a regressor should be.

The 1-D gap problem asks a Bayesian hypernetwork for a predictive standard deviation
"several times larger" inside the gap and beyond the data than on the data. How much larger
an ideal Bayesian regressor is depends on its prior; a GP with a squared-exponential kernel
makes that prior explicit (its lengthscale :math:`\ell`) and its posterior exact:

.. math::

    f \sim \mathcal{GP}\big(0,\ s_f^2 \exp(-\tfrac{(x - x')^2}{2 \ell^2})\big), \qquad
    y_n = f(x_n) + \sigma \epsilon_n,

    \mu(x_*) = k_*^\top (K + \sigma^2 I)^{-1} y, \qquad
    \mathrm{Var}[f(x_*)] = s_f^2 - k_*^\top (K + \sigma^2 I)^{-1} k_*

(Rasmussen & Williams 2006, eqs. 2.25-2.26). :class:`GaussianProcessRegression` has the
``predict`` and ``noise_scale`` of :class:`.BayesianHypernet` (regression), so the same
evaluation code (e.g. :func:`probnets.experiments.bayes_hypernet.gap_metrics`) scores both.
"""

import numpy as np
import torch

from probnets.models.bayes_hypernet.checks import (
    TensorOrArray,
    as_tensor,
    check_finite,
    check_positive,
)
from probnets.models.bayes_hypernet.model import RegressionPrediction


class GaussianProcessRegression:
    """The exact GP posterior given ``x`` ``(N, 1)`` (or ``(N, D)``) and ``y`` ``(N,)``.

    :param float lengthscale: :math:`\\ell` of the squared-exponential kernel.
    :param float signal_scale: :math:`s_f`, the prior standard deviation of :math:`f`.
    :param float noise_scale: :math:`\\sigma`, the observation noise (known).
    """

    def __init__(
        self,
        x: TensorOrArray,
        y: TensorOrArray,
        lengthscale: float = 1.0,
        signal_scale: float = 1.0,
        noise_scale: float = 0.1,
    ) -> None:
        check_positive("lengthscale", lengthscale)
        check_positive("signal_scale", signal_scale)
        check_positive("noise_scale", noise_scale)
        x = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(
                f"x must be a floating-point tensor or numpy array, got "
                f"{getattr(x, 'dtype', type(x).__name__)}"
            )
        if x.dim() != 2 or len(x) == 0:
            raise ValueError(f"x must have shape (N, D) with N >= 1, got {tuple(x.shape)}")
        y = as_tensor("y", y, x)
        if y.reshape(-1).shape != (x.shape[0],):
            raise ValueError(
                f"y must hold one target per row of x ({x.shape[0]}), got {tuple(y.shape)}"
            )
        check_finite("x", x)
        check_finite("y", y)
        self.lengthscale, self.signal_scale = float(lengthscale), float(signal_scale)
        self.noise_scale = torch.tensor(float(noise_scale), dtype=x.dtype, device=x.device)
        self.x = x
        gram = self.kernel(x, x)
        gram.diagonal().add_(self.noise_scale**2)
        self._cholesky = torch.linalg.cholesky(gram)
        self._alpha = torch.cholesky_solve(y.reshape(-1, 1).to(x), self._cholesky)

    def kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The squared-exponential covariance matrix ``(len(a), len(b))``."""
        return self.signal_scale**2 * torch.exp(
            -0.5 * torch.cdist(a, b).pow(2) / self.lengthscale**2
        )

    @torch.no_grad()
    def predict(self, x: TensorOrArray, num_samples: int | None = None) -> RegressionPrediction:
        """:class:`.RegressionPrediction` at ``x`` ``(M, D)``, each field ``(M,)``;
        ``num_samples`` is accepted for a common interface and ignored (the moments are
        exact)."""
        x = as_tensor("x", x, self.x)
        if x.dim() != 2 or x.shape[1] != self.x.shape[1]:
            raise ValueError(f"x must have shape (M, {self.x.shape[1]}), got {tuple(x.shape)}")
        check_finite("x", x)
        x = x.to(self.x)
        cross = self.kernel(x, self.x)  # (M, N)
        mean = (cross @ self._alpha).squeeze(-1)
        solved = torch.cholesky_solve(cross.T, self._cholesky)  # (N, M)
        variance = (self.signal_scale**2 - (cross * solved.T).sum(-1)).clamp_min(0)
        aleatoric = self.noise_scale.expand_as(mean)
        return RegressionPrediction(
            mean, (variance + aleatoric**2).sqrt(), variance.sqrt(), aleatoric
        )
