"""``probnets train air`` / ``probnets eval air``: AIR and DAIR on multi-MNIST (0–2 digits on a
50×50 canvas), with held-out count accuracy.

By default a run trains on canvases composed afresh at every step from the training digits
(:class:`~probnets.data.multi_mnist.CanvasStream`) minus a stratified tenth held out for
validation; it evaluates an exponential moving average of the weights
(:class:`~probnets.train.averaging.ExponentialMovingAverage`, also what the checkpoint loads
as) on canvases of those validation digits during training, and on canvases of the MNIST test
digits once, at the end, with a 95% Wilson interval (``summary.json``). ``--fixed-canvases
--validation-fraction 0 --ema 0 --num-test 1000`` is the run before these defaults: a fixed set
of ``--num-train`` canvases, the test canvases evaluated during training, the last iterate.
"""

import contextlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Optional, cast

import numpy as np
import torch

from probnets.data import check_images, multi_mnist
from probnets.data.multi_mnist import CanvasStream, MultiMNIST, digit_pool
from probnets.experiments.air import (
    BASELINES,
    ESTIMATORS,
    binomial_interval,
    evaluate_counts,
    make_elbo,
)
from probnets.models.air import AIR
from probnets.tasks.base import (
    Task,
    TaskRun,
    load_npz_arrays,
    load_trained,
    model_record,
    register,
)
from probnets.tasks.config import (
    ConfigError,
    EvalConfig,
    RunConfig,
    integer_at_least,
    non_negative_int,
    number_in,
    positive,
    positive_int,
    retune,
    setting,
)
from probnets.train import Anneal, BatchSampler, Exponential, Trainer, TrainResult
from probnets.train.averaging import AverageWeights, ExponentialMovingAverage
from probnets.viz.air import confusion_figure, scenes_with_boxes
from probnets.viz.images import curves

_count_prior = number_in(0, 1, low_open=True)
_fraction = number_in(0, 1, high_open=True)
_decay = number_in(0, 1, high_open=True)
# Steps between updates of the weight average, each standing for the steps since the last
# (AverageWeights): a quarter of the cost of updating at every step, the same span of the
# average; it divides the default checkpoint and evaluation intervals.
_AVERAGE_EVERY = 4


@dataclass(kw_only=True)
class AIRConfig(RunConfig):
    """``probnets train air``: AIR or DAIR on multi-MNIST canvases."""

    steps: int = retune("steps", 10000)
    batch_size: int = retune("batch_size", 64)
    # The reference's lr 1e-4 and count prior k = 0.01 leave the count at chance for long;
    # lr 5e-4 and k = 1e-4 learn the count early (guides/air.md).
    lr: float = retune("lr", 5e-4)
    estimator: str = setting(
        "score",
        choices=ESTIMATORS,
        help="gradient estimator for z_pres (default: score function with "
        "the baseline LSTM, as the paper)",
    )
    baseline: str = setting(
        "lstm",
        choices=BASELINES,
        help="score-function baseline: the model's LSTM (default), the "
        "estimator's NVIL MLP, a decaying average, or none",
    )
    baseline_lr: float = setting(
        1e-2, check=positive, help="learning rate of the baseline LSTM (default 1e-2)"
    )
    temperature: float = setting(
        0.5, check=positive, help="(initial) temperature of relaxed/rebar/relax (default 0.5)"
    )
    num_particles: int = setting(
        5, check=positive_int, help="particles of {estimator} vimco (default 5)"
    )
    dair: bool = setting(False, help="DAIR: the guide reads image minus reconstruction so far")
    fresh_canvases: bool = setting(
        True,
        flag="--fixed-canvases",
        help="train on a fixed set of {num_train} canvases instead of canvases composed "
        "afresh from the training digits at every step",
    )
    num_train: int = setting(
        10000, check=positive_int, help="training canvases of {fixed_canvases} (default 10000)"
    )
    validation_fraction: float = setting(
        0.1,
        check=_fraction,
        help="share of the training digits held out to build the validation canvases "
        "evaluated during training (default 0.1); 0: train on all and evaluate the test "
        "canvases during training",
    )
    num_validation: int = setting(
        1000, check=positive_int, help="validation canvases (default 1000)"
    )
    num_test: int = setting(
        2000,
        check=positive_int,
        help="test canvases, built from MNIST test digits, scored at the end (default 2000)",
    )
    ema: float = setting(
        0.999,
        check=_decay,
        help="decay of the moving average of the weights that is evaluated "
        "and saved (default 0.999); 0: the last iterate",
    )
    max_digits: int = setting(
        2, check=non_negative_int, help="digits per canvas are uniform on 0..max (default 2)"
    )
    canvas_size: int = setting(50, check=integer_at_least(28), help="canvas side (50)")
    max_objects: int = setting(3, check=positive_int, help="model steps T (default 3)")
    window_size: int = setting(28, check=positive_int, help="object window (28)")
    rnn_hidden_size: int = setting(256, check=positive_int, help="LSTM units (256)")
    z_pres_prior: float = setting(
        1e-4,
        check=_count_prior,
        help="k of the count prior p(n) ~ k^n (default 1e-4; the "
        "reference's published run used 0.01)",
    )
    z_pres_prior_start: Optional[float] = setting(
        None, check=_count_prior, help="anneal k exponentially from this value to {z_pres_prior}"
    )
    anneal_steps: Optional[int] = setting(
        None, check=positive_int, help="steps of the k annealing (default: {steps})"
    )
    scale_prior_sd: float = setting(
        0.2, check=positive, help="prior sd of the window scale (default 0.2)"
    )


@dataclass(kw_only=True)
class AIREvalConfig(EvalConfig):
    """``probnets eval air``: count accuracy of an AIR checkpoint on labelled canvases."""

    data: str = setting(help=".npz with `images` (N, H, W) in [0, 1] or uint8 and `counts` (N,)")


@register
class AIRTask(Task[AIRConfig, AIREvalConfig]):
    name = "air"
    help = "Attend, Infer, Repeat (and DAIR) on multi-MNIST, 0-2 digits on 50x50 canvases"
    config_class = AIRConfig
    eval_config_class = AIREvalConfig

    def build(self, config: AIRConfig, device: torch.device) -> TaskRun:
        dtype = config.torch_dtype
        canvases: dict[str, Any] = dict(
            max_digits=config.max_digits,
            canvas_size=config.canvas_size,
            seed=config.seed,
            validation_fraction=config.validation_fraction,
        )
        test = _labelled(multi_mnist(config.num_test, split="test", **canvases), device, dtype)
        if config.validation_fraction:
            held_out = _labelled(
                multi_mnist(config.num_validation, split="validation", **canvases), device, dtype
            )
        else:  # the run before the validation split: the test canvases during training
            held_out = (test[0][: config.num_validation], test[1][: config.num_validation])
        data, train_probe, source = _training_data(config, canvases, device, dtype)
        air = AIR(
            image_size=config.canvas_size,
            num_steps=config.max_objects,
            window_size=config.window_size,
            rnn_hidden_size=config.rnn_hidden_size,
            z_pres_prior=config.z_pres_prior,
            scale_prior_sd=config.scale_prior_sd,
            dair=config.dair,
            use_baseline=config.estimator in ("score", "tracegraph") and config.baseline == "lstm",
        ).to(device=device, dtype=dtype)
        elbo = make_elbo(
            config.estimator, config.baseline, config.temperature, config.num_particles
        )
        schedules: list[Anneal] = []
        if config.z_pres_prior_start is not None:
            schedules.append(
                Anneal(
                    air,
                    "z_pres_prior",
                    Exponential(
                        config.z_pres_prior_start,
                        config.z_pres_prior,
                        steps=config.anneal_steps or config.steps,
                    ),
                )
            )
        average = None
        if config.ema:
            # the baseline LSTM only serves the gradient estimator: not averaged
            average = ExponentialMovingAverage(
                air,
                decay=config.ema,
                names=[
                    name for name, _ in air.named_parameters() if not name.startswith("baseline")
                ],
            )
        held_out_name = (
            "validation_count_accuracy" if config.validation_fraction else "test_count_accuracy"
        )
        batch_size = config.batch_size

        def evaluate(trainer: Trainer) -> dict[str, Any]:
            with _weights(average):
                accuracy, _ = evaluate_counts(air, *held_out)
                train_accuracy, _ = evaluate_counts(air, *train_probe)
            return {held_out_name: accuracy, "train_count_accuracy": train_accuracy}

        def metrics(trainer: Trainer) -> dict[str, Any]:
            return {"elbo_per_image": -trainer.last_loss / batch_size}

        return TaskRun(
            data=data,
            model_fn=air.model,
            guide_fn=air.guide,
            loss=elbo,
            param_groups={"*baseline*": {"lr": config.baseline_lr}},
            schedules=schedules,
            metrics_fn=metrics,
            eval_fn=evaluate,
            config=air.config(),
            model=model_record(air, **air.config()),
            data_source=source,
            module=air,
            callbacks=[AverageWeights(average, every=_AVERAGE_EVERY)]
            if average is not None
            else [],
            state_modules=[average] if average is not None else [],
            extras={"test": test, "average": average, "held_out_name": held_out_name},
        )

    def finish(self, run: TaskRun, result: TrainResult, config: AIRConfig) -> None:
        assert config.out is not None  # run_task has chosen the run directory
        with _weights(run.extras["average"]):
            final = self._report(run, config)
        history = result.eval_history
        last = history[-1] if history and history[-1]["step"] == result.step else {}
        history.append({**last, "step": result.step, **final})
        if history[:-1]:
            steps = [row["step"] for row in history[:-1]]
            name = run.extras["held_out_name"]
            label = "validation" if name.startswith("validation") else "held-out"
            curves(
                {
                    label: (steps, [r[name] for r in history[:-1]]),
                    "train": (steps, [r["train_count_accuracy"] for r in history[:-1]]),
                },
                os.path.join(config.out, "accuracy.png"),
                ylabel="count accuracy (fraction of images)",
            )
        if result.history:
            steps = [row["step"] for row in result.history]
            curves(
                {"train": (steps, [row["elbo_per_image"] for row in result.history])},
                os.path.join(config.out, "elbo.png"),
                ylabel="ELBO per image (nats)",
            )

    @staticmethod
    def _report(run: TaskRun, config: AIRConfig) -> dict[str, Any]:
        """Figures of the test canvases and the final test accuracy with its interval."""
        assert config.out is not None  # run_task has chosen the run directory
        air = cast(AIR, run.module)
        images, counts = run.extras["test"]
        sample = images[:10]
        inferred = air.infer(sample)
        scenes_with_boxes(
            [sample, air.reconstruct(sample, inferred)],
            inferred.z_pres,
            inferred.boxes,
            os.path.join(config.out, "reconstructions.png"),
            titles=["test data (boxes: red step 1, green 2, blue 3)", "reconstruction"],
        )
        accuracy, confusion = evaluate_counts(air, images, counts)
        confusion_figure(
            confusion,
            os.path.join(config.out, "confusion.png"),
            title=f"test count confusion (accuracy {accuracy:.3f})",
        )
        correct = int(confusion.diagonal().sum())
        low, high = binomial_interval(correct, len(images))
        return {
            "test_count_accuracy": accuracy,
            "test_count_accuracy_interval": [low, high],
            "test_num_images": len(images),
            "interval": "wilson, 95%",
        }

    def evaluate(self, config: AIREvalConfig, device: torch.device) -> dict[str, Any]:
        air = load_trained(AIR, config.checkpoint, device)
        image_array, count_array = load_npz_arrays(config.data, ("images", "counts"))
        if image_array.dtype == np.uint8:
            image_array = image_array.astype(np.float32) / 255
        dtype = next(air.parameters()).dtype
        images = torch.as_tensor(image_array).to(device=device, dtype=dtype)
        counts = torch.as_tensor(count_array)
        if len(images) == 0:
            raise ConfigError("data", f"{{data}} {config.data}: holds no images")
        try:
            check_images(images, name="data images", size=air.image_size)
        except (TypeError, ValueError) as error:
            raise ConfigError("data", f"{{data}} {config.data}: {error}") from None
        if counts.is_floating_point() or counts.shape != (len(images),) or (counts < 0).any():
            raise ConfigError(
                "data",
                f"{{data}} {config.data}: counts must be non-negative "
                f"integers of shape ({len(images)},), got "
                f"{counts.dtype} {tuple(counts.shape)}",
            )
        accuracy, confusion = evaluate_counts(air, images, counts)
        low, high = binomial_interval(int(confusion.diagonal().sum()), len(images))
        return {
            "count_accuracy": accuracy,
            "count_accuracy_interval": [low, high],
            "interval": "wilson, 95%",
            "num_images": len(images),
            "confusion": confusion.tolist(),
        }


def _labelled(
    canvases: MultiMNIST, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, counts)`` of a :class:`~probnets.data.MultiMNIST` set, images on ``device``."""
    return canvases.images.to(device=device, dtype=dtype), canvases.counts


def _training_data(
    config: AIRConfig, canvases: dict[str, Any], device: torch.device, dtype: torch.dtype
) -> tuple[Iterator[Any], tuple[torch.Tensor, torch.Tensor], str]:
    """The batches of a run (fresh or fixed canvases), a fixed probe of training canvases
    ``(images, counts)`` for the training accuracy, and the data source's description."""
    if config.fresh_canvases:
        pool = digit_pool("train", config.validation_fraction)
        stream = CanvasStream(
            pool.images,
            config.batch_size,
            max_digits=config.max_digits,
            canvas_size=config.canvas_size,
            seed=config.seed,
            device=device,
            dtype=dtype,
        )
        probe = _labelled(
            multi_mnist(config.num_validation, split="train", **canvases), device, dtype
        )
        return stream, probe, f"multi-mnist composed afresh ({pool.source} digits)"
    train = multi_mnist(config.num_train, split="train", **canvases)
    images = train.images.to(device=device, dtype=dtype)
    probe = (images[: config.num_validation], train.counts[: config.num_validation])
    return (
        BatchSampler(images, batch_size=config.batch_size, seed=config.seed),
        probe,
        f"multi-mnist ({train.source} digits)",
    )


def _weights(average: ExponentialMovingAverage | None) -> AbstractContextManager[Any]:
    """A context in which the model holds the averaged weights (or, without an average, its
    own)."""
    return average.swapped() if average is not None else contextlib.nullcontext()
