"""Compare gradient estimators for discrete latents: variance, bias, cost, training curves.

    python examples/compare_estimators.py toy --target 0.45 --out runs/toy45
    python examples/compare_estimators.py sbn --layers 200 200 --out runs/sbn2 \
        --track-steps 1000 --track-every 250
    python examples/compare_estimators.py custom --factory mypkg.mymod:make_problem --out runs/x

Each run writes ``variance.txt`` / ``variance.json`` / ``variance.png`` (all estimators at
the initial params; adaptive estimators after ``--tune`` control-variate steps) and, with
``--track-steps``, ``tracking.*`` and per-metric figures. ``custom`` takes any
``module:function`` returning a :class:`probnets.infer.variance.Problem`, so any model/guide
pair (e.g. AIR's ``z_pres`` sites) plugs in without changes here.
"""

import argparse
import functools
import importlib
import sys

import torch

from probnets.infer.variance import ADAPTIVE_ESTIMATORS, run_variance, standard_estimators


def _problem_factory(args):
    if args.problem == "toy":
        from probnets.models.toy import toy_problem

        dtype = torch.float64 if args.float64 else torch.float32
        return functools.partial(toy_problem, target=args.target, theta=args.theta, dtype=dtype)
    if args.problem == "sbn":
        from probnets.data import load_mnist
        from probnets.models.sbn import sbn_problem

        train, test = load_mnist("train"), load_mnist("test")
        print(f"data: {train.source}, {len(train.labels)} train / {len(test.labels)} test digits")
        images, test_images = train.images, test.images
        if args.float64:
            images, test_images = images.double(), test_images.double()
        return functools.partial(
            sbn_problem,
            images,
            layers=(784,) + tuple(args.layers),
            batch_size=args.batch_size,
            seed=args.seed,
            eval_images=test_images,
        )
    module_name, _, function_name = args.factory.partition(":")
    if not function_name:
        raise ValueError(f"--factory must be 'module:function', got {args.factory!r}")
    return getattr(importlib.import_module(module_name), function_name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="problem", required=True)
    toy = sub.add_parser("toy", help="E[(b - t)^2], b ~ Bernoulli(sigmoid(theta))")
    toy.add_argument("--target", type=float, default=0.45)
    toy.add_argument("--theta", type=float, default=0.0, help="initial logit")
    sbn = sub.add_parser("sbn", help="sigmoid belief net on binarized MNIST digits")
    sbn.add_argument("--layers", type=int, nargs="+", default=[200])
    sbn.add_argument("--batch-size", type=int, default=24)
    custom = sub.add_parser("custom", help="any Problem factory")
    custom.add_argument("--factory", required=True, help="module:function -> Problem")
    for p in (toy, sbn, custom):
        p.add_argument("--out", required=True, help="output directory")
        p.add_argument("--estimators", nargs="+", default=None,
                       help=f"subset of {list(standard_estimators())}")
        p.add_argument("--samples", type=int, default=1000,
                       help="gradient samples per estimator at the initial params")
        p.add_argument("--tune", type=int, default=0,
                       help=f"control-variate tuning steps for {ADAPTIVE_ESTIMATORS} "
                            "before measuring")
        p.add_argument("--cv-lr", type=float, default=1e-2)
        p.add_argument("--track-steps", type=int, default=0)
        p.add_argument("--track-every", type=int, default=100)
        p.add_argument("--track-samples", type=int, default=100)
        p.add_argument("--lr", type=float, default=1e-3)
        p.add_argument("--temperature", type=float, default=0.5, help="for 'relaxed'")
        p.add_argument("--particles", type=int, default=2, help="for 'loo' and 'vimco'")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--float64", action="store_true")
        p.add_argument("--threads", type=int, default=1,
                       help="torch intra-op threads (1 is fastest for these small tensors)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    estimators = standard_estimators(
        args.estimators, temperature=args.temperature, num_particles=args.particles
    )
    tune = {name: args.tune for name in estimators if name in ADAPTIVE_ESTIMATORS}

    def progress(name, item):
        if isinstance(item, dict):
            print(f"  [{name}] step {item['step']}: log_variance {item['log_variance']:.3f}"
                  f", train_loss {item['train_loss']}", flush=True)
        else:
            print(f"  [{name}] log_variance {item.log_variance:.3f}", flush=True)

    variance, tracking = run_variance(
        _problem_factory(args),
        estimators,
        args.out,
        num_samples=args.samples,
        cv_tune_steps=tune,
        cv_lr=args.cv_lr,
        track_steps=args.track_steps,
        track_every=args.track_every,
        track_samples=args.track_samples,
        lr=args.lr,
        seed=args.seed,
        progress=progress,
    )
    print(variance.table())
    if tracking is not None:
        print(tracking.table())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
