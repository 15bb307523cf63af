"""
Accuracy against the fraction of active connections on MNIST, for a gated neuron DAG and a
gated layer DAG, against dense networks of the same size.

Uses ``probnets.data.load_mnist`` (the official files when cached or downloadable, else the
offline 5,000-digit subset: 4,000 train / 1,000 test; the table says which). Gates are
hard-concrete (L0) by default; ``--estimator NAME`` makes them Bernoulli gates trained by an
estimator of :func:`probnets.infer.standard_estimators` (all gates of a network are one
vectorized site, so DisARM and the relaxations cost one or two extra evaluations per step).
For each prior inclusion probability ``p`` the script reports

- ``gated``: the posterior predictive (gates sampled from the guide, 10 draws),
- ``pruned``: the same trained weights with only the gates of inclusion probability > 0.5,
- ``retrained``: the exported pruned wiring trained again from scratch,

and the ``dense`` baselines: the same DAG with every candidate connection on, trained with the
same number of steps (for the layer DAG also the plain chain L1 -> L2 -> ... ).

    python examples/gated_mnist.py --steps 1500 --priors 0.1 0.01 0.001

Layer DAG only, gates per feature map, a FLOPs cost, then a figure from several runs (x: the
share of the activation elements carried into blocks, i.e. of the FLOPs cost, that stays on):

    python examples/gated_mnist.py --skip-neuron --layer-gate-per feature_map \
        --layer-priors 0.1 --layer-cost-weight 0.3 --seed 1 --out fm_w0.3_s1.json
    python examples/gated_mnist.py --replot *.json --figures guides/figures
"""

import argparse
import json
import os
import time

import pyro
import torch
from torch import nn

from probnets.data import load_mnist
from probnets.infer import standard_estimators
from probnets.models.gated import BernoulliPrior, CostPenalty, LayerDAG, NeuronDAG


def accuracy(probs, labels):
    return float((probs.argmax(-1) == labels).double().mean())


def gate_kind_and_estimator(name):
    """``("hard_concrete", None)`` (the model's default ``Trace_ELBO``) or Bernoulli gates with
    a fresh estimator of the registry."""
    if name == "hard_concrete":
        return "hard_concrete", None
    return "bernoulli", standard_estimators([name])[name]()


def neuron_dag_runs(data, args):
    (xtr, ytr), (xte, yte) = data
    xtr, xte = xtr.flatten(1), xte.flatten(1)
    rows = []

    def build(p):
        return NeuronDAG(
            784,
            args.hidden,
            10,
            activation=torch.relu,
            gate=gate_kind_and_estimator(args.estimator)[0],
            prior=BernoulliPrior(p),
            likelihood="categorical",
            init_logit=2.0,
        )

    if not args.skip_dense:
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        dense = build(0.5).export_architecture(0.0)  # every candidate edge on
        start = time.perf_counter()
        dense.fit(xtr, ytr, args.steps, lr=args.lr, batch_size=args.batch_size)
        rows.append(
            {
                "model": "neuron DAG",
                "variant": "dense",
                "prior_p": None,
                "fraction_active": 1.0,
                "active": dense.num_active,
                "candidates": dense.mask.numel(),
                "test_accuracy": accuracy(dense.predict(xte), yte),
                "seconds": time.perf_counter() - start,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    for p in args.priors:
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        model = build(p)
        start = time.perf_counter()
        model.fit(
            xtr,
            ytr,
            args.steps,
            lr=args.lr,
            gate_lr=args.gate_lr,
            gate_betas=(0.9, 0.9),
            batch_size=args.batch_size,
            estimator=gate_kind_and_estimator(args.estimator)[1],
        )
        seconds = time.perf_counter() - start
        mask = (model.gate_probs() > 0.5).to(xtr)
        with torch.no_grad():
            pruned = accuracy(torch.softmax(model(xte, mask), -1), yte)
        common = {
            "model": "neuron DAG",
            "prior_p": p,
            "estimator": args.estimator,
            "active": int(mask.sum()),
            "candidates": mask.numel(),
            "fraction_active": float(mask.mean()),
        }
        rows.append(
            {
                **common,
                "variant": "gated",
                "test_accuracy": accuracy(model.predict(xte, num_samples=10), yte),
                "seconds": seconds,
            }
        )
        rows.append({**common, "variant": "pruned", "test_accuracy": pruned})
        retrained = model.export_architecture(0.5)
        retrained.fit(xtr, ytr, args.steps, lr=args.lr, batch_size=args.batch_size)
        rows.append(
            {
                **common,
                "variant": "retrained",
                "test_accuracy": accuracy(retrained.predict(xte), yte),
            }
        )
        for r in rows[-3:]:
            print(json.dumps(r), flush=True)
        if p == args.priors[-1] and args.figures:
            save_adjacency(model, args.figures)
    return rows


def layer_blocks():
    return [
        nn.Sequential(nn.LazyConv2d(8, 3, padding=1), nn.ReLU()),
        nn.MaxPool2d(2),
        nn.Sequential(nn.LazyConv2d(16, 3, padding=1), nn.ReLU()),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Flatten(), nn.LazyLinear(10)),
    ]


def layer_dag_runs(data, args):
    (xtr, ytr), (xte, yte) = data
    xtr, xte = xtr.unsqueeze(1), xte.unsqueeze(1)
    rows = []

    def build(p):
        cost = CostPenalty(args.layer_cost_weight, "flops") if args.layer_cost_weight else None
        return LayerDAG(
            layer_blocks(),
            (1, 28, 28),
            merge="concat",
            gate_per=args.layer_gate_per,
            gate=gate_kind_and_estimator(args.estimator)[0],
            prior=BernoulliPrior(p),
            init_logit=2.0,
            cost=cost,
        )

    def flops_fraction(model, mask):
        """Share of the activation elements carried into blocks (the FLOPs cost) that the
        active connections carry."""
        costs = model.gate_costs("flops")
        return float((costs * mask.to(costs)).sum() / costs.sum())

    for variant in () if args.skip_layer_baselines else ("dense", "chain"):
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        model = build(0.5)
        net = model.export_architecture(0.0)
        if variant == "chain":
            net.mask.zero_()
            for k in range(1, model.num_blocks + 1):
                a, b = model.gate_slices[k - 1][k - 1]
                net.mask[a:b] = 1
        start = time.perf_counter()
        net.fit(xtr, ytr, args.layer_steps, lr=args.lr, batch_size=args.batch_size)
        rows.append(
            {
                "model": "layer DAG",
                "variant": variant,
                "prior_p": None,
                "active": net.num_active,
                "candidates": net.mask.numel(),
                "fraction_active": net.fraction_active,
                "flops_fraction": flops_fraction(model, net.mask),
                "test_accuracy": accuracy(net.predict(xte), yte),
                "seconds": time.perf_counter() - start,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    for p in args.layer_priors:
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        model = build(p)
        start = time.perf_counter()
        model.fit(
            xtr,
            ytr,
            args.layer_steps,
            lr=args.lr,
            gate_lr=args.gate_lr,
            gate_betas=(0.9, 0.9),
            batch_size=args.batch_size,
            estimator=gate_kind_and_estimator(args.estimator)[1],
        )
        seconds = time.perf_counter() - start
        mask = (model.gate_probs() > 0.5).to(xtr)
        common = {
            "model": "layer DAG",
            "prior_p": p,
            "estimator": args.estimator,
            "cost_weight": args.layer_cost_weight,
            "gate_per": args.layer_gate_per,
            "active": int(mask.sum()),
            "candidates": mask.numel(),
            "fraction_active": float(mask.mean()),
            "flops_fraction": flops_fraction(model, mask),
            "edge_probs": model.edge_probs().tolist(),
        }
        rows.append(
            {
                **common,
                "variant": "gated",
                "test_accuracy": accuracy(model.predict(xte, num_samples=10), yte),
                "seconds": seconds,
            }
        )
        retrained = model.export_architecture(0.5)
        retrained.fit(xtr, ytr, args.layer_steps, lr=args.lr, batch_size=args.batch_size)
        rows.append(
            {
                **common,
                "variant": "retrained",
                "test_accuracy": accuracy(retrained.predict(xte), yte),
            }
        )
        for r in rows[-2:]:
            print(json.dumps({k: v for k, v in r.items() if k != "edge_probs"}), flush=True)
    return rows


def save_adjacency(model, directory):
    """The neuron DAG's inclusion probabilities: rows are the nodes that receive edges
    (hidden, then output neurons), columns the nodes that send them (pixels, then hidden)."""
    from probnets.viz.gates import plot_adjacency, save_figure

    inputs, hidden, outputs = model.num_inputs, model.num_hidden, model.num_outputs
    kept = model.edge_probs() > 0.5
    print(
        f"adjacency: {int(kept.sum())} edges kept, {int(kept[inputs:, :inputs].sum())} from "
        f"pixels, {int(kept[inputs:, inputs:].sum())} from hidden neurons; "
        f"{int(kept[inputs : inputs + hidden].any(1).sum())} hidden neurons receive an edge",
        flush=True,
    )
    fig = plot_adjacency(
        model.edge_probs(),
        groups=(inputs, hidden, outputs),
        group_names=("pixels", "hidden", "outputs"),
        rows=range(inputs, inputs + hidden + outputs),
        columns=range(inputs + hidden),
        title=f"MNIST neuron DAG {inputs}-{hidden}-{outputs}: posterior inclusion probability "
        "of each candidate edge",
    )
    # One screen pixel or more per column at the saved resolution, so no single kept edge
    # is resampled away.
    fig.set_size_inches(10, 3.8)
    fig.axes[0].set_aspect("auto")
    fig.tight_layout()
    save_figure(fig, os.path.join(directory, "gated_mnist_adjacency.png"))


def plot_layer_dag_flops(paths, directory):
    """Layer-DAG accuracy against the share of the FLOPs cost left on, pooled over runs."""
    from probnets.viz.gates import plot_accuracy_vs_connections, save_figure

    curves, sources = {}, set()
    for path in paths:
        with open(path) as f:
            run = json.load(f)
        sources.add(run["source"])
        for r in run["rows"]:
            if r["model"] != "layer DAG":
                continue
            if "flops_fraction" not in r:
                raise SystemExit(
                    f"{path}: layer-DAG rows without flops_fraction (written by an "
                    "older version of this script); rerun it"
                )
            name = (
                r["variant"]
                if r["prior_p"] is None
                else (f"{r['variant']}, gate per {r.get('gate_per', 'layer')}")
            )
            curves.setdefault(name, []).append((r["flops_fraction"], r["test_accuracy"]))
    fig = plot_accuracy_vs_connections(
        curves,
        title=f"MNIST layer DAG ({', '.join(sorted(sources))})",
        xlabel="share of activation elements carried into blocks (FLOPs cost)",
        lines=False,
    )
    fig.set_size_inches(8, 3.5)
    fig.axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    save_figure(fig, os.path.join(directory, "gated_layer_dag_flops.png"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument(
        "--estimator",
        default="hard_concrete",
        choices=["hard_concrete", *standard_estimators()],
        help="hard-concrete gates, or Bernoulli gates trained by this estimator",
    )
    parser.add_argument(
        "--skip-dense", action="store_true", help="skip the dense neuron-DAG baseline"
    )
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--layer-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--gate-lr", type=float, default=0.05)
    parser.add_argument("--priors", type=float, nargs="+", default=[0.1, 0.01, 0.001])
    parser.add_argument("--layer-priors", type=float, nargs="*", default=[0.1, 0.001])
    parser.add_argument(
        "--layer-cost-weight",
        type=float,
        default=0.0,
        help="CostPenalty weight (nats per activation element) on layer gates",
    )
    parser.add_argument(
        "--layer-gate-per",
        choices=["layer", "feature_map"],
        default="layer",
        help="one gate per layer connection or per feature map",
    )
    parser.add_argument("--skip-layer", action="store_true")
    parser.add_argument("--skip-neuron", action="store_true")
    parser.add_argument("--skip-layer-baselines", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="gated_mnist.json")
    parser.add_argument("--figures", default=None, help="directory for gated_mnist_*.png")
    parser.add_argument(
        "--replot",
        nargs="+",
        default=None,
        metavar="JSON",
        help="only draw gated_layer_dag_flops.png (into --figures) from the "
        "layer-DAG rows of these earlier outputs",
    )
    args = parser.parse_args()
    if args.replot:
        plot_layer_dag_flops(args.replot, args.figures or ".")
        return
    torch.set_num_threads(args.threads)

    train, test = load_mnist("train"), load_mnist("test")
    data = ((train.images, train.labels), (test.images, test.labels))
    print(f"data: {train.source}, {len(train.labels)} train / {len(test.labels)} test")
    rows = [] if args.skip_neuron else neuron_dag_runs(data, args)
    if not args.skip_layer:
        rows += layer_dag_runs(data, args)

    print(
        f"{'model':<12}{'variant':<11}{'prior p':>9}{'active':>9}{'of':>8}{'fraction':>10}"
        f"{'test acc':>10}"
    )
    for r in rows:
        p = "-" if r["prior_p"] is None else f"{r['prior_p']:g}"
        print(
            f"{r['model']:<12}{r['variant']:<11}{p:>9}{r['active']:>9}{r['candidates']:>8}"
            f"{r['fraction_active']:>10.4f}{r['test_accuracy']:>10.4f}"
        )
    with open(args.out, "w") as f:
        json.dump({"config": vars(args), "source": train.source, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")
    if args.figures:
        from probnets.viz.gates import plot_accuracy_vs_connections, save_figure

        curves = {}
        for r in rows:
            curves.setdefault(f"{r['model']}, {r['variant']}", []).append(
                (r["fraction_active"], r["test_accuracy"])
            )
        fig = plot_accuracy_vs_connections(curves, title=f"MNIST ({train.source})")
        save_figure(fig, os.path.join(args.figures, "gated_mnist_accuracy.png"))


if __name__ == "__main__":
    main()
