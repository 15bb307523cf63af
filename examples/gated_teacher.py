"""
Teacher-student wiring recovery: a random sparse teacher DAG generates regression data; a
student NeuronDAG of the same size infers its wiring.

Reported per estimator:

- edge AUROC and SHD *as placed*: the student's inclusion probabilities against the teacher's
  edges over all candidate edges, and the structural Hamming distance (SHD) of the edges
  with inclusion probability > 0.5;
- edge AUROC and SHD *after matching*: hidden neurons are interchangeable (a student may
  compute a teacher neuron's function at another position), so the student's hidden neurons
  are first relabelled by the assignment that maximises the absolute correlation of their
  activations with the teacher's on the training inputs
  (:func:`~probnets.models.gated.structure.match_hidden_units`, Hungarian algorithm), and
  the comparison runs over every node pair that is a candidate edge in either labelling;
- dependency AUROC and SHD: which inputs each output depends on, scored by the strongest
  path (:func:`~probnets.models.gated.structure.path_strength`) and thresholded at 0.5;
  invariant to the labelling of hidden neurons, the identifiable part.

Times are ratios to the hard-concrete run of the same invocation (shared CPU).

    python examples/gated_teacher.py --estimators hard_concrete relaxed disarm score+avg
"""

import argparse
import json
import time

import pyro
import torch

from probnets.data.dag_toy import random_teacher_dag, teacher_data, teacher_forward
from probnets.infer import standard_estimators
from probnets.models.gated import BernoulliPrior, NeuronDAG
from probnets.models.gated.structure import (
    auroc,
    match_hidden_units,
    path_strength,
    permute_hidden,
    reachability,
    structural_hamming_distance,
)


def make_estimator(name):
    """``(gate kind, ELBO)``: ``hard_concrete`` (L0 gates under Pyro's ``Trace_ELBO``) or a
    name of :func:`probnets.infer.standard_estimators` for Bernoulli gates."""
    if name == "hard_concrete":
        return "hard_concrete", pyro.infer.Trace_ELBO()
    table = standard_estimators(num_particles=4)
    if name not in table:
        raise ValueError(
            f"--estimators: unknown estimator {name!r}, expected one of {['hard_concrete', *table]}"
        )
    return "bernoulli", table[name]()


def matched_edge_scores(teacher, student, probs, x):
    """Edge AUROC and SHD after relabelling the student's hidden neurons to the teacher's."""
    I = teacher.num_inputs
    _, teacher_hidden = teacher_forward(teacher, x, return_hidden=True)
    with torch.no_grad():
        student_hidden = student.hidden_activations(x, (student.gate_probs() > 0.5).to(x))
    perm, corr = match_hidden_units(teacher_hidden, student_hidden)
    probs = permute_hidden(probs, I, perm)
    # the student has the teacher's node layout: its unpermuted candidates are the teacher's
    candidates = permute_hidden(student.candidate_mask(), I, perm) | student.candidate_mask()
    return {
        "matched_edge_auroc": auroc(probs[candidates], teacher.adjacency[candidates]),
        "matched_edge_shd": structural_hamming_distance(probs > 0.5, teacher.adjacency),
        "matched_mean_abs_corr": float(corr.mean()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--estimators", nargs="+", default=["hard_concrete", "relaxed", "disarm"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--sizes", type=int, nargs=3, default=[6, 10, 3])
    parser.add_argument("--edge-prob", type=float, default=0.15)
    parser.add_argument("--num-data", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--prior-p", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="gated_teacher.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    I, H, O = args.sizes

    results = []
    for seed in args.seeds:
        teacher = random_teacher_dag(I, H, O, edge_prob=args.edge_prob, seed=seed)
        x, y = teacher_data(teacher, args.num_data, noise_scale=0.1, seed=seed)
        true_dep = reachability(teacher.adjacency)[I + H :, :I]
        for name in args.estimators:
            gate, elbo = make_estimator(name)
            pyro.clear_param_store()
            pyro.set_rng_seed(seed)
            student = NeuronDAG(
                I,
                H,
                O,
                gate=gate,
                prior=BernoulliPrior(args.prior_p),
                noise_scale=1.0,
                init_logit=0.0,
            )
            start = time.perf_counter()
            student.fit(
                x,
                y,
                args.steps,
                estimator=elbo,
                lr=0.01,
                gate_lr=0.05,
                gate_betas=(0.9, 0.9),
                batch_size=100,
            )
            seconds = time.perf_counter() - start
            cand = student.candidate_mask()
            probs = student.edge_probs()
            dependency_scores = path_strength(probs, I, O)
            result = {
                "estimator": name,
                "seed": seed,
                "true_edges": int(teacher.adjacency.sum()),
                "candidate_edges": int(cand.sum()),
                "student_edges": int((probs > 0.5).sum()),
                "edge_auroc": auroc(probs[cand], teacher.adjacency[cand]),
                "edge_shd": structural_hamming_distance(probs > 0.5, teacher.adjacency),
                **matched_edge_scores(teacher, student, probs, x),
                "dependency_auroc": auroc(dependency_scores.flatten(), true_dep.flatten()),
                "dependency_shd": structural_hamming_distance(student.dependencies(), true_dep),
                "true_dependencies": int(true_dep.sum()),
                "seconds": seconds,
            }
            results.append(result)
            print(json.dumps(result), flush=True)

    ref = [r["seconds"] for r in results if r["estimator"] == "hard_concrete"]
    ref = sum(ref) / len(ref) if ref else float("nan")
    print("time ratios are against the hard-concrete runs of this invocation (shared CPU)")
    print(
        f"{'estimator':<14}{'seed':>5}{'true':>6}{'kept':>6}{'AUROC':>8}{'SHD':>6}"
        f"{'m.AUROC':>9}{'m.SHD':>7}{'dep AUROC':>10}{'dep SHD':>9}{'x HC':>7}"
    )
    for r in results:
        r["time_ratio_vs_hard_concrete"] = r["seconds"] / ref
        print(
            f"{r['estimator']:<14}{r['seed']:>5}{r['true_edges']:>6}{r['student_edges']:>6}"
            f"{r['edge_auroc']:>8.3f}{r['edge_shd']:>6}{r['matched_edge_auroc']:>9.3f}"
            f"{r['matched_edge_shd']:>7}{r['dependency_auroc']:>10.3f}{r['dependency_shd']:>9}"
            f"{r['time_ratio_vs_hard_concrete']:>7.2f}"
        )
    with open(args.out, "w") as f:
        json.dump({"config": vars(args), "results": results}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
