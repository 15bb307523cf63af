"""``probnets train bayes-hypernet``: Bayesian hypernetworks on 1-D gap regression or MNIST."""

import os
from dataclasses import dataclass
from typing import Any, Literal, Optional, cast

import pyro.infer
import torch

from probnets.experiments.bayes_hypernet import (
    classification_metrics,
    default_embedding_dim,
    gap_metrics,
    mnist_arrays,
    out_of_distribution,
)
from probnets.models.bayes_hypernet import (
    BayesianHypernet,
    expected_calibration_error,
)
from probnets.models.bayes_hypernet.generators import LAYER_GENERATORS
from probnets.models.bayes_hypernet.guides import GUIDES
from probnets.models.bayes_hypernet.model import (
    PARAMETERIZATIONS,
    ClassificationPrediction,
    RegressionPrediction,
)
from probnets.models.bayes_hypernet.target import ACTIVATIONS
from probnets.models.bayes_hypernet.toy import gap_function, gap_regression
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
    one_of,
    positive,
    positive_int,
    retune,
    setting,
)
from probnets.train import BatchSampler, Trainer, TrainResult
from probnets.viz.uncertainty import predictive_bands, reliability_diagram


@dataclass(kw_only=True)
class BayesHypernetConfig(RunConfig):
    """``probnets train bayes-hypernet``: a Bayesian hypernetwork on 1-D gap regression or
    MNIST. ``None`` sizes take the problem's default (see each field).

    With no model flags the model is :class:`BayesianHypernet`'s default, trained as its
    ``fit`` trains it: per-layer embeddings with the identity generator (the embeddings are
    the weights: a mean-field BNN under a N(0, 1) prior), a guide started at standard
    deviation 0.01, a tanh target for regression and ReLU for classification, and the
    learning rate decaying along a half cosine to a tenth (``--lr-schedule cosine:0.1``).
    The earlier task defaults are ``--parameterization unit`` (gap1d) or ``--generator
    linear`` (mnist) with ``--init-scale 0.1 --lr-schedule constant``.
    """

    steps: int = retune("steps", 3000)
    batch_size: int = retune("batch_size", 100)
    lr: float = retune("lr", 1e-2)
    lr_schedule: str = retune("lr_schedule", "cosine:0.1")
    resumable_fields = RunConfig.resumable_fields | {"num_samples"}
    problem: Literal["gap1d", "mnist"] = setting(
        "gap1d",
        choices=["gap1d", "mnist"],
        help="gap1d: sin(x) with no data in (-1, 1); mnist: digit classes",
    )
    guide: Literal["mean_field", "full_rank", "flow", "delta"] = setting(
        "mean_field",
        choices=list(GUIDES),
        help="variational family over embeddings (delta: MAP embeddings, the "
        "deterministic-hypernet baseline)",
    )
    parameterization: Optional[Literal["layer", "unit", "input_unit"]] = setting(
        None,
        choices=list(PARAMETERIZATIONS),
        help="one embedding per layer (the default), per unit (Karaletsos et al.) or per "
        "input-side unit",
    )
    generator: Optional[Literal["identity", "linear", "mlp", "subspace"]] = setting(
        None,
        choices=list(LAYER_GENERATORS),
        help="weight generator of the layer parameterization (default identity, the "
        "mean-field BNN; linear if {embedding_dim} is given)",
    )
    embedding_dim: Optional[int] = setting(
        None,
        check=positive_int,
        help="dimension of each embedding (default 2 for units, 8 for input units and "
        "layers with a generator other than identity)",
    )
    hidden_dim: int = setting(32, check=positive_int, help="hidden width of the weight generators")
    width: Optional[int] = setting(
        None,
        check=positive_int,
        help="hidden width of the target MLP (default 32 gap1d, 100 mnist)",
    )
    depth: Optional[int] = setting(
        None, check=positive_int, help="hidden layers of the target MLP (default 2 gap1d, 1 mnist)"
    )
    activation: Optional[Literal["relu", "tanh", "sigmoid", "elu", "gelu", "silu", "softplus"]] = (
        setting(
            None,
            check=one_of(tuple(ACTIVATIONS)),
            help="target activation (default tanh for gap1d, relu for mnist)",
        )
    )
    noise: Literal["fixed", "learned"] = setting(
        "fixed",
        choices=["fixed", "learned"],
        help="regression noise: fixed at {noise_scale} or learned",
    )
    noise_scale: float = setting(
        0.1, check=positive, help="regression noise std (the data's is 0.1)"
    )
    prior_scale: float = setting(1.0, check=positive, help="prior std of the embeddings")
    init_scale: Optional[float] = setting(
        None,
        check=positive,
        help="initial std of the Gaussian and flow guides (default 0.01 with the identity "
        "generator, 0.1 otherwise)",
    )
    kl_weight: float = setting(
        1.0,
        check=positive,
        help="weight of the prior (KL) terms against the likelihood; below 1 a tempered "
        "posterior (input_unit on mnist: 0.1, chosen on held-out training digits)",
    )
    hypernet_prior_scale: Optional[float] = setting(
        None,
        check=positive,
        help="Normal prior std on the hypernetwork's parameters (MAP unless {hypernet_posterior})",
    )
    hypernet_posterior: bool = setting(
        False, help="infer the hypernetwork's parameters as well (needs {hypernet_prior_scale})"
    )
    num_particles: int = setting(
        1, check=positive_int, help="samples of the embeddings per ELBO estimate"
    )
    num_points: int = setting(120, check=positive_int, help="gap1d training points")
    num_train: int = setting(
        60000,
        check=positive_int,
        help="mnist training digits used (all of the offline subset's 4000)",
    )
    num_test: int = setting(1000, check=positive_int, help="mnist test digits")
    num_samples: int = setting(50, check=positive_int, help="posterior samples for predictions")

    def validate(self) -> None:
        if self.hypernet_posterior and self.hypernet_prior_scale is None:
            raise ConfigError(
                "hypernet_posterior",
                "{hypernet_posterior} needs "
                "{hypernet_prior_scale} (the prior of the "
                "parameters it infers)",
            )


@dataclass(kw_only=True)
class BayesHypernetEvalConfig(EvalConfig):
    """``probnets eval bayes-hypernet``: predictive metrics of a checkpoint on labelled data."""

    data: str = setting(
        help=".npz with `x` (N, inputs) and `y` (N,) class labels or (N,) / "
        "(N, outputs) regression targets"
    )
    num_samples: int = setting(
        100, check=positive_int, help="posterior samples of the embeddings (default 100)"
    )


@register
class BayesHypernetTask(Task[BayesHypernetConfig, BayesHypernetEvalConfig]):
    name = "bayes-hypernet"
    help = (
        "Bayesian hypernetwork (priors over layer or unit embeddings) on 1-D gap "
        "regression or MNIST digits"
    )
    config_class = BayesHypernetConfig
    eval_config_class = BayesHypernetEvalConfig

    def build(self, config: BayesHypernetConfig, device: torch.device) -> TaskRun:
        dtype = config.torch_dtype
        task: Literal["regression", "classification"]
        extras: dict[str, Any]  # the held-out data finish() and the evaluation read
        if config.problem == "gap1d":
            x, y = gap_regression(
                config.num_points, noise=0.1, seed=config.seed, dtype=dtype, device=device
            )
            widths = [1] + [config.width or 32] * (config.depth or 2) + [1]
            task, source, extras = "regression", "gap1d (synthetic)", {"x": x, "y": y}
        else:
            x, y, source = mnist_arrays("train", config.num_train, dtype, device)
            test_x, test_y, _ = mnist_arrays("test", config.num_test, dtype, device)
            widths = [784] + [config.width or 100] * (config.depth or 1) + [10]
            task = "classification"
            extras = {
                "test_x": test_x,
                "test_y": test_y,
                "ood": out_of_distribution(test_x, config.seed),
            }
        model = _make_model(config, widths, task).to(device=device, dtype=dtype)
        model.num_data = x.shape[0]
        elbo = pyro.infer.Trace_ELBO(
            num_particles=config.num_particles,
            vectorize_particles=config.num_particles > 1,
            max_plate_nesting=1,
        )
        batch_size = config.batch_size if config.batch_size < x.shape[0] else None
        num_samples = config.num_samples

        def evaluate(trainer: Trainer) -> dict[str, Any]:
            if config.problem == "gap1d":
                return gap_metrics(model, num_samples)
            prediction = model.predict(extras["test_x"], num_samples)
            ood = {
                name: model.predict(images, num_samples) for name, images in extras["ood"].items()
            }
            assert isinstance(prediction, ClassificationPrediction)  # mnist is a classification
            assert all(isinstance(p, ClassificationPrediction) for p in ood.values())
            return classification_metrics(
                prediction, extras["test_y"], cast(dict[str, ClassificationPrediction], ood)
            )

        model_config = model.config()
        return TaskRun(
            data=BatchSampler(x, y, batch_size=batch_size, seed=config.seed),
            model_fn=model.model,
            guide_fn=model.guide,
            loss=elbo,
            metrics_fn=lambda trainer: {"elbo_per_example": -trainer.last_loss / x.shape[0]},
            eval_fn=evaluate,
            config={"problem": config.problem, **model_config},
            model=model_record(model, **model_config),
            data_source=source,
            module=model,
            extras=extras,
        )

    def finish(self, run: TaskRun, result: TrainResult, config: BayesHypernetConfig) -> None:
        assert config.out is not None  # run_task has chosen the run directory
        model = cast(BayesianHypernet, run.module)
        if config.problem == "gap1d":
            grid = torch.linspace(-6, 6, 241).unsqueeze(-1).to(run.extras["x"])
            prediction = model.predict(grid, 200)
            assert isinstance(prediction, RegressionPrediction)  # gap1d is a regression
            predictive_bands(
                grid[:, 0],
                prediction.mean,
                prediction.std,
                os.path.join(config.out, "predictive_bands.png"),
                epistemic_std=prediction.epistemic_std,
                x_train=run.extras["x"][:, 0],
                y_train=run.extras["y"],
                truth=gap_function(grid[:, 0]),
                title=f"{model.parameterization} embeddings, {config.guide} guide",
            )
            return
        prediction = model.predict(run.extras["test_x"], config.num_samples)
        assert isinstance(prediction, ClassificationPrediction)  # mnist is a classification
        ece, bins = expected_calibration_error(prediction.probs, run.extras["test_y"])
        reliability_diagram(
            {f"{model.parameterization}/{config.guide}": (bins, float(ece))},
            os.path.join(config.out, "reliability.png"),
        )

    def evaluate(self, config: BayesHypernetEvalConfig, device: torch.device) -> dict[str, Any]:
        model = load_trained(BayesianHypernet, config.checkpoint, device)
        x_array, y_array = load_npz_arrays(config.data, ("x", "y"))
        dtype = model.noise_scale.dtype
        x = torch.as_tensor(x_array).to(device=device, dtype=dtype)
        y = torch.as_tensor(y_array).to(device)
        _check_eval_data(model, x, y, config.data)
        log_lik = model.predictive_log_likelihood(x, y, config.num_samples)
        row = {"num_examples": len(x), "nll": float(-log_lik.mean())}
        prediction = model.predict(x, config.num_samples)
        if isinstance(prediction, ClassificationPrediction):
            ece, _ = expected_calibration_error(prediction.probs, y)
            row.update(
                accuracy=float((prediction.probs.argmax(-1) == y).double().mean()), ece=float(ece)
            )
        else:
            target = y.to(prediction.mean).view(prediction.mean.shape)
            row.update(
                rmse=float((prediction.mean - target).pow(2).mean().sqrt()),
                mean_predictive_std=float(prediction.std.mean()),
                mean_epistemic_std=float(prediction.epistemic_std.mean()),
            )
        return row


def _make_model(
    config: BayesHypernetConfig, widths: list[int], task: Literal["regression", "classification"]
) -> BayesianHypernet:
    """The :class:`BayesianHypernet` of ``config``, with the problem's default sizes and the
    model's defaults otherwise (the layer parameterization without a generator or embedding
    size is the identity generator, whose embeddings are the weights)."""
    parameterization = config.parameterization or "layer"
    embedding_dim = config.embedding_dim
    if parameterization != "layer" or config.generator not in (None, "identity"):
        embedding_dim = default_embedding_dim(embedding_dim, parameterization, config.generator)
    return BayesianHypernet(
        widths,
        task=task,
        guide=config.guide,
        parameterization=parameterization,
        embedding_dim=embedding_dim,
        generator=config.generator,
        noise=config.noise,
        noise_scale=config.noise_scale,
        prior_scale=config.prior_scale,
        hidden_dim=config.hidden_dim,
        hypernet_prior_scale=config.hypernet_prior_scale,
        hypernet_posterior=config.hypernet_posterior,
        init_scale=config.init_scale,
        kl_weight=config.kl_weight,
        activation=config.activation or ("tanh" if config.problem == "gap1d" else "relu"),
    )


def _check_eval_data(model: BayesianHypernet, x: torch.Tensor, y: torch.Tensor, path: str) -> None:
    """Raise a :class:`ConfigError` on ``data`` unless ``x``, ``y`` suit ``model``."""
    inputs = model.widths[0]
    if x.dim() != 2 or x.shape[1] != inputs or len(y) != len(x):
        raise ConfigError(
            "data",
            f"{{data}} {path}: x must have shape (N, {inputs}) and y N "
            f"entries, got x {tuple(x.shape)} and y {tuple(y.shape)}",
        )
    if len(x) == 0:
        raise ConfigError("data", f"{{data}} {path} holds no examples")
    for name, values in (("x", x), ("y", y)):
        if values.is_floating_point() and not torch.isfinite(values).all():
            raise ConfigError("data", f"{{data}} {path}: {name} holds NaN or infinite values")
    if model.task == "classification" and (
        y.is_floating_point() or (y < 0).any() or (y >= model.widths[-1]).any()
    ):
        raise ConfigError(
            "data", f"{{data}} {path}: y must be class labels in 0..{model.widths[-1] - 1}"
        )
