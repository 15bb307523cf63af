"""Throughput of data-parallel training: 1 process against N gloo ranks on this CPU.

Each configuration trains the small VAE on the same global batch for the same number of steps;
the N-rank run gives each rank ``batch / N`` examples and ``threads / N`` intra-op threads, so
both use the same cores. Prints a table and writes JSON.

    python examples/bench_distributed.py --ranks 2 --steps 60 --batch-size 128 --out bench.json
"""

import argparse
import json
import os
import tempfile
import time

import pyro
import pyro.infer
import torch

from probnets.models.vae import VAE
from probnets.train import BatchSampler, SVIObjective, TrainConfig, Trainer
from probnets.train.distributed import launch_local


def train(rank, batch_size, steps, threads, result_path):
    torch.set_num_threads(threads)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    images = torch.bernoulli(torch.rand(4096, 28, 28, generator=torch.Generator().manual_seed(0)))
    vae = VAE(28, latent_dim=16, hidden_dim=256)
    if rank >= 0:
        pyro.set_rng_seed(1 + rank)
    trainer = Trainer(
        SVIObjective(vae.model, vae.guide, pyro.infer.Trace_ELBO()),
        BatchSampler(images, batch_size=batch_size, seed=0),
        TrainConfig(steps=steps + 1, lr=1e-3, progress=False),
    )
    trainer.train_step(next(trainer.data))  # warm-up: allocations, first registration
    start = time.perf_counter()
    trainer.run()  # the remaining `steps` steps
    seconds = time.perf_counter() - start
    if rank <= 0:
        with open(result_path, "w") as f:
            json.dump({"seconds": seconds}, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", default="bench_distributed.json")
    args = parser.parse_args()
    per_rank_threads = max(args.threads // args.ranks, 1)
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "r.json")
        for threads in sorted({args.threads, per_rank_threads}, reverse=True):
            train(-1, args.batch_size, args.steps, threads, path)
            timings[f"1 process, {threads} thread(s)"] = json.load(open(path))["seconds"]
        launch_local(train, args.ranks, args.batch_size, args.steps, per_rank_threads, path)
        config = f"{args.ranks} ranks x {per_rank_threads} thread(s)"
        timings[config] = json.load(open(path))["seconds"]
    single = next(iter(timings.values()))
    rows = [
        {
            "config": name,
            "seconds": seconds,
            "examples_per_second": args.steps * args.batch_size / seconds,
            "speedup_vs_1": single / seconds,
        }
        for name, seconds in timings.items()
    ]
    print(
        f"VAE 784-256-16, global batch {args.batch_size}, {args.steps} steps, "
        f"{args.threads} threads in all (ratios measured in this run)"
    )
    print(f"{'config':<28}{'seconds':>10}{'examples/s':>14}{'speed-up':>10}")
    for row in rows:
        print(
            f"{row['config']:<28}{row['seconds']:>10.2f}{row['examples_per_second']:>14.0f}"
            f"{row['speedup_vs_1']:>10.2f}"
        )
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
