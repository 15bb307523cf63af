"""
The DNM toy (:func:`probnets.data.dag_toy.dnm_toy`) with a latent neuron DAG: does inference
recover the wiring?

Inputs a..e ~ N(0, 1), targets (b+e, e-d, b+e+d, e-d-c); 5 inputs + 16 hidden + 4 outputs =
25 neurons, 284 candidate edges. Success on a seed means: all 10 true input->output
dependencies present (a directed path of edges with inclusion probability > 0.5), input ``a``
disconnected from every output, no spurious dependency.

Every estimator trains the same model; the hard-concrete (L0) run is the reference, and
times are reported as a ratio to it *within this run* (the CPU is shared, so absolute
seconds are noisy). Training stops early once the wiring is decided: every gate's inclusion
probability is below 0.1 or above 0.9 and the thresholded edge set has not changed over the
last ``--patience`` checks (a criterion that does not look at the truth).

    python examples/gated_toy.py --seeds 0 1 2 --estimators hard_concrete relaxed disarm
"""

import argparse
import json
import os
import time

import pyro
import torch

from probnets.data.dag_toy import dnm_toy
from probnets.infer import Relaxed_ELBO, standard_estimators
from probnets.models.gated import BernoulliPrior, NeuronDAG


def make_estimator(name):
    """``(gate kind, ELBO)`` for a name of ``--estimators``: ``hard_concrete`` (L0 gates,
    pathwise gradients under Pyro's ``Trace_ELBO``), ``relaxed_st`` (straight-through
    Concrete at temperature 0.5), or any name of :func:`probnets.infer.standard_estimators`
    for Bernoulli gates (VIMCO and leave-one-out with 4 particles)."""
    if name == "hard_concrete":
        return "hard_concrete", pyro.infer.Trace_ELBO()
    if name == "relaxed_st":
        return "bernoulli", Relaxed_ELBO(temperature=0.5, straight_through=True)
    table = standard_estimators(num_particles=4)
    if name not in table:
        raise ValueError(
            f"--estimators: unknown estimator {name!r}; choose from "
            f"{['hard_concrete', 'relaxed_st', *table]}"
        )
    return "bernoulli", table[name]()


class WiringConverged:
    """Stop once every gate is decided and the edge set is stable (never looks at truth)."""

    def __init__(self, model, every=100, patience=3, min_steps=500):
        self.model, self.every, self.patience, self.min_steps = model, every, patience, min_steps
        self.last, self.stable = None, 0

    def __call__(self, step, loss):
        if step % self.every or step < self.min_steps:
            return False
        probs = self.model.gate_probs()
        edges = probs > 0.5
        decided = bool(((probs < 0.1) | (probs > 0.9)).all())
        unchanged = self.last is not None and torch.equal(edges, self.last)
        self.stable = self.stable + 1 if unchanged else 0
        self.last = edges
        return decided and self.stable >= self.patience


def run(name, seed, args):
    gate, elbo = make_estimator(name)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    toy = dnm_toy(args.num_data, seed=seed)
    model = NeuronDAG(
        5,
        16,
        4,
        gate=gate,
        prior=BernoulliPrior(args.prior_p),
        noise_scale=args.noise_scale,
        init_logit=0.0,
    )
    stop = WiringConverged(model, patience=args.patience)
    start = time.perf_counter()
    model.fit(
        toy.x,
        toy.y,
        args.max_steps,
        estimator=elbo,
        lr=args.lr,
        gate_lr=args.gate_lr,
        gate_betas=(0.9, 0.9),
        batch_size=args.batch_size,
        record_every=args.record_every,
        callback=stop,
    )
    history = model.history
    seconds = time.perf_counter() - start
    dep = model.dependencies()
    truth = toy.dependencies
    test = dnm_toy(1000, seed=10_000 + seed)
    mse = float(((model.predict(test.x, num_samples=50) - test.y) ** 2).mean())
    result = {
        "estimator": name,
        "seed": seed,
        "seconds": seconds,
        "steps": len(history["loss"]),
        "converged": len(history["loss"]) < args.max_steps,
        "edges": int((model.gate_probs() > 0.5).sum()),
        "undecided_gates": int(((model.gate_probs() > 0.1) & (model.gate_probs() < 0.9)).sum()),
        "missing_dependencies": int((truth & ~dep).sum()),
        "spurious_dependencies": int((dep & ~truth).sum()),
        "a_disconnected": not bool(dep[:, 0].any()),
        "test_mse": mse,
    }
    result["success"] = (
        result["missing_dependencies"] == 0
        and result["spurious_dependencies"] == 0
        and result["a_disconnected"]
    )
    return result, model, history


def step_timing(args):
    """Seconds per training step of each estimator, measured round-robin (several rounds of
    ``--timing-steps`` steps each) so that load changes on the shared CPU hit all alike."""
    toy = dnm_toy(args.num_data, seed=0)
    totals = {name: 0.0 for name in args.estimators}
    for _ in range(args.timing_rounds):
        for name in args.estimators:
            gate, elbo = make_estimator(name)
            pyro.clear_param_store()
            pyro.set_rng_seed(0)
            model = NeuronDAG(
                5,
                16,
                4,
                gate=gate,
                prior=BernoulliPrior(args.prior_p),
                noise_scale=args.noise_scale,
                init_logit=0.0,
            )
            model.fit(toy.x, toy.y, 5, estimator=elbo, batch_size=args.batch_size)  # warm-up
            start = time.perf_counter()
            model.fit(
                toy.x,
                toy.y,
                args.timing_steps,
                estimator=elbo,
                lr=args.lr,
                gate_lr=args.gate_lr,
                gate_betas=(0.9, 0.9),
                batch_size=args.batch_size,
            )
            totals[name] += time.perf_counter() - start
    steps = args.timing_steps * args.timing_rounds
    ref = totals.get("hard_concrete", float("nan")) / steps
    print("seconds per step, round-robin over estimators; ratio to hard-concrete (shared CPU)")
    rows = []
    for name, total in totals.items():
        rows.append(
            {
                "estimator": name,
                "ms_per_step": 1e3 * total / steps,
                "ratio_vs_hard_concrete": total / steps / ref,
            }
        )
        print(
            f"{name:<14}{rows[-1]['ms_per_step']:>9.1f} ms"
            f"{rows[-1]['ratio_vs_hard_concrete']:>7.2f}"
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--estimators", nargs="+", default=["hard_concrete", "relaxed", "disarm", "score+avg"]
    )
    parser.add_argument("--max-steps", type=int, default=4000)
    parser.add_argument("--num-data", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--prior-p", type=float, default=0.01)
    parser.add_argument("--noise-scale", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--gate-lr", type=float, default=0.05)
    parser.add_argument("--record-every", type=int, default=25)
    parser.add_argument(
        "--patience",
        type=int,
        default=3,
        help="stop after this many stable checks (100 steps apart)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--timing-steps",
        type=int,
        default=0,
        help="only measure seconds per step (this many steps per round)",
    )
    parser.add_argument("--timing-rounds", type=int, default=3)
    parser.add_argument("--out", default="gated_toy.json")
    parser.add_argument("--figures", default=None, help="directory for gated_toy_*.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.timing_steps:
        rows = step_timing(args)
        with open(args.out, "w") as f:
            json.dump({"config": vars(args), "step_timing": rows}, f, indent=1)
        return

    results = []
    print("time ratios are against the hard-concrete runs of this invocation (shared CPU)")
    for name in args.estimators:
        for seed in args.seeds:
            result, model, history = run(name, seed, args)
            results.append(result)
            print(json.dumps(result), flush=True)
            if args.figures and seed == args.seeds[0]:
                save_figures(model, history, name, args.figures)

    reference = [r["seconds"] for r in results if r["estimator"] == "hard_concrete"]
    ref = sum(reference) / len(reference) if reference else float("nan")
    header = (
        f"{'estimator':<14}{'seed':>5}{'ok':>4}{'edges':>6}{'undec':>6}{'miss':>5}{'spur':>5}"
        f"{'a off':>6}{'steps':>6}{'sec':>8}{'x HC':>6}{'test mse':>10}"
    )
    print(header)
    for r in results:
        r["time_ratio_vs_hard_concrete"] = r["seconds"] / ref
        print(
            f"{r['estimator']:<14}{r['seed']:>5}{'Y' if r['success'] else 'n':>4}{r['edges']:>6}"
            f"{r['undecided_gates']:>6}{r['missing_dependencies']:>5}"
            f"{r['spurious_dependencies']:>5}{'Y' if r['a_disconnected'] else 'n':>6}"
            f"{r['steps']:>6}{r['seconds']:>8.1f}{r['time_ratio_vs_hard_concrete']:>6.2f}"
            f"{r['test_mse']:>10.4f}"
        )
    with open(args.out, "w") as f:
        json.dump({"config": vars(args), "results": results}, f, indent=1)
    print(f"wrote {args.out}")


def save_figures(model, history, name, directory):
    from probnets.viz.gates import plot_adjacency, plot_gate_trajectories, save_figure

    os.makedirs(directory, exist_ok=True)
    labels = list("abcde") + [f"h{i}" for i in range(16)] + ["b+e", "e-d", "b+e+d", "e-d-c"]
    fig = plot_gate_trajectories(
        history["gate_steps"], history["gate_probs"], title=f"DNM toy, {name} gates"
    )
    save_figure(fig, os.path.join(directory, f"gated_toy_trajectories_{name}.png"))
    fig = plot_adjacency(
        model.edge_probs(), groups=(5, 16, 4), labels=labels, title=f"posterior wiring ({name})"
    )
    save_figure(fig, os.path.join(directory, f"gated_toy_adjacency_{name}.png"))


if __name__ == "__main__":
    main()
