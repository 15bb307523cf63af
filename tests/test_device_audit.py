"""Device hygiene: tensors follow their inputs; nothing is pinned to CUDA by hand."""

import pathlib
import re

import pyro
import pyro.infer
import pytest
import torch

SOURCE = pathlib.Path(__file__).resolve().parent.parent / "probnets"
PINNED = re.compile(r"\.cuda\(|device=['\"]cuda|torch\.device\(['\"]cuda['\"]\)")


def test_no_hand_pinned_cuda_in_library_code():
    offenders = []
    for path in SOURCE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PINNED.search(line) and "cuda:LOCAL_RANK" not in line:
                offenders.append(f"{path.relative_to(SOURCE.parent)}:{number}: {line.strip()}")
    # The only allowed place is device selection itself.
    offenders = [
        o
        for o in offenders
        if not o.startswith(("probnets/train/devices.py", "probnets/train/distributed.py"))
    ]
    assert not offenders, "\n".join(offenders)


@pytest.mark.cuda
def test_vae_trains_on_cuda():
    from probnets.models.vae import VAE
    from probnets.train import BatchSampler, SVIObjective, TrainConfig, Trainer

    device = torch.device("cuda")
    pyro.clear_param_store()
    vae = VAE(8, 2, 16).to(device)
    images = torch.bernoulli(torch.full((64, 8, 8), 0.3, device=device))
    trainer = Trainer(
        SVIObjective(vae.model, vae.guide, pyro.infer.Trace_ELBO()),
        BatchSampler(images, batch_size=32),
        TrainConfig(steps=5, progress=False),
    )
    trainer.run()
    assert all(p.device.type == "cuda" for p in vae.parameters())
