"""Reduced precision: loss scaling through Pyro's internal backward passes, float16 training."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, pyro_method
from torch import nn

from probnets.infer.registry import standard_estimators
from probnets.train import (
    BatchSampler,
    SVIObjective,
    TrainConfig,
    Trainer,
    load_checkpoint,
)
from probnets.train.precision import ScaledBackward, check_precision_supported


class BernoulliVAE(PyroModule):
    """A continuous and a Bernoulli latent per datum, decoded together."""

    def __init__(self, dim=4):
        super().__init__()
        self.decoder = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, dim))
        self.encoder = nn.Linear(dim, 3)

    @pyro_method
    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            b = pyro.sample("b", dist.Bernoulli(x.new_tensor(0.3)))
            loc = self.decoder(torch.cat([z, b.unsqueeze(-1)], -1))
            pyro.sample("x", dist.Normal(loc, 0.5).to_event(1), obs=x)

    @pyro_method
    def guide(self, x):
        out = self.encoder(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(out[:, :2], 1.0).to_event(1))
            pyro.sample("b", dist.Bernoulli(logits=out[:, 2]))


def gradients(name, scale=None):
    """Gradients of one fresh ``loss_and_grads`` call of estimator ``name`` in float64."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = BernoulliVAE().double()
    x = torch.randn(6, 4, dtype=torch.float64)
    elbo = standard_estimators([name])[name]()
    with pyro.poutine.trace(param_only=True) as capture:
        if scale is None:
            elbo.loss_and_grads(model.model, model.guide, x)
        else:
            with ScaledBackward(scale):
                elbo.loss_and_grads(model.model, model.guide, x)
    grads = {}
    for site, node in capture.trace.nodes.items():
        value = node["value"]
        leaf = value.unconstrained() if hasattr(value, "unconstrained") else value
        if leaf.grad is not None:
            grads[site] = leaf.grad.clone()
    return grads


@pytest.mark.parametrize("name", list(standard_estimators()))
def test_scaled_backward_scales_every_gradient_exactly(name):
    plain, scaled = gradients(name), gradients(name, scale=1024.0)
    assert plain and plain.keys() == scaled.keys()
    for site in plain:
        assert scaled[site].dtype == torch.float64
        torch.testing.assert_close(
            scaled[site], 1024.0 * plain[site], rtol=1e-9, atol=1e-12, msg=f"{name}: {site}"
        )


def test_scaled_backward_handles_explicit_seeds_and_rejects_bad_scales():
    w = torch.ones(3, requires_grad=True)
    with ScaledBackward(8.0):
        (2 * w).backward(torch.tensor([1.0, 2.0, 3.0]))
        torch.autograd.backward([(w * w).sum()])
    torch.testing.assert_close(w.grad, torch.tensor([32.0, 48.0, 64.0]))
    with pytest.raises(ValueError, match="scale must be positive"):
        ScaledBackward(0.0)


def binary_images(n=64):
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((n, 8, 8), 0.3), generator=g)


def vae_trainer(tmp_path, steps, **kwargs):
    from probnets.models.vae import VAE

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(image_size=8, latent_dim=2, hidden_dim=16)
    trainer = Trainer(
        SVIObjective(vae.model, vae.guide, pyro.infer.Trace_ELBO()),
        BatchSampler(binary_images(), batch_size=32, seed=0),
        TrainConfig(
            steps=steps,
            lr=1e-2,
            precision="16-mixed",
            progress=False,
            out_dir=str(tmp_path),
            **kwargs,
        ),
    )
    return vae, trainer


def test_float16_mixed_trains_with_float32_parameters(tmp_path):
    vae, trainer = vae_trainer(tmp_path, 80)
    result = trainer.run()
    # Float16 overflows at the initial scale are skipped and halve it; none is a bad step.
    assert trainer.bad_steps == 0 and trainer.overflow_steps < 20
    assert result.history[-1]["loss_scale"] == 2.0 ** (16 - trainer.overflow_steps)
    losses = [row["loss"] for row in result.history]
    assert sum(losses[-10:]) < 0.95 * sum(losses[:10])
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in vae.parameters())


def test_float16_overflow_skips_the_step_and_lowers_the_scale(tmp_path):
    # 2**40 times any gradient overflows float16: the first steps are skipped, not counted
    # as bad, until the scale has come down far enough.
    vae, trainer = vae_trainer(tmp_path, 80, initial_loss_scale=2.0**40, max_bad_steps=2)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    trainer.train_step(next(trainer.data))
    assert trainer.overflow_steps == 1 and trainer.bad_steps == 0
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())
    assert trainer.scaler.get_scale() == 2.0**39
    result = trainer.run()
    assert trainer.bad_steps == 0 and 1 < trainer.overflow_steps < 40
    losses = [row["loss"] for row in result.history]
    assert sum(losses[-10:]) < 0.95 * sum(losses[:10])
    # The scale is checkpointed, so a resumed run does not start overflowing again.
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["loss_scale"]["scaler"]["scale"] == trainer.scaler.get_scale()
    _, resumed = vae_trainer(tmp_path, 81, initial_loss_scale=2.0**40, resume=True)
    resumed.run()
    assert resumed.overflow_steps == trainer.overflow_steps


def test_unsupported_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(steps=1, precision="fp8")
    with pytest.raises(ValueError, match="initial_loss_scale must be positive"):
        TrainConfig(steps=1, precision="16-mixed", initial_loss_scale=0)
    check_precision_supported("16-mixed", "cpu")
    with pytest.raises(ValueError, match="not available on 'meta'"):
        check_precision_supported("bf16", "meta")
