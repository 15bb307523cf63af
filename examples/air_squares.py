"""AIR / DAIR on a tiny synthetic scene set: 0-2 bright 6x6 squares on 24x24 canvases.

A seconds-to-minutes sanity check of the whole pipeline (model, guide, estimator, trainer,
MAP counting) with any estimator; writes a JSON of held-out count accuracy over training and,
with ``--figures``, reconstructions with boxes and the count confusion.

    python examples/air_squares.py --estimator relaxed --dair --steps 400 --seeds 0 1 2
"""

import argparse
import json
import os
import time

import pyro
import torch

from probnets.data.squares import squares
from probnets.models.air import AIR
from probnets.experiments.air import ESTIMATORS, evaluate_counts, make_elbo
from probnets.train import BatchSampler, Evaluation, SVIObjective, TrainConfig, Trainer
from probnets.viz.air import confusion_figure, scenes_with_boxes


def run(args, seed):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    train, _ = squares(args.num_train, seed=seed)
    test, test_counts = squares(args.num_test, seed=seed + 100)
    air = AIR(
        image_size=24,
        num_steps=3,
        window_size=12,
        z_what_size=4,
        rnn_hidden_size=32,
        encoder_hidden=32,
        decoder_hidden=32,
        predict_hidden=32,
        dair=args.dair,
        z_pres_prior=args.z_pres_prior,
        use_baseline=args.estimator in ("score", "tracegraph"),
    )
    start = time.perf_counter()
    trainer = Trainer(
        SVIObjective(air.model, air.guide, make_elbo(args.estimator)),
        BatchSampler(train, batch_size=32, seed=seed),
        TrainConfig(
            steps=args.steps,
            lr=args.lr,
            param_groups={"*baseline*": {"lr": 1e-2}},
            eval_every=args.eval_every,
            progress=False,
        ),
        callbacks=[Evaluation(lambda t: {"accuracy": evaluate_counts(air, test, test_counts)[0]})],
    )
    result = trainer.run()
    accuracy, confusion = evaluate_counts(air, test, test_counts)
    if args.figures:
        tag = f"{args.estimator}{'_dair' if args.dair else ''}_s{seed}"
        sample = test[:10]
        inferred = air.infer(sample)
        scenes_with_boxes(
            [sample, air.reconstruct(sample, inferred)],
            inferred.z_pres,
            inferred.boxes,
            os.path.join(args.figures, f"air_squares_{tag}.png"),
            titles=["data (boxes: red step 1, green 2, blue 3)", "reconstruction"],
        )
        confusion_figure(
            confusion,
            os.path.join(args.figures, f"air_squares_confusion_{tag}.png"),
            title=f"squares, {tag}: accuracy {accuracy:.3f}",
        )
    return {
        "seed": seed,
        "accuracy": accuracy,
        "confusion": confusion.tolist(),
        "curve": [(row["step"], row["accuracy"]) for row in result.eval_history],
        "seconds": time.perf_counter() - start,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimator", choices=ESTIMATORS, default="relaxed")
    parser.add_argument("--dair", action="store_true")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--z-pres-prior", type=float, default=1e-4)
    parser.add_argument("--num-train", type=int, default=512)
    parser.add_argument("--num-test", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--figures", default=None, help="directory for PNG figures")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for seed in args.seeds:
        results.append(run(args, seed))
        r = results[-1]
        print(
            f"{args.estimator}{' dair' if args.dair else ''} seed {seed}: held-out count "
            f"accuracy {r['accuracy']:.3f} after {args.steps} steps ({r['seconds']:.0f} s); "
            f"curve {[(s, round(a, 3)) for s, a in r['curve']]}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
