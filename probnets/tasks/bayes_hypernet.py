"""``probnets train bayes-hypernet``: Bayesian hypernetworks on 1-D gap regression or MNIST."""

import os

import pyro.infer
import torch

from probnets.experiments.bayes_hypernet import (
    classification_metrics,
    default_embedding_dim,
    gap_metrics,
    mnist_arrays,
    out_of_distribution,
)
from probnets.models.bayes_hypernet import BayesianHypernet, expected_calibration_error
from probnets.models.bayes_hypernet.generators import LAYER_GENERATORS
from probnets.models.bayes_hypernet.guides import GUIDES
from probnets.models.bayes_hypernet.model import PARAMETERIZATIONS
from probnets.models.bayes_hypernet.toy import gap_function, gap_regression
from probnets.tasks.base import Task, TaskRun, load_npz_arrays, register
from probnets.train import BatchSampler, resolve_device
from probnets.viz.uncertainty import predictive_bands, reliability_diagram


@register
class BayesHypernetTask(Task):
    name = "bayes-hypernet"
    help = ("Bayesian hypernetwork (priors over layer or unit embeddings) on 1-D gap "
            "regression or MNIST digits")
    default_steps = 3000
    default_batch_size = 100
    default_lr = 1e-2
    supports_eval = True

    def add_arguments(self, parser):
        parser.add_argument("--problem", choices=["gap1d", "mnist"], default="gap1d",
                            help="gap1d: sin(x) with no data in (-1, 1); mnist: digit classes")
        parser.add_argument("--guide", choices=list(GUIDES),
                            default="mean_field",
                            help="variational family over embeddings (delta: MAP embeddings, "
                                 "the deterministic-hypernet baseline)")
        parser.add_argument("--parameterization", choices=list(PARAMETERIZATIONS), default=None,
                            help="one embedding per layer, per unit (Karaletsos et al.) or per "
                                 "input-side unit; default unit for gap1d, layer for mnist (the "
                                 "per-unit ReLU network dies on MNIST, see "
                                 "guides/bayes_hypernet.md)")
        parser.add_argument("--generator", choices=list(LAYER_GENERATORS), default=None,
                            help="weight generator of the layer parameterization")
        parser.add_argument("--embedding-dim", type=int, default=None,
                            help="dimension of each embedding (default 2 for units, 8 for "
                                 "layers)")
        parser.add_argument("--hidden-dim", type=int, default=32,
                            help="hidden width of the weight generators")
        parser.add_argument("--width", type=int, default=None,
                            help="hidden width of the target MLP (default 32 gap1d, 100 mnist)")
        parser.add_argument("--depth", type=int, default=None,
                            help="hidden layers of the target MLP (default 2 gap1d, 1 mnist)")
        parser.add_argument("--activation", default=None,
                            help="target activation (default tanh for gap1d, relu for mnist)")
        parser.add_argument("--noise", choices=["fixed", "learned"], default="fixed",
                            help="regression noise: fixed at --noise-scale or learned")
        parser.add_argument("--noise-scale", type=float, default=0.1,
                            help="regression noise std (the data's is 0.1)")
        parser.add_argument("--prior-scale", type=float, default=1.0,
                            help="prior std of the embeddings")
        parser.add_argument("--init-scale", type=float, default=0.1,
                            help="initial std of the Gaussian and flow guides (the mean-field "
                                 "BNN, --generator identity, fits gap1d best from 0.01)")
        parser.add_argument("--kl-weight", type=float, default=1.0,
                            help="weight of the prior (KL) terms against the likelihood; below "
                                 "1 a tempered posterior (input_unit on mnist: 0.1, chosen on "
                                 "held-out training digits)")
        parser.add_argument("--hypernet-prior-scale", type=float, default=None,
                            help="Normal prior std on the hypernetwork's parameters (MAP "
                                 "unless --hypernet-posterior)")
        parser.add_argument("--hypernet-posterior", action="store_true",
                            help="infer the hypernetwork's parameters as well (needs "
                                 "--hypernet-prior-scale)")
        parser.add_argument("--num-particles", type=int, default=1,
                            help="samples of the embeddings per ELBO estimate")
        parser.add_argument("--num-points", type=int, default=120,
                            help="gap1d training points")
        parser.add_argument("--num-train", type=int, default=60000,
                            help="mnist training digits used (all of the offline subset's 4000)")
        parser.add_argument("--num-test", type=int, default=1000, help="mnist test digits")
        parser.add_argument("--num-samples", type=int, default=50,
                            help="posterior samples for predictions")

    def build(self, args, device):
        dtype = args.dtype
        if args.problem == "gap1d":
            x, y = gap_regression(args.num_points, noise=0.1, seed=args.seed, dtype=dtype,
                                  device=device)
            widths = [1] + [args.width or 32] * (args.depth or 2) + [1]
            task, source, extras = "regression", "gap1d (synthetic)", {"x": x, "y": y}
        else:
            x, y, source = mnist_arrays("train", args.num_train, dtype, device)
            test_x, test_y, _ = mnist_arrays("test", args.num_test, dtype, device)
            widths = [784] + [args.width or 100] * (args.depth or 1) + [10]
            task = "classification"
            extras = {"test_x": test_x, "test_y": test_y,
                      "ood": out_of_distribution(test_x, args.seed)}
        parameterization = args.parameterization or ("unit" if args.problem == "gap1d"
                                                     else "layer")
        embedding_dim = default_embedding_dim(args.embedding_dim, parameterization, args.generator)
        model = BayesianHypernet(
            widths, task=task, embedding_dim=embedding_dim, guide=args.guide,
            parameterization=parameterization, generator=args.generator, noise=args.noise,
            noise_scale=args.noise_scale, prior_scale=args.prior_scale,
            hidden_dim=args.hidden_dim, hypernet_prior_scale=args.hypernet_prior_scale,
            hypernet_posterior=args.hypernet_posterior, init_scale=args.init_scale,
            kl_weight=args.kl_weight,
            activation=args.activation or ("tanh" if args.problem == "gap1d" else "relu"),
        ).to(device=device, dtype=dtype)
        model.num_data = x.shape[0]
        elbo = pyro.infer.Trace_ELBO(num_particles=args.num_particles,
                                     vectorize_particles=args.num_particles > 1,
                                     max_plate_nesting=1)
        batch_size = args.batch_size if args.batch_size < x.shape[0] else None

        def evaluate(trainer):
            if args.problem == "gap1d":
                return gap_metrics(model, args.num_samples)
            prediction = model.predict(extras["test_x"], args.num_samples)
            ood = {name: model.predict(images, args.num_samples)
                   for name, images in extras["ood"].items()}
            return classification_metrics(prediction, extras["test_y"], ood)

        config = {"problem": args.problem, **model.config()}
        return TaskRun(
            data=BatchSampler(x, y, batch_size=batch_size, seed=args.seed),
            model_fn=model.model, guide_fn=model.guide, loss=elbo,
            metrics_fn=lambda trainer: {"elbo_per_example": -trainer.last_loss / x.shape[0]},
            eval_fn=evaluate, config=config, data_source=source, module=model, extras=extras)

    def finish(self, run, result, args):
        model = run.module
        if args.problem == "gap1d":
            grid = torch.linspace(-6, 6, 241).unsqueeze(-1).to(run.extras["x"])
            prediction = model.predict(grid, 200)
            predictive_bands(grid[:, 0], prediction.mean, prediction.std,
                             os.path.join(args.out, "predictive_bands.png"),
                             epistemic_std=prediction.epistemic_std, x_train=run.extras["x"][:, 0],
                             y_train=run.extras["y"], truth=gap_function(grid[:, 0]),
                             title=f"{model.parameterization} embeddings, {args.guide} guide")
            return
        prediction = model.predict(run.extras["test_x"], args.num_samples)
        ece, bins = expected_calibration_error(prediction.probs, run.extras["test_y"])
        reliability_diagram({f"{model.parameterization}/{args.guide}": (bins, float(ece))},
                            os.path.join(args.out, "reliability.png"))

    def add_eval_arguments(self, parser):
        parser.add_argument("--data", required=True,
                            help=".npz with `x` (N, inputs) and `y` (N,) class labels or "
                                 "(N,) / (N, outputs) regression targets")
        parser.add_argument("--num-samples", type=int, default=100,
                            help="posterior samples of the embeddings (default 100)")

    def evaluate(self, args):
        device = resolve_device(args.device)
        model = BayesianHypernet.load(args.checkpoint, map_location=device)
        x, y = load_npz_arrays(args.data, ("x", "y"))
        dtype = model.noise_scale.dtype
        x = torch.as_tensor(x).to(device=device, dtype=dtype)
        y = torch.as_tensor(y).to(device)
        inputs = model.widths[0]
        if x.dim() != 2 or x.shape[1] != inputs or len(y) != len(x):
            raise SystemExit(f"probnets: error: --data x must have shape (N, {inputs}) and y "
                             f"N entries, got x {tuple(x.shape)} and y {tuple(y.shape)}")
        if not torch.isfinite(x).all():
            raise SystemExit("probnets: error: --data x holds NaN or infinite values")
        log_lik = model.predictive_log_likelihood(x, y, args.num_samples)
        row = {"num_examples": len(x), "nll": float(-log_lik.mean())}
        prediction = model.predict(x, args.num_samples)
        if model.task == "classification":
            if y.is_floating_point() or (y < 0).any() or (y >= model.widths[-1]).any():
                raise SystemExit(f"probnets: error: --data y must be class labels in "
                                 f"0..{model.widths[-1] - 1}")
            ece, _ = expected_calibration_error(prediction.probs, y)
            row.update(accuracy=float((prediction.probs.argmax(-1) == y).double().mean()),
                       ece=float(ece))
        else:
            target = y.to(prediction.mean).view(prediction.mean.shape)
            row.update(rmse=float((prediction.mean - target).pow(2).mean().sqrt()),
                       mean_predictive_std=float(prediction.std.mean()),
                       mean_epistemic_std=float(prediction.epistemic_std.mean()))
        return row
