"""Predictive bands of a Bayesian hypernetwork on 1-D regression with a gap, from Python.

The same problem as ``probnets train bayes-hypernet --problem gap1d``, through the model's
own ``fit``/``predict``; prints the mean epistemic and predictive standard deviations on the
data, in the gap and outside, and writes the figure. With ``--gp-lengthscales`` it also
prints the same numbers for exact GP regression (squared-exponential kernel, signal scale 1,
the same known noise) on the same data: what an exact Bayesian regressor with that prior
lengthscale would report.

    python examples/bayes_hypernet_gap.py --parameterization unit --activation tanh \
        --steps 1500 --lr 0.03 --figure runs/gap_unit.png
"""

import argparse
import json

import pyro
import torch

from probnets.models.bayes_hypernet import BayesianHypernet, GaussianProcessRegression
from probnets.models.bayes_hypernet.generators import LAYER_GENERATORS
from probnets.models.bayes_hypernet.guides import GUIDES
from probnets.models.bayes_hypernet.model import PARAMETERIZATIONS
from probnets.models.bayes_hypernet.toy import gap_function, gap_regression
from probnets.experiments.bayes_hypernet import default_embedding_dim, gap_metrics
from probnets.train import Cosine
from probnets.viz.uncertainty import predictive_bands


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parameterization", choices=list(PARAMETERIZATIONS), default="unit")
    parser.add_argument("--guide", choices=list(GUIDES), default="mean_field")
    parser.add_argument(
        "--generator",
        choices=list(LAYER_GENERATORS),
        default=None,
        help="weight generator of the layer parameterization (identity: the "
        "embeddings are the weights, a mean-field BNN; subspace: a fixed "
        "random subspace of them)",
    )
    parser.add_argument("--activation", default="tanh")
    parser.add_argument(
        "--embedding-dim", type=int, default=None, help="default 2 (unit) or 8 (layer, input_unit)"
    )
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--num-points", type=int, default=120)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument(
        "--init-scale", type=float, default=0.1, help="initial standard deviation of the guide"
    )
    parser.add_argument(
        "--kl-weight",
        type=float,
        default=1.0,
        help="weight of the prior terms in the ELBO (below 1: tempered)",
    )
    parser.add_argument("--hypernet-prior-scale", type=float, default=None)
    parser.add_argument("--hypernet-posterior", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default="gap.png")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument(
        "--gp-lengthscales",
        type=float,
        nargs="*",
        default=[],
        help="also report exact GP regression with these kernel lengthscales",
    )
    args = parser.parse_args(argv)

    pyro.set_rng_seed(args.seed)
    x, y = gap_regression(args.num_points, seed=args.seed)
    embedding_dim = default_embedding_dim(args.embedding_dim, args.parameterization, args.generator)
    model = BayesianHypernet(
        [1, args.width, args.width, 1],
        parameterization=args.parameterization,
        guide=args.guide,
        generator=args.generator,
        embedding_dim=embedding_dim,
        activation=args.activation,
        noise_scale=0.1,
        init_scale=args.init_scale,
        hypernet_prior_scale=args.hypernet_prior_scale,
        hypernet_posterior=args.hypernet_posterior,
        kl_weight=args.kl_weight,
    )
    model.fit(
        x,
        y,
        num_steps=args.steps,
        lr=args.lr,
        progress=args.progress,
        lr_schedule=Cosine(1.0, 0.1, args.steps),
    )
    rows = {"model": gap_metrics(model, 200)}
    for lengthscale in args.gp_lengthscales:
        gp = GaussianProcessRegression(x, y, lengthscale=lengthscale, noise_scale=0.1)
        rows[f"gp, lengthscale {lengthscale:g}"] = gap_metrics(gp, None)
    print(json.dumps(rows, indent=2))
    grid = torch.linspace(-6, 6, 241).unsqueeze(-1)
    prediction = model.predict(grid, 200)
    predictive_bands(
        grid[:, 0],
        prediction.mean,
        prediction.std,
        args.figure,
        epistemic_std=prediction.epistemic_std,
        x_train=x[:, 0],
        y_train=y,
        truth=gap_function(grid[:, 0]),
        title=f"{args.parameterization} embeddings"
        f"{', ' + args.generator + ' generator' if args.generator else ''}, "
        f"{args.guide} guide",
    )


if __name__ == "__main__":
    main()
