"""``probnets variance toy|plate|sbn|air|custom``: compare gradient estimators on one problem.

Each run measures every chosen estimator at the problem's initial parameters (adaptive ones
after ``--tune`` control-variate steps) and, with ``--track-steps``, along a training run; it
writes ``variance.txt`` / ``.json`` / ``.png`` and ``tracking.*`` into ``--out``
(measured by :func:`probnets.experiments.run_variance`, drawn by
:func:`probnets.viz.variance.plot_variance_run`). ``custom --factory module:function`` takes
any function returning a :class:`~probnets.experiments.Problem`, so any model/guide pair
plugs in.
"""

import argparse
import functools
import importlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from pyro.infer import ELBO

from probnets.data import load_mnist, multi_mnist
from probnets.experiments import (
    ADAPTIVE_ESTIMATORS,
    Problem,
    air_problem,
    plate_problem,
    run_variance,
    sbn_problem,
    toy_problem,
)
from probnets.infer import standard_estimators
from probnets.tasks.config import (
    finite,
    flag_type,
    non_negative_int,
    positive,
    positive_int,
)
from probnets.viz.variance import plot_variance_run

_POSITIVE_INT = flag_type(int, positive_int)
_NON_NEGATIVE_INT = flag_type(int, non_negative_int)
_POSITIVE = flag_type(float, positive)
_FINITE = flag_type(float, finite)


_Parser = TypeVar("_Parser", bound=argparse.ArgumentParser)


def add_arguments(commands: "argparse._SubParsersAction[_Parser]") -> _Parser:
    """Add the ``variance`` command and its problems to an argparse sub-parser collection."""
    parser = commands.add_parser(
        "variance", help="compare gradient estimators", description=__doc__.splitlines()[0]
    )
    problems = parser.add_subparsers(dest="problem", metavar="PROBLEM")
    problems.required = True
    toy = problems.add_parser("toy", help="E[(b - t)^2], b ~ Bernoulli(sigmoid(theta))")
    toy.add_argument("--target", type=_FINITE, default=0.45, help="t (default 0.45)")
    toy.add_argument("--theta", type=_FINITE, default=0.0, help="initial logit (default 0)")
    plate = problems.add_parser(
        "plate", help="a plate of toys whose costs differ in size: per-element baselines"
    )
    plate.add_argument(
        "--scales",
        type=_POSITIVE,
        nargs="+",
        default=[1.0, 10.0, 100.0],
        help="the elements' cost scales (default 1 10 100)",
    )
    plate.add_argument("--theta", type=_FINITE, default=0.0, help="initial logit (default 0)")
    sbn = problems.add_parser("sbn", help="sigmoid belief net on binarized MNIST digits")
    sbn.add_argument(
        "--layers",
        type=_POSITIVE_INT,
        nargs="+",
        default=[200],
        help="stochastic layer widths (default 200)",
    )
    sbn.add_argument("--batch-size", type=_POSITIVE_INT, default=24)
    air = problems.add_parser("air", help="AIR's z_pres sites on multi-MNIST (0-2 digits)")
    air.add_argument("--num-images", type=_POSITIVE_INT, default=2000, help="training canvases")
    air.add_argument("--batch-size", type=_POSITIVE_INT, default=64)
    air.add_argument("--dair", action="store_true", help="the DAIR guide")
    custom = problems.add_parser("custom", help="any Problem factory")
    custom.add_argument("--factory", required=True, help="module:function returning a Problem")
    for sub in (toy, plate, sbn, air, custom):
        sub.add_argument("--out", required=True, help="output directory")
        # Names are checked after --factory's module is imported, so an estimator that module
        # registers (probnets.infer.register_estimator) can be named here.
        sub.add_argument(
            "--estimators",
            nargs="+",
            default=None,
            metavar="NAME",
            help=f"subset of {list(standard_estimators())} and of the estimators "
            "the --factory module registers (default all)",
        )
        sub.add_argument(
            "--samples",
            type=_POSITIVE_INT,
            default=1000,
            help="gradient samples per estimator at the initial parameters",
        )
        sub.add_argument(
            "--tune",
            type=_NON_NEGATIVE_INT,
            default=0,
            help=f"control-variate tuning steps for {list(ADAPTIVE_ESTIMATORS)} before measuring",
        )
        sub.add_argument("--cv-lr", type=_POSITIVE, default=1e-2)
        sub.add_argument(
            "--track-steps",
            type=_NON_NEGATIVE_INT,
            default=0,
            help="also train this many steps, measuring along the way",
        )
        sub.add_argument("--track-every", type=_POSITIVE_INT, default=100)
        sub.add_argument("--track-samples", type=_POSITIVE_INT, default=100)
        sub.add_argument("--lr", type=_POSITIVE, default=1e-3)
        sub.add_argument(
            "--temperature",
            type=_POSITIVE,
            default=0.5,
            help="relaxation temperature of 'relaxed' and 'rebar-fixed'; "
            "initial temperature of 'rebar' and 'relax'",
        )
        sub.add_argument("--particles", type=_POSITIVE_INT, default=2, help="for 'loo' and 'vimco'")
        sub.add_argument("--seed", type=_NON_NEGATIVE_INT, default=0)
        sub.add_argument("--float64", action="store_true")
        sub.add_argument(
            "--threads",
            type=_POSITIVE_INT,
            default=1,
            help="torch intra-op threads (1 is fastest for these small tensors)",
        )
    return parser


def _problem_factory(args: argparse.Namespace) -> Callable[[], Problem]:
    """``() -> Problem`` for the chosen problem; data is loaded once, here."""
    dtype = torch.float64 if args.float64 else torch.float32
    if args.problem == "toy":
        return functools.partial(toy_problem, target=args.target, theta=args.theta, dtype=dtype)
    if args.problem == "plate":
        return functools.partial(
            plate_problem, scales=tuple(args.scales), theta=args.theta, dtype=dtype
        )
    if args.problem == "sbn":
        train, test = load_mnist("train"), load_mnist("test")
        print(f"data: {train.source}, {len(train.labels)} train / {len(test.labels)} test digits")
        return functools.partial(
            sbn_problem,
            train.images.to(dtype),
            layers=(784,) + tuple(args.layers),
            batch_size=args.batch_size,
            seed=args.seed,
            eval_images=test.images.to(dtype),
        )
    if args.problem == "air":
        data = multi_mnist(args.num_images, max_digits=2, split="train", seed=args.seed)
        print(f"data: multi-MNIST from {data.source}, {args.num_images} canvases")
        return functools.partial(
            air_problem,
            data.images.to(dtype),
            data.counts,
            batch_size=args.batch_size,
            seed=args.seed,
            dair=args.dair,
        )
    return _import_factory(args.factory)


def _import_factory(spec: str) -> Callable[[], Problem]:
    """The function named by ``module:function``; a bad name is a one-line CLI error."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise SystemExit(f"probnets: error: --factory must be 'module:function', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise SystemExit(f"probnets: error: --factory {spec!r}: {error}") from None
    if not callable(factory):
        raise SystemExit(f"probnets: error: --factory {spec!r} is not callable")
    return factory


# the estimators whose leave-one-out baselines need two particles or more
_MULTI_PARTICLE = ("loo", "vimco")


def _estimators(args: argparse.Namespace) -> dict[str, Callable[[], ELBO]]:
    """The ``--estimators`` factories; an unknown name, or ``--particles 1`` with an
    estimator that needs more, is a one-line CLI error."""
    try:
        estimators = standard_estimators(
            args.estimators, temperature=args.temperature, num_particles=args.particles
        )
    except ValueError as error:
        raise SystemExit(f"probnets: error: --estimators: {error}") from None
    needing_more = [name for name in _MULTI_PARTICLE if name in estimators]
    if args.particles < 2 and needing_more:
        verb = "need" if len(needing_more) > 1 else "needs"
        raise SystemExit(
            f"probnets: error: --particles: {' and '.join(needing_more)} {verb} "
            f"at least 2 particles, got {args.particles} (or leave it out of "
            "--estimators)"
        )
    return estimators


def _check_out(out: str) -> None:
    """``--out`` must be a directory that exists or can be made, and can be written."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise SystemExit(f"probnets: error: --out {out} is a file, not a directory")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise SystemExit(
            f"probnets: error: --out: cannot create {out}: {error.strerror or error}"
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise SystemExit(f"probnets: error: --out: the directory {out} is not writable")


def run(args: argparse.Namespace) -> int:
    _check_out(args.out)
    torch.set_num_threads(args.threads)
    problem_factory = _problem_factory(args)  # first: its module may register estimators
    estimators = _estimators(args)
    tune = {name: args.tune for name in estimators if name in ADAPTIVE_ESTIMATORS}

    def progress(name: str, item: Any) -> None:
        if isinstance(item, dict):
            print(
                f"  [{name}] step {item['step']}: log_variance {item['log_variance']:.3f}, "
                f"train_loss {item['train_loss']}",
                flush=True,
            )
        else:
            print(f"  [{name}] log_variance {item.log_variance:.3f}", flush=True)

    variance, tracking = run_variance(
        problem_factory,
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
    plot_variance_run(variance, tracking, args.out)
    print(variance.table())
    if tracking is not None:
        print(tracking.table())
    print(f"wrote {args.out}")
    return 0
