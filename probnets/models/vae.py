"""A small variational autoencoder (Kingma & Welling, 2014) on binarized images.

The generative model is

.. math::

    z \\sim \\mathcal N(0, I_d), \\qquad
    x_i \\mid z \\sim \\mathrm{Bernoulli}(\\sigma(f_\\theta(z))_i),

and the guide is the amortized Gaussian :math:`q_\\phi(z \\mid x) = \\mathcal N(\\mu_\\phi(x),
\\mathrm{diag}\\,\\sigma^2_\\phi(x))`. It is the smallest complete Pyro model here and the one the
training loop's own tests run.
"""

import math
import os
from collections.abc import Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, pyro_method
from torch import nn

from probnets.data.validation import check_images, check_size, check_tensor
from probnets.loading import Loadable


class VAE(Loadable, PyroModule):
    """Gaussian-latent VAE with a Bernoulli likelihood.

    :param int image_size: side of the (square) input images.
    :param int latent_dim: dimension of ``z``.
    :param int hidden_dim: width of the encoder's and decoder's hidden layer.
    """

    def __init__(self, image_size: int = 28, latent_dim: int = 16, hidden_dim: int = 256) -> None:
        super().__init__()
        for name, value in (
            ("image_size", image_size),
            ("latent_dim", latent_dim),
            ("hidden_dim", hidden_dim),
        ):
            check_size(name, value)
        self.image_size, self.latent_dim, self.hidden_dim = image_size, latent_dim, hidden_dim
        pixels = image_size * image_size
        self.encoder = nn.Sequential(
            nn.Linear(pixels, hidden_dim), nn.Softplus(), nn.Linear(hidden_dim, 2 * latent_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.Softplus(), nn.Linear(hidden_dim, pixels)
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments: ``VAE(**config())`` is this model untrained."""
        return {
            "image_size": self.image_size,
            "latent_dim": self.latent_dim,
            "hidden_dim": self.hidden_dim,
        }

    def model_config(self) -> dict[str, Any]:
        return self.config()

    @classmethod
    def legacy_record(
        cls, extra: Mapping[str, Any], path: str | os.PathLike[str]
    ) -> dict[str, Any] | None:
        """``probnets train vae`` checkpoints written before the model record kept the
        constructor arguments in ``extra["config"]``."""
        config = extra.get("config")
        if extra.get("task") != "vae" or not isinstance(config, dict):
            return None
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "config": config}

    def _flat(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, size=self.image_size)
        check_tensor("images", images, next(self.parameters()))  # the module's dtype, device
        return images.reshape(images.shape[0], -1)

    @pyro_method
    def model(self, images: torch.Tensor) -> None:
        """``p(x, z)``: ``images`` (N, H, W) in [0, 1] are observed."""
        x = self._flat(images)
        # pyro's stub types plate's device as str; a torch.device is what it takes
        with pyro.plate("data", x.shape[0], device=x.device):  # type: ignore[arg-type]
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    @pyro_method
    def guide(self, images: torch.Tensor) -> None:
        """``q(z | x)`` for ``images`` (N, H, W)."""
        x = self._flat(images)
        # pyro's stub types plate's device as str; a torch.device is what it takes
        with pyro.plate("data", x.shape[0], device=x.device):  # type: ignore[arg-type]
            loc, log_scale = self.encoder(x).chunk(2, dim=-1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Decoder mean at the guide's mean code: (N, H, W) probabilities."""
        x = self._flat(images)
        loc, _ = self.encoder(x).chunk(2, dim=-1)
        return torch.sigmoid(self.decoder(loc)).reshape(images.shape)

    @torch.no_grad()
    def log_likelihood(self, images: torch.Tensor, num_samples: int = 100) -> torch.Tensor:
        """Importance-sampled estimate of :math:`\\log p(x)` per image (Burda et al., 2016)."""
        check_size("num_samples", num_samples)
        x = self._flat(images)
        loc, log_scale = self.encoder(x).chunk(2, dim=-1)
        q = dist.Normal(loc, log_scale.exp()).to_event(1)
        z = q.sample((num_samples,))
        prior = dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1)
        log_w = (
            prior.log_prob(z)
            + dist.Bernoulli(logits=self.decoder(z)).to_event(1).log_prob(x)
            - q.log_prob(z)
        )
        return torch.logsumexp(log_w, 0) - math.log(num_samples)
