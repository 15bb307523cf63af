"""Seconds per training step of AIR with the defaults of ``probnets train air`` against the
step of the previous release, interleaved step by step in one process.

Both arms step the same model, estimator (``ScoreFunction_ELBO(cache_dependencies=True)``)
and fused Adam; they differ only in the work the defaults add around the update:

- ``previous``: a batch sliced from a fixed set of canvases (``--fixed-canvases``);
- ``defaults``: a batch composed afresh from the training digits (the task's
  :class:`~probnets.data.multi_mnist.CanvasStream`), the weight average brought up to date
  every 4 steps (the task's :class:`~probnets.train.averaging.ExponentialMovingAverage` over
  the same parameters), and the copy of the parameters that the
  :class:`~probnets.train.Trainer` keeps every ``rollback_every`` good steps to recover from a
  divergence.

The arms alternate at every step (and which goes first alternates too), so both see the same
load on a shared CPU; the result is the ratio of their mean seconds per step, with the added
work broken down.

    python examples/bench_air_defaults.py --steps 100
"""

import argparse
import statistics
import time
import warnings

import pyro
import torch

from probnets.data import multi_mnist
from probnets.data.multi_mnist import CanvasStream, digit_pool
from probnets.infer import ScoreFunction_ELBO
from probnets.models import AIR
from probnets.train import TrainConfig
from probnets.train.averaging import ExponentialMovingAverage

AVERAGE_EVERY = 4  # as in probnets.tasks.air


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per arm first")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)  # the offline-MNIST notice, once per split

    pool = digit_pool("train", 0.1)
    print(f"digits: {pool.source}", flush=True)
    stream = CanvasStream(pool.images, args.batch_size, seed=1)
    fixed = multi_mnist(10 * args.batch_size, split="train", seed=1).images
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    air = AIR()
    elbo = ScoreFunction_ELBO(cache_dependencies=True)
    optimizer = torch.optim.Adam(air.parameters(), lr=1e-4, fused=True)
    average = ExponentialMovingAverage(
        air, 0.999, [name for name, _ in air.named_parameters() if not name.startswith("baseline")]
    )
    rollback_every = TrainConfig(steps=1).rollback_every
    kept = [p.detach().clone() for p in air.parameters()]

    def update(batch: torch.Tensor) -> None:
        optimizer.zero_grad()
        elbo.loss_and_grads(air.model, air.guide, batch)
        optimizer.step()

    def previous(step: int) -> dict[str, float]:
        start = time.perf_counter()
        update(fixed[(step % 10) * args.batch_size : (step % 10 + 1) * args.batch_size])
        return {"step": time.perf_counter() - start}

    def defaults(step: int) -> dict[str, float]:
        start = time.perf_counter()
        (batch,) = next(stream)
        composed = time.perf_counter()
        if step % rollback_every == 0:
            with torch.no_grad():
                torch._foreach_copy_(kept, [p.detach() for p in air.parameters()])
        copied = time.perf_counter()
        update(batch)
        updated = time.perf_counter()
        if step % AVERAGE_EVERY == 0:
            average.update(AVERAGE_EVERY)
        end = time.perf_counter()
        return {
            "step": end - start,
            "compose": composed - start,
            "copy": copied - composed,
            "average": end - updated,
        }

    arms = {"previous": previous, "defaults": defaults}
    times: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    for step in range(args.warmup + args.steps):
        order = list(arms) if step % 2 == 0 else list(reversed(arms))
        for name in order:
            record = arms[name](step)
            if step >= args.warmup:
                times[name].append(record)

    def mean(name: str, key: str) -> float:
        return statistics.mean(r[key] for r in times[name])

    for name in arms:
        print(
            f"{name:9s} mean {mean(name, 'step'):.4f} s/step, "
            f"median {statistics.median(r['step'] for r in times[name]):.4f}"
        )
    print(
        "added by the defaults, mean per step: "
        + ", ".join(
            f"{key} {1000 * mean('defaults', key):.2f} ms" for key in ("compose", "copy", "average")
        )
    )
    ratio = mean("defaults", "step") / mean("previous", "step")
    print(f"ratio defaults / previous (means): {ratio:.3f}")


if __name__ == "__main__":
    main()
