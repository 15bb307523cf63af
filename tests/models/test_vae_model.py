import pyro
import pyro.infer
import pytest
import torch

from probnets.models.vae import VAE
from probnets.train import BatchSampler, SVIObjective, TrainConfig, Trainer


def test_float64_end_to_end():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(image_size=8, latent_dim=2, hidden_dim=16).double()
    images = torch.bernoulli(torch.full((32, 8, 8), 0.4, dtype=torch.float64))
    Trainer(
        SVIObjective(vae.model, vae.guide, pyro.infer.Trace_ELBO()),
        BatchSampler(images, batch_size=16),
        TrainConfig(steps=3, progress=False),
    ).run()
    assert all(p.dtype == torch.float64 for p in vae.parameters())
    assert vae.reconstruct(images).dtype == torch.float64
    log_px = vae.log_likelihood(images, num_samples=5)
    assert log_px.shape == (32,) and log_px.dtype == torch.float64
    assert (log_px < 0).all()


def test_bad_inputs_are_named():
    vae = VAE(image_size=8, latent_dim=2, hidden_dim=16)
    with pytest.raises(ValueError, match=r"must be 8x8 images"):
        vae.model(torch.rand(4, 28, 28))
    with pytest.raises(ValueError, match="NaN"):
        vae.guide(torch.full((4, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        VAE(latent_dim=0)
