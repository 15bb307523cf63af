"""
The one-liner with nothing but sizes: ``NeuronDAG(I, H, O).fit(x, y, num_steps)`` on sparse
linear teachers it has never seen (:func:`probnets.data.dag_toy.sparse_linear_teacher`).

Success on a seed means the edges with ``edge_probs() > 0.5`` reach exactly the teacher's
input->output dependencies (none missing, none spurious) and every input the teacher does
not use is cut (no kept edge leaves it). Times are single-threaded: ``cpu s`` is the process
CPU time (what one idle core would take), ``wall s`` the elapsed time on this machine, whose
load average is printed alongside because other jobs share its cores.

    python examples/gated_defaults.py --seeds 1000 1001 1002
    python examples/gated_defaults.py --estimator disarm --seeds 1000   # another estimator
    python examples/gated_defaults.py --layer-dag --steps 1000   # LayerDAG, per-channel gates

``--layer-dag`` runs ``LayerDAG(blocks, (I, 1, 1), gate_per="feature_map",
likelihood="normal")`` (a tanh layer of ``H`` units, then a linear readout, every earlier
output feeding every later block) and scores which input channels reach the output.
"""

import argparse
import json
import os
import time

import pyro
import torch
from torch import nn

from probnets.data.dag_toy import sparse_linear_teacher
from probnets.infer import DisARM_ELBO, Relaxed_ELBO, ScoreFunction_ELBO
from probnets.models.gated import LayerDAG, NeuronDAG

#: Estimators to compare with fit's default. The model has no control flow on sampled gates
#: that changes its sites, so the unbiased ones may reuse their dependency tracking.
ESTIMATORS = {
    "relaxed": lambda: Relaxed_ELBO(temperature=0.5),
    "disarm": lambda: DisARM_ELBO(cache_dependencies=True),
    "score+avg": lambda: ScoreFunction_ELBO(baseline="decaying_avg", cache_dependencies=True),
}


def score(net, teacher):
    """Recovery of the teacher's dependencies by the edges above 0.5."""
    dep = net.dependencies()
    truth = teacher.dependencies
    kept = net.edge_probs() > 0.5
    unused = ~truth.any(0)
    leaves_unused = kept[:, : net.num_inputs][:, unused].any(0)
    return {
        "edges_kept": int(kept.sum()),
        "candidate_edges": net.num_gates,
        "true_dependencies": int(truth.sum()),
        "missing": int((truth & ~dep).sum()),
        "spurious": int((dep & ~truth).sum()),
        "unused_inputs": int(unused.sum()),
        "unused_inputs_cut": int((~leaves_unused).sum()),
        "success": bool(torch.equal(dep, truth) and not leaves_unused.any()),
    }


def layer_dag_row(teacher, sizes, steps):
    """The LayerDAG one-liner with one gate per input channel; success when exactly the input
    channels the teacher uses reach the output."""
    I, H, O = sizes
    blocks = [
        nn.Sequential(nn.Flatten(), nn.LazyLinear(H), nn.Tanh()),
        nn.Sequential(nn.Flatten(), nn.LazyLinear(O)),
    ]
    net = LayerDAG(blocks, (I, 1, 1), gate_per="feature_map", likelihood="normal")
    wall, cpu = time.perf_counter(), time.process_time()
    net.fit(teacher.x.view(-1, I, 1, 1), teacher.y, steps)
    used = teacher.dependencies.any(0)
    reached = net.dependencies()
    return {
        "gates_kept": int((net.gate_probs() > 0.5).sum()),
        "gates": net.num_gates,
        "used_inputs": int(used.sum()),
        "reached_inputs": int(reached.sum()),
        "success": bool(torch.equal(reached, used)),
        "cpu_seconds": time.process_time() - cpu,
        "wall_seconds": time.perf_counter() - wall,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs=3,
        default=None,
        metavar=("I", "H", "O"),
        help="default 6 16 3 (NeuronDAG), 6 8 3 (--layer-dag)",
    )
    parser.add_argument("--dependencies", type=int, default=6)
    parser.add_argument("--num-data", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument(
        "--estimator",
        default=None,
        choices=list(ESTIMATORS),
        help="estimator of the gates (default: fit's own)",
    )
    parser.add_argument(
        "--learned-noise",
        action="store_true",
        help="NeuronDAG(..., noise_scale=None): learn the noise scale instead",
    )
    parser.add_argument(
        "--layer-dag",
        action="store_true",
        help="run the LayerDAG one-liner (H: units of its hidden block)",
    )
    parser.add_argument("--out", default="gated_defaults.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.sizes is None:
        args.sizes = [6, 8, 3] if args.layer_dag else [6, 16, 3]
    I, H, O = args.sizes

    rows = []
    for seed in args.seeds:
        teacher = sparse_linear_teacher(
            I, O, args.dependencies, args.num_data, noise_scale=args.noise, seed=seed
        )
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        if args.layer_dag:
            rows.append(
                {
                    "seed": seed,
                    **layer_dag_row(teacher, (I, H, O), args.steps),
                    "load_average": os.getloadavg()[0],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            continue
        net = NeuronDAG(I, H, O, noise_scale=None) if args.learned_noise else NeuronDAG(I, H, O)
        extra = {}
        if args.estimator is not None:
            extra["estimator"] = ESTIMATORS[args.estimator]()
        wall, cpu = time.perf_counter(), time.process_time()
        net.fit(teacher.x, teacher.y, args.steps, **extra)
        row = {
            "seed": seed,
            "estimator": args.estimator or "default",
            **score(net, teacher),
            "cpu_seconds": time.process_time() - cpu,
            "wall_seconds": time.perf_counter() - wall,
            "load_average": os.getloadavg()[0],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    if args.layer_dag:
        print(f"{'seed':>6}{'ok':>5}{'kept':>10}{'reached':>9}{'used':>6}{'cpu s':>8}{'wall s':>8}")
        for r in rows:
            print(
                f"{r['seed']:>6}{'yes' if r['success'] else 'no':>5}"
                f"{r['gates_kept']:>4} of {r['gates']:<2}{r['reached_inputs']:>9}"
                f"{r['used_inputs']:>6}{r['cpu_seconds']:>8.1f}{r['wall_seconds']:>8.1f}"
            )
    else:
        print_table(rows)
    with open(args.out, "w") as f:
        json.dump({"config": vars(args), "results": rows}, f, indent=1)
    print(f"wrote {args.out}")


def print_table(rows):
    print(
        f"{'seed':>6}{'ok':>5}{'kept':>6}{'missing':>9}{'spurious':>10}{'cut':>6}"
        f"{'cpu s':>8}{'wall s':>8}{'load':>6}"
    )
    for r in rows:
        print(
            f"{r['seed']:>6}{'yes' if r['success'] else 'no':>5}{r['edges_kept']:>6}"
            f"{r['missing']:>9}{r['spurious']:>10}"
            f"{r['unused_inputs_cut']:>3}/{r['unused_inputs']:<2}"
            f"{r['cpu_seconds']:>8.1f}{r['wall_seconds']:>8.1f}{r['load_average']:>6.1f}"
        )


if __name__ == "__main__":
    main()
