"""``probnets train sbn``: a sigmoid belief net on dynamically binarized MNIST digits.

The REBAR / RELAX benchmark model: 200 Bernoulli units per stochastic layer, linear layers,
batch 24. ``--estimator`` picks any estimator of :func:`probnets.infer.standard_estimators`
(the model itself is unchanged). Evaluation reports the held-out ELBO during training and an
importance-sampled log-likelihood at the end.
"""

import os
from dataclasses import dataclass
from typing import Any, cast

import torch

from probnets.data import load_mnist
from probnets.infer import standard_estimators
from probnets.models.sbn import SigmoidBeliefNet, binarize
from probnets.tasks.base import Task, TaskRun, model_record, register
from probnets.tasks.config import (
    EvalConfig,
    RunConfig,
    comma_separated_ints,
    positive,
    positive_int,
    positive_ints,
    retune,
    setting,
)
from probnets.train import BatchSampler, Trainer, TrainResult
from probnets.viz.images import curves


def _dynamic_binarization(
    batch: tuple[torch.Tensor, ...], generator: torch.Generator
) -> tuple[torch.Tensor]:
    (intensities,) = batch
    return (binarize(intensities, generator=generator),)


@dataclass(kw_only=True)
class SBNConfig(RunConfig):
    """``probnets train sbn``: a sigmoid belief net on dynamically binarized MNIST."""

    steps: int = retune("steps", 5000)
    batch_size: int = retune("batch_size", 24)
    lr: float = retune("lr", 3e-4)
    resumable_fields = RunConfig.resumable_fields | {"ll_samples"}
    estimator: str = setting(
        "nvil",
        choices=list(standard_estimators()),
        help="gradient estimator for the Bernoulli layers (default nvil)",
    )
    layers: tuple[int, ...] = setting(
        (200,),
        check=positive_ints,
        parse=comma_separated_ints,
        help="stochastic layer widths, e.g. 200 or 200,200 (default 200)",
    )
    temperature: float = setting(
        0.5, check=positive, help="temperature of the relaxed estimator (default 0.5)"
    )
    num_particles: int = setting(
        2, check=positive_int, help="samples per example for loo and vimco (default 2)"
    )
    num_test: int = setting(
        1000, check=positive_int, help="held-out digits for evaluation (default 1000)"
    )
    ll_samples: int = setting(
        100, check=positive_int, help="importance samples of the final log-likelihood (default 100)"
    )


@register
class SBNTask(Task[SBNConfig, EvalConfig]):
    name = "sbn"
    help = "sigmoid belief net (Bernoulli layers) on binarized MNIST, under any estimator"
    config_class = SBNConfig

    def build(self, config: SBNConfig, device: torch.device) -> TaskRun:
        dtype = config.torch_dtype
        layers = (784,) + config.layers
        train, test = load_mnist("train"), load_mnist("test")
        images = train.images.reshape(len(train.images), -1).to(dtype=dtype)
        held_out = binarize(
            test.images[: config.num_test].reshape(-1, 784).to(dtype), seed=config.seed + 1
        ).to(device)
        net = SigmoidBeliefNet(layers, data_mean=images.mean(0)).to(device=device, dtype=dtype)
        elbo = standard_estimators(
            [config.estimator], temperature=config.temperature, num_particles=config.num_particles
        )[config.estimator]()
        batch_size = config.batch_size

        def evaluate(trainer: Trainer) -> dict[str, Any]:
            return {"test_elbo": float(net.elbo(held_out).mean())}

        return TaskRun(
            data=BatchSampler(
                images,
                batch_size=batch_size,
                seed=config.seed,
                device=device,
                transform=_dynamic_binarization,
            ),
            model_fn=net.model,
            guide_fn=net.guide,
            loss=elbo,
            module=net,
            metrics_fn=lambda trainer: {"elbo": -trainer.last_loss / batch_size},
            eval_fn=evaluate,
            data_source=train.source,
            config={"layers": list(layers), "estimator": config.estimator},
            # data_mean only initialises the output biases and is a buffer: the state dict
            # restores it
            model=model_record(net, layers=list(layers)),
            extras={"held_out": held_out},
        )

    def finish(self, run: TaskRun, result: TrainResult, config: SBNConfig) -> None:
        assert config.out is not None  # run_task has chosen the run directory
        samples = config.ll_samples
        net = cast(SigmoidBeliefNet, run.module)
        log_likelihood = net.log_likelihood(run.extras["held_out"], num_samples=samples)
        result.eval_history.append(
            {"step": result.step, f"test_log_likelihood_is{samples}": float(log_likelihood.mean())}
        )
        print(
            f"held-out importance-sampled log-likelihood ({samples} samples): "
            f"{float(log_likelihood.mean()):.2f} nats per image"
        )
        if result.eval_history:
            rows = [r for r in result.eval_history if "test_elbo" in r]
            layers = ",".join(str(width) for width in config.layers)
            curves(
                {
                    "held-out ELBO": ([r["step"] for r in rows], [r["test_elbo"] for r in rows]),
                    "train ELBO": (
                        [r["step"] for r in result.history],
                        [r["elbo"] for r in result.history],
                    ),
                },
                os.path.join(config.out, "elbo.png"),
                ylabel="nats per image",
                title=f"SBN {layers}, {config.estimator}",
            )
