"""Seconds per training step of ``probnets train air``'s defaults against the run before them.

- ``fixed``: a batch of a fixed set of canvases (``--fixed-canvases --ema 0``: a
  :class:`~probnets.train.BatchSampler` over ``--num-train`` canvases), then the step;
- ``fresh+ema``: a batch composed afresh (:class:`~probnets.data.multi_mnist.CanvasStream`),
  the step, then (every ``AVERAGE_EVERY`` steps, for the steps since the last) the update of
  the moving average of the weights
  (:class:`~probnets.train.averaging.ExponentialMovingAverage`), as the defaults do.

The step itself (``ScoreFunction_ELBO(cache_dependencies=True).loss_and_grads`` plus a fused
Adam update of the reference-sized AIR, batch 64) is the same code for both, on one model, so
the two are timed round by round, interleaved, in one process: on a shared CPU compare the
ratio, not the seconds. The data and averaging parts are also timed alone.

    python examples/air_bench_defaults.py --steps 30 --json air_bench_defaults.json
"""

import argparse
import json
import statistics
import time

import pyro
import torch

from probnets.data import multi_mnist
from probnets.data.multi_mnist import CanvasStream, digit_pool
from probnets.infer import ScoreFunction_ELBO
from probnets.models.air import AIR
from probnets.train import BatchSampler
from probnets.train.averaging import ExponentialMovingAverage

AVERAGE_EVERY = 4  # the steps between updates of the average in ``probnets train air``


def build(batch_size, seed=0):
    """The model, its step, and the two data sources with the averaging of the defaults."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    air = AIR(z_pres_prior=1e-4)
    elbo = ScoreFunction_ELBO(cache_dependencies=True)
    optimizer = torch.optim.Adam(air.parameters(), lr=5e-4, fused=True)

    def step(images):
        loss = elbo.loss_and_grads(air.model, air.guide, images)
        optimizer.step()
        optimizer.zero_grad()
        return loss

    fixed = BatchSampler(
        multi_mnist(10000, split="train", seed=seed).images, batch_size=batch_size, seed=seed
    )
    fresh = CanvasStream(digit_pool("train", 0.1).images, batch_size, seed=seed)
    average = ExponentialMovingAverage(
        air, 0.999, names=[n for n, _ in air.named_parameters() if not n.startswith("baseline")]
    )
    return step, fixed, fresh, average


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    step, fixed, fresh, average = build(args.batch_size)
    for _ in range(args.warmup):
        step(*next(fixed))
        step(*next(fresh))
        average.update()
    times = {"fixed": [], "fresh+ema": [], "data:fixed": [], "data:fresh": [], "ema update": []}
    for round_ in range(1, args.steps + 1):
        start = time.perf_counter()
        batch = next(fixed)
        middle = time.perf_counter()
        step(*batch)
        times["fixed"].append(time.perf_counter() - start)
        times["data:fixed"].append(middle - start)

        start = time.perf_counter()
        batch = next(fresh)
        middle = time.perf_counter()
        step(*batch)
        before_average = time.perf_counter()
        if round_ % AVERAGE_EVERY == 0:
            average.update(steps=AVERAGE_EVERY)
        end = time.perf_counter()
        times["fresh+ema"].append(end - start)
        times["data:fresh"].append(middle - start)
        if round_ % AVERAGE_EVERY == 0:
            times["ema update"].append(end - before_average)
    medians = {name: statistics.median(t) for name, t in times.items() if t}
    ratios = [b / a for a, b in zip(times["fixed"], times["fresh+ema"])]
    result = {
        "batch_size": args.batch_size,
        "threads": args.threads,
        "rounds": args.steps,
        "median_s": medians,
        "median_ratio_per_round": statistics.median(ratios),
        "ratio_of_medians": medians["fresh+ema"] / medians["fixed"],
    }
    print(
        f"AIR training step, batch {args.batch_size}, {args.threads} thread(s), "
        f"{args.steps} interleaved rounds (shared CPU: compare ratios)"
    )
    for name, value in medians.items():
        print(
            f"  {name:12s} median {value * 1000:8.2f} ms"
            + (f" (every {AVERAGE_EVERY} steps)" if name == "ema update" else "")
        )
    print(
        f"  fresh+ema / fixed: ratio of medians {result['ratio_of_medians']:.3f}, "
        f"median of per-round ratios {result['median_ratio_per_round']:.3f}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
