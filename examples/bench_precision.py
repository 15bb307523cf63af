"""Step time and final loss of ``--precision 32|bf16|16-mixed`` on the device at hand.

Trains the VAE (and, with ``--air``, one AIR step configuration) with the probnets Trainer
under each precision, the configurations taking turns over ``--rounds`` rounds so that load
from other work hits them alike. Prints a table of median seconds per step, the ratio to float32
measured in the same run, the loss after training, and float16 loss-scale statistics;
writes JSON.

    python examples/bench_precision.py --steps 200 --out bench_precision.json
"""

import argparse
import json
import statistics
import time

import pyro
import pyro.infer
import torch

from probnets.models.vae import VAE
from probnets.train import BatchSampler, SVIObjective, TrainConfig, Trainer

PRECISIONS = ("32", "bf16", "16-mixed")


def vae_trainer(precision, device, batch_size):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    generator = torch.Generator().manual_seed(0)
    images = torch.bernoulli(torch.rand(4096, 28, 28, generator=generator)).to(device)
    vae = VAE(28, latent_dim=16, hidden_dim=256).to(device)
    return Trainer(
        SVIObjective(vae.model, vae.guide, pyro.infer.Trace_ELBO()),
        BatchSampler(images, batch_size=batch_size, seed=0),
        TrainConfig(steps=0, lr=1e-3, precision=precision, progress=False),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="bench_precision.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # One Pyro param store: the configurations run one after another, in --rounds rounds so
    # that load from other work on the machine hits them alike; the median over rounds is kept.
    seconds, losses, trainers = ({p: [] for p in PRECISIONS} for _ in range(3))
    for _ in range(args.rounds):
        for precision in PRECISIONS:
            trainer = vae_trainer(precision, args.device, args.batch_size)
            for step in range(args.steps):
                batch = next(trainer.data)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                loss = trainer.train_step(batch)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                if step > 0:  # the first step allocates and registers
                    seconds[precision].append(time.perf_counter() - start)
                losses[precision].append(loss)
            trainers[precision].append(trainer)
    reference = statistics.median(seconds["32"])
    rows = []
    for precision in PRECISIONS:
        median = statistics.median(seconds[precision])
        tail = losses[precision][-20:]
        trainer = trainers[precision][-1]
        rows.append(
            {
                "precision": precision,
                "median_seconds_per_step": median,
                "ratio_to_32": median / reference,
                "loss_last_20_steps": sum(tail) / len(tail),
                "overflow_steps": trainer.overflow_steps,
                "final_loss_scale": trainer.scaler.get_scale() if trainer.scaler else None,
            }
        )
    print(
        f"VAE 784-256-16, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds "
        f"each, device {args.device}, {args.threads} thread(s); loss and scale of the last round"
    )
    print(
        f"{'precision':>10} {'s/step':>9} {'ratio':>6} {'loss (last 20)':>15} "
        f"{'overflows':>9} {'scale':>8}"
    )
    for row in rows:
        scale = row["final_loss_scale"]
        print(
            f"{row['precision']:>10} {row['median_seconds_per_step']:9.4f} "
            f"{row['ratio_to_32']:6.2f} {row['loss_last_20_steps']:15.1f} "
            f"{row['overflow_steps']:9d} {scale if scale is not None else '-':>8}"
        )
    with open(args.out, "w") as f:
        json.dump(
            {
                "device": args.device,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "threads": args.threads,
                "rows": rows,
            },
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
