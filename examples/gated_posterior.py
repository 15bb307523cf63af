"""
Posterior check: guide inclusion probabilities against the exact gate posterior.

A NeuronDAG with 3 inputs, 1 hidden and 2 outputs has 11 gates. With its weights fixed at
known values the posterior over the 2**11 wirings is computed exactly; the guide (a factorized
Bernoulli per gate) is trained with the weights frozen, per estimator, and compared with

- the exact marginals p(z_k = 1 | y), and
- the best factorized guide (coordinate ascent on the exact ELBO), which is the most any
  mean-field guide can reach; the gap in ELBO to it measures the estimator's optimization.

    python examples/gated_posterior.py --steps 600
"""

import argparse
import json
import time

import pyro
import torch

from probnets.models.gated import BernoulliPrior, NeuronDAG
from probnets.models.gated.enumeration import (
    best_factorized_guide,
    exact_marginals,
    factorized_elbo,
    log_joint_table,
)

WEIGHTS = [1.0, -1.0, 0.8, 1.0, 0.7, -0.6, 1.2, 0.9, -1.1, 0.5, -0.8]
TRUE_GATES = [1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1.0]


def estimators(particles):
    import probnets.infer as infer

    vectorized = dict(num_particles=particles, vectorize_particles=True)
    return {
        "tracegraph": lambda: pyro.infer.TraceGraph_ELBO(
            num_particles=particles, vectorize_particles=True, max_plate_nesting=1
        ),
        "score+avg": lambda: infer.ScoreFunction_ELBO(baseline="decaying_avg", **vectorized),
        "score+loo": lambda: infer.ScoreFunction_ELBO(baseline="loo", **vectorized),
        "disarm": lambda: infer.DisARM_ELBO(**vectorized),
        "relaxed": lambda: infer.Relaxed_ELBO(temperature=0.5, **vectorized),
        "rebar": lambda: infer.REBAR_ELBO(**vectorized),
        "vimco": lambda: infer.VIMCO_ELBO(**vectorized),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--estimators", nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="gated_posterior.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pyro.set_rng_seed(0)
    model = NeuronDAG(3, 1, 2, noise_scale=0.5, prior=BernoulliPrior(0.3), init_logit=0.0)
    with torch.no_grad():
        model.weight.copy_(torch.tensor(WEIGHTS))
    x = torch.randn(12, 3)
    with torch.no_grad():
        y = model(x, torch.tensor(TRUE_GATES)) + 0.5 * torch.randn(12, 2)
    table = log_joint_table(model, x, y)
    exact = exact_marginals(table, model.num_gates)
    best, best_elbo = best_factorized_guide(table, model.num_gates)
    log_evidence = float(torch.logsumexp(table.double(), 0))
    rows = [
        {"estimator": "exact marginals", "probs": exact.tolist()},
        {"estimator": "best factorized", "probs": best.tolist(), "elbo": best_elbo},
    ]
    table_of = estimators(args.particles)
    for name in args.estimators or list(table_of):
        pyro.clear_param_store()
        pyro.set_rng_seed(1)
        with torch.no_grad():
            model.gate_logits.zero_()
        start = time.perf_counter()
        model.fit(
            x,
            y,
            args.steps,
            estimator=table_of[name](),
            gate_lr=0.05,
            param_groups={"*weight": {"lr": 0.0}, "*bias": {"lr": 0.0}},
        )
        q = model.gate_probs()
        rows.append(
            {
                "estimator": name,
                "probs": q.tolist(),
                "elbo": factorized_elbo(table, q),
                "max_abs_vs_best_factorized": float((q - best).abs().max()),
                "max_abs_vs_exact": float((q - exact).abs().max()),
                "seconds": time.perf_counter() - start,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(f"log evidence {log_evidence:.3f}; best factorized ELBO {best_elbo:.3f}")
    print(
        f"{'':<17}"
        + "".join(f"{k:>6}" for k in range(model.num_gates))
        + f"{'ELBO':>9}{'|q-best|':>9}{'|q-exact|':>10}"
    )
    for r in rows:
        extra = ""
        if "max_abs_vs_best_factorized" in r:
            extra = (
                f"{r['elbo']:>9.3f}{r['max_abs_vs_best_factorized']:>9.3f}"
                f"{r['max_abs_vs_exact']:>10.3f}"
            )
        elif "elbo" in r:
            extra = f"{r['elbo']:>9.3f}"
        print(f"{r['estimator']:<17}" + "".join(f"{p:>6.2f}" for p in r["probs"]) + extra)
    with open(args.out, "w") as f:
        json.dump({"config": vars(args), "log_evidence": log_evidence, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
