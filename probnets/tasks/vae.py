"""``probnets train vae``: the small VAE on statically binarized MNIST digits."""

import os
from dataclasses import dataclass
from typing import Any, Literal, cast

import pyro.infer
import torch

from probnets.data import load_mnist
from probnets.models.vae import VAE
from probnets.tasks.base import Task, TaskRun, model_record, register
from probnets.tasks.config import EvalConfig, RunConfig, positive_int, retune, setting
from probnets.train import BatchSampler, Trainer, TrainResult
from probnets.viz.images import curves, image_rows


def binarized_mnist(
    split: Literal["train", "test"], seed: int, dtype: torch.dtype, device: torch.device | str
) -> tuple[torch.Tensor, str]:
    """MNIST with each pixel drawn once from Bernoulli(intensity) (fixed by ``seed``)."""
    mnist = load_mnist(split)
    generator = torch.Generator().manual_seed(seed + int(split == "test"))
    images = torch.bernoulli(mnist.images, generator=generator)
    return images.to(device=device, dtype=dtype), mnist.source


@dataclass(kw_only=True)
class VAEConfig(RunConfig):
    """``probnets train vae``: a Gaussian-latent VAE on binarized MNIST."""

    steps: int = retune("steps", 2000)
    batch_size: int = retune("batch_size", 100)
    latent_dim: int = setting(16, check=positive_int, help="dimension of z")
    hidden_dim: int = setting(256, check=positive_int, help="hidden layer width")
    num_test: int = setting(
        1000, check=positive_int, help="held-out digits used for the test ELBO (default 1000)"
    )


@register
class VAETask(Task[VAEConfig, EvalConfig]):
    name = "vae"
    help = "Gaussian-latent VAE on binarized MNIST (the training loop's reference model)"
    config_class = VAEConfig

    def build(self, config: VAEConfig, device: torch.device) -> TaskRun:
        dtype = config.torch_dtype
        train, source = binarized_mnist("train", config.seed, dtype, device)
        test, _ = binarized_mnist("test", config.seed, dtype, device)
        test = test[: config.num_test]
        vae = VAE(28, config.latent_dim, config.hidden_dim).to(device=device, dtype=dtype)
        elbo = pyro.infer.Trace_ELBO()
        batch_size = config.batch_size

        def evaluate(trainer: Trainer) -> dict[str, Any]:
            with torch.no_grad():
                loss = pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, test)
            return {"test_elbo_per_image": -loss / len(test)}

        return TaskRun(
            data=BatchSampler(train, batch_size=batch_size, seed=config.seed),
            model_fn=vae.model,
            guide_fn=vae.guide,
            loss=elbo,
            metrics_fn=lambda trainer: {"elbo_per_image": -trainer.last_loss / batch_size},
            eval_fn=evaluate,
            config=vae.config(),
            model=model_record(vae, **vae.config()),
            data_source=source,
            module=vae,
            extras={"test": test},
        )

    def finish(self, run: TaskRun, result: TrainResult, config: VAEConfig) -> None:
        assert config.out is not None  # run_task has chosen the run directory
        vae = cast(VAE, run.module)
        test = run.extras["test"]
        sample = test[torch.linspace(0, len(test) - 1, 10).long()]  # spread over the classes
        image_rows(
            [sample, vae.reconstruct(sample)],
            os.path.join(config.out, "reconstructions.png"),
            titles=["data", "reconstruction (decoder mean)"],
        )
        if result.history:
            steps = [row["step"] for row in result.history]
            curves(
                {"train": (steps, [row["elbo_per_image"] for row in result.history])},
                os.path.join(config.out, "elbo.png"),
                ylabel="ELBO per image (nats)",
            )
