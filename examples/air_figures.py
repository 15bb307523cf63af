"""Figures of a (possibly still running) ``probnets train air`` run from its checkpoint.

Writes ``<prefix>reconstructions.png`` (held-out scenes and reconstructions, boxes coloured by
step), ``<prefix>confusion.png`` and, from the run's ``eval.csv`` and ``metrics.csv``,
``<prefix>accuracy.png`` and ``<prefix>elbo.png``;
prints the held-out count accuracy as JSON.

    python examples/air_figures.py --run runs/air --out guides/figures --prefix air_mnist_
"""

import argparse
import csv
import json
import os

import torch

from probnets.data import multi_mnist
from probnets.models.air import AIR
from probnets.experiments.air import evaluate_counts
from probnets.viz.air import confusion_figure, scenes_with_boxes
from probnets.viz.images import curves


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run directory (holds last.pt, eval.csv)")
    parser.add_argument("--out", required=True, help="directory for the PNG files")
    parser.add_argument("--prefix", default="air_")
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out canvases")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    air = AIR.load(os.path.join(args.run, "last.pt"))
    test = multi_mnist(args.num_test, canvas_size=air.image_size, split="test", seed=args.seed)
    images = test.images.to(next(air.parameters()).dtype)
    sample = images[:10]
    inferred = air.infer(sample)
    path = os.path.join(args.out, f"{args.prefix}reconstructions.png")
    scenes_with_boxes(
        [sample, air.reconstruct(sample, inferred)],
        inferred.z_pres,
        inferred.boxes,
        path,
        titles=["held-out data (boxes: red step 1, green 2, blue 3)", "reconstruction"],
    )
    accuracy, confusion = evaluate_counts(air, images, test.counts)
    confusion_figure(
        confusion,
        os.path.join(args.out, f"{args.prefix}confusion.png"),
        title=f"held-out count confusion (accuracy {accuracy:.3f})",
    )
    eval_csv = os.path.join(args.run, "eval.csv")
    if os.path.exists(eval_csv):
        with open(eval_csv) as f:
            rows = list(csv.DictReader(f))
        steps = [int(r["step"]) for r in rows]
        curves(
            {
                "held-out": (steps, [float(r["test_count_accuracy"]) for r in rows]),
                "train": (steps, [float(r["train_count_accuracy"]) for r in rows]),
            },
            os.path.join(args.out, f"{args.prefix}accuracy.png"),
            ylabel="count accuracy",
        )
    metrics_csv = os.path.join(args.run, "metrics.csv")
    if os.path.exists(metrics_csv):
        with open(metrics_csv) as f:
            rows = list(csv.DictReader(f))
        curves(
            {"train": ([int(r["step"]) for r in rows], [float(r["elbo_per_image"]) for r in rows])},
            os.path.join(args.out, f"{args.prefix}elbo.png"),
            ylabel="ELBO per image (nats)",
        )
    print(
        json.dumps(
            {"count_accuracy": accuracy, "num_images": len(images), "confusion": confusion.tolist()}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
