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
"""

#: Estimators to compare with fit's default. The model has no control flow on sampled gates
#: that changes its sites, so the unbiased ones may reuse their dependency tracking.
ESTIMATORS = {
    "relaxed": lambda: Relaxed_ELBO(temperature=0.5),
    "disarm": lambda: DisARM_ELBO(cache_dependencies=True),
    "score+avg": lambda: ScoreFunction_ELBO(baseline="decaying_avg", cache_dependencies=True),
}

import argparse
import json
import os
import time

import pyro
import torch

from probnets.data.dag_toy import sparse_linear_teacher
from probnets.infer import DisARM_ELBO, Relaxed_ELBO, ScoreFunction_ELBO
from probnets.models.gated import NeuronDAG


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    parser.add_argument("--sizes", type=int, nargs=3, default=[6, 16, 3], metavar=("I", "H", "O"))
    parser.add_argument("--dependencies", type=int, default=6)
    parser.add_argument("--num-data", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--estimator", default=None, choices=list(ESTIMATORS),
                        help="estimator of the gates (default: fit's own)")
    parser.add_argument("--out", default="gated_defaults.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    I, H, O = args.sizes

    rows = []
    for seed in args.seeds:
        teacher = sparse_linear_teacher(I, O, args.dependencies, args.num_data,
                                        noise_scale=args.noise, seed=seed)
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        net = NeuronDAG(I, H, O)
        extra = {}
        if args.estimator is not None:
            extra["estimator"] = ESTIMATORS[args.estimator]()
        wall, cpu = time.perf_counter(), time.process_time()
        net.fit(teacher.x, teacher.y, args.steps, **extra)
        row = {"seed": seed, "estimator": args.estimator or "default",
               **score(net, teacher),
               "cpu_seconds": time.process_time() - cpu,
               "wall_seconds": time.perf_counter() - wall,
               "load_average": os.getloadavg()[0]}
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"{'seed':>6}{'ok':>5}{'kept':>6}{'missing':>9}{'spurious':>10}{'cut':>6}"
          f"{'cpu s':>8}{'wall s':>8}{'load':>6}")
    for r in rows:
        print(f"{r['seed']:>6}{'yes' if r['success'] else 'no':>5}{r['edges_kept']:>6}"
              f"{r['missing']:>9}{r['spurious']:>10}"
              f"{r['unused_inputs_cut']:>3}/{r['unused_inputs']:<2}"
              f"{r['cpu_seconds']:>8.1f}{r['wall_seconds']:>8.1f}{r['load_average']:>6.1f}")
    with open(args.out, "w") as f:
        json.dump({"config": vars(args), "results": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
