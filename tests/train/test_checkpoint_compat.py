"""Checkpoints written by earlier versions of the Trainer resume with this one.

``data/vae_step3.pt`` was written by the Trainer as it was before it was split into parts
(``probnets.train`` at commit e683648): a VAE (6x6 images, latent 2, hidden 8) trained for 3
of 6 steps with a parameter group, gradient clipping and an annealed attribute.
``data/vae_step6_params.pt`` holds the module state that the same code reached after an
uninterrupted 6-step run. Resuming the old checkpoint must land on exactly those values.
"""

import pathlib
import shutil

import pyro
import pyro.infer
import torch

from probnets.models.vae import VAE
from probnets.train import (
    Anneal,
    BatchSampler,
    Exponential,
    SVIObjective,
    TrainConfig,
    Trainer,
    load_checkpoint,
)

DATA = pathlib.Path(__file__).resolve().parent / "data"


class Holder:
    temperature = 1.0


def images():
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((24, 6, 6), 0.3), generator=g)


def test_old_checkpoint_resumes_and_continues_exactly(tmp_path):
    shutil.copy(DATA / "vae_step3.pt", tmp_path / "last.pt")
    pyro.clear_param_store()
    pyro.set_rng_seed(123)  # the checkpoint's random state replaces this
    vae = VAE(image_size=6, latent_dim=2, hidden_dim=8)
    holder = Holder()
    config = TrainConfig(
        steps=6,
        lr=1e-2,
        param_groups={"decoder.*": {"lr": 5e-3}},
        clip_norm=10.0,
        schedules=[Anneal(holder, "temperature", Exponential(1.0, 0.1, 6))],
        out_dir=str(tmp_path),
        resume=True,
        progress=False,
    )
    trainer = Trainer(
        SVIObjective(vae.model, vae.guide, pyro.infer.Trace_ELBO()),
        BatchSampler(images(), batch_size=8, seed=99),
        config,
    )
    result = trainer.run()
    assert [row["step"] for row in result.history] == [4, 5, 6]
    assert holder.temperature == Exponential(1.0, 0.1, 6)(5)
    expected = torch.load(DATA / "vae_step6_params.pt", weights_only=True)
    resumed = vae.state_dict()
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 6
