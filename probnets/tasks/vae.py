"""``probnets train vae``: the small VAE on statically binarized MNIST digits."""

import os

import pyro.infer
import torch

from probnets.data import load_mnist
from probnets.models.vae import VAE
from probnets.tasks.base import Task, TaskRun, register
from probnets.train import BatchSampler
from probnets.viz.images import curves, image_rows


def binarized_mnist(split, seed, dtype, device):
    """MNIST with each pixel drawn once from Bernoulli(intensity) (fixed by ``seed``)."""
    mnist = load_mnist(split)
    generator = torch.Generator().manual_seed(seed + int(split == "test"))
    images = torch.bernoulli(mnist.images, generator=generator)
    return images.to(device=device, dtype=dtype), mnist.source


@register
class VAETask(Task):
    name = "vae"
    help = "Gaussian-latent VAE on binarized MNIST (the training loop's reference model)"
    default_steps = 2000
    default_batch_size = 100

    def add_arguments(self, parser):
        parser.add_argument("--latent-dim", type=int, default=16, help="dimension of z")
        parser.add_argument("--hidden-dim", type=int, default=256, help="hidden layer width")
        parser.add_argument("--num-test", type=int, default=1000,
                            help="held-out digits used for the test ELBO (default 1000)")

    def build(self, args, device):
        train, source = binarized_mnist("train", args.seed, args.dtype, device)
        test, _ = binarized_mnist("test", args.seed, args.dtype, device)
        test = test[:args.num_test]
        vae = VAE(28, args.latent_dim, args.hidden_dim).to(device=device, dtype=args.dtype)
        elbo = pyro.infer.Trace_ELBO()

        def evaluate(trainer):
            with torch.no_grad():
                loss = pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, test)
            return {"test_elbo_per_image": -loss / len(test)}

        return TaskRun(
            data=BatchSampler(train, batch_size=args.batch_size, seed=args.seed),
            model_fn=vae.model, guide_fn=vae.guide, loss=elbo,
            metrics_fn=lambda trainer: {"elbo_per_image": -trainer.last_loss / args.batch_size},
            eval_fn=evaluate, config=vae.config(), data_source=source,
            module=vae, extras={"test": test})

    def finish(self, run, result, args):
        vae = run.module
        test = run.extras["test"]
        sample = test[torch.linspace(0, len(test) - 1, 10).long()]  # spread over the classes
        image_rows([sample, vae.reconstruct(sample)], os.path.join(args.out, "reconstructions.png"),
                   titles=["data", "reconstruction (decoder mean)"])
        if result.history:
            steps = [row["step"] for row in result.history]
            curves({"train": (steps, [row["elbo_per_image"] for row in result.history])},
                   os.path.join(args.out, "elbo.png"), ylabel="ELBO per image")
