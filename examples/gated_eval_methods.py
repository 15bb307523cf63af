"""
How to evaluate a neuron DAG in parallel: forward + backward time of NeuronDAG's three
evaluation methods, as a ratio to the neuron-at-a-time reference measured in the same run
(the CPU is shared; absolute times are noisy).

- ``levels``: hidden neurons grouped by topological level of the sampled hidden->hidden
  wiring, one batched product per level (the default),
- ``dense``: the full masked hidden->hidden product repeated depth times,
- ``sequential``: one hidden neuron at a time (reference).

    python examples/gated_eval_methods.py
"""

import argparse
import json
import time

import torch

from probnets.models.gated import NeuronDAG
from probnets.models.gated.structure import topological_levels


def timed(model, x, gates, method, repeats):
    def once():
        out = model(x, gates, method=method)
        out.square().sum().backward()

    once()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="gated_eval_methods.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for sizes in ((5, 16, 4), (784, 32, 10), (784, 128, 10)):
        model = NeuronDAG(*sizes)
        x = torch.randn(args.batch_size, sizes[0])
        for density in (1.0, 0.1):
            gates = torch.bernoulli(torch.full((model.num_gates,), density))
            hidden = slice(sizes[0], sizes[0] + sizes[1])
            depth = int(topological_levels(model.to_matrix(gates).bool()[hidden, hidden]).max())
            times = {
                m: timed(model, x, gates, m, args.repeats)
                for m in ("sequential", "levels", "dense")
            }
            row = {
                "sizes": sizes,
                "gate_density": density,
                "depth": depth,
                **{f"ms_{m}": 1e3 * t for m, t in times.items()},
                **{f"ratio_{m}": t / times["sequential"] for m, t in times.items()},
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("forward+backward time as a ratio to 'sequential' in this run (shared CPU)")
    print(f"{'I,H,O':<14}{'density':>8}{'depth':>6}{'levels':>8}{'dense':>8}{'seq ms':>8}")
    for r in rows:
        print(
            f"{','.join(map(str, r['sizes'])):<14}{r['gate_density']:>8}{r['depth']:>6}"
            f"{r['ratio_levels']:>8.2f}{r['ratio_dense']:>8.2f}{r['ms_sequential']:>8.1f}"
        )
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
