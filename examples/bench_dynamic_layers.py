"""Benchmark per-example (dynamic) convolution and linear layers against static ones.

For every shape, each strategy of :func:`probnets.nn.functional.dynamic_conv2d` (and of
:func:`~probnets.nn.functional.dynamic_linear`) is timed forward + backward (gradients with
respect to input and weights, since hypernetwork weights need them), interleaved with the
static ``F.conv2d`` / ``F.linear`` of the same shapes and the per-example loop, and the
median over repeats is reported. The CPU is shared with other jobs, so absolute times are
noisy: read the ratios (to the static layer and to the loop, both measured in the same run).

    python examples/bench_dynamic_layers.py --out bench_dynamic_layers.json [--quick]
"""

import argparse
import itertools
import json
import platform
import statistics
import time

import torch
from torch.nn import functional as F

from probnets.nn.functional import (
    DYNAMIC_CONV2D_METHODS,
    DYNAMIC_LINEAR_METHODS,
    choose_conv2d_method,
    dynamic_conv2d,
    dynamic_linear,
)


def conv_stack(layer, x, weights, padding):
    """Stacked 3x3 convolutions with ReLU in between, like the reactive network's CNN."""
    h = x
    for i, w in enumerate(weights):
        h = layer(h, w, padding)
        if i + 1 < len(weights):
            h = torch.relu(h)
    return h


def time_interleaved(fns, repeats, budget):
    """Median fwd+bwd seconds of each fn, run round-robin so load changes hit all alike."""
    times = {name: [] for name in fns}
    start = time.perf_counter()
    for r in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if r >= 4 and time.perf_counter() - start > budget:
            break
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_conv(batch, channels, size, repeats, budget):
    torch.manual_seed(0)
    x = torch.randn(batch, channels[0], size, size, requires_grad=True)
    dyn_w = [
        (0.3 * torch.randn(batch, o, i, 3, 3)).requires_grad_()
        for i, o in zip(channels[:-1], channels[1:])
    ]
    static_w = [w[0].detach().clone().requires_grad_() for w in dyn_w]

    def run(layer, ws):
        def fn():
            conv_stack(layer, x, ws, 1).sum().backward()

        return fn

    fns = {"static": run(lambda h, w, p: F.conv2d(h, w, padding=p), static_w)}
    for method in DYNAMIC_CONV2D_METHODS:
        fns[method] = run(
            lambda h, w, p, m=method: dynamic_conv2d(h, w, padding=p, method=m), dyn_w
        )
    med = time_interleaved(fns, repeats, budget)
    chosen = [
        choose_conv2d_method(batch, i, o, size, size) for i, o in zip(channels[:-1], channels[1:])
    ]
    return med, chosen


def bench_linear(batch, rows, in_f, out_f, repeats, budget):
    torch.manual_seed(0)
    shape = (batch, in_f) if rows == 1 else (batch, rows, in_f)
    x = torch.randn(shape, requires_grad=True)
    w = torch.randn(batch, out_f, in_f, requires_grad=True)
    b = torch.randn(batch, out_f, requires_grad=True)
    ws, bs = w[0].detach().clone().requires_grad_(), b[0].detach().clone().requires_grad_()
    fns = {"static": lambda: F.linear(x, ws, bs).sum().backward()}
    for method in DYNAMIC_LINEAR_METHODS:
        fns[method] = lambda m=method: dynamic_linear(x, w, b, method=m).sum().backward()
    return time_interleaved(fns, repeats, budget)


def print_table(title, rows, methods):
    print(f"\n{title}")
    print(
        "fwd+bwd median ms; [x static, x loop] measured in the same run (shared CPU: trust ratios)"
    )
    head = f"{'shape':34s}" + "".join(f"{m:>26s}" for m in methods)
    print(head)
    for row in rows:
        cells = []
        for m in methods:
            t = row["ms"][m]
            cells.append(f"{t:8.2f} [{t / row['ms']['static']:5.2f},{t / row['ms']['loop']:5.2f}]")
        print(f"{row['shape']:34s}" + "".join(f"{c:>26s}" for c in cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_dynamic_layers.json")
    parser.add_argument("--quick", action="store_true", help="a few shapes, few repeats")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per shape")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: with other jobs on the cores, OpenMP's "
        "multi-thread barriers make timings several times slower and erratic)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.quick:
        conv_grid = [(64, (1, 6, 6, 6), 28), (16, (16, 16), 14)]
        lin_grid = [(64, 1, 64, 64), (32, 100, 128, 128)]
        args.repeats = min(args.repeats, 5)
    else:
        conv_grid = [(64, (1, 6, 6, 6), 28), (256, (1, 6, 6, 6), 28), (8, (1, 6, 6, 6), 28)]
        conv_grid += [
            (b, ch, s)
            for b, ch, s in itertools.product(
                (8, 64, 256), ((1, 6), (6, 6), (3, 16), (16, 16), (32, 32)), (8, 28)
            )
            if not (b == 256 and ch[1] >= 32 and s == 28)  # loop too slow to time here
        ]
        lin_grid = [
            (b, n, i, o)
            for b, n, (i, o) in itertools.product(
                (8, 64, 256), (1, 16), ((16, 16), (64, 64), (256, 256))
            )
        ]

    conv_rows = []
    for batch, channels, size in conv_grid:
        med, chosen = bench_conv(batch, channels, size, args.repeats, args.budget)
        shape = f"B={batch} C={'-'.join(map(str, channels))} {size}x{size}"
        conv_rows.append(
            {
                "shape": shape,
                "batch": batch,
                "channels": channels,
                "size": size,
                "auto_choice": chosen,
                "ms": {k: 1e3 * v for k, v in med.items()},
            }
        )
        print(shape, " ".join(f"{k}={1e3 * v:.2f}" for k, v in med.items()), chosen, flush=True)
    lin_rows = []
    for batch, rows, in_f, out_f in lin_grid:
        med = bench_linear(batch, rows, in_f, out_f, args.repeats, args.budget)
        shape = f"B={batch} N={rows} {in_f}->{out_f}"
        lin_rows.append(
            {
                "shape": shape,
                "batch": batch,
                "rows": rows,
                "in": in_f,
                "out": out_f,
                "ms": {k: 1e3 * v for k, v in med.items()},
            }
        )
        print(shape, " ".join(f"{k}={1e3 * v:.3f}" for k, v in med.items()), flush=True)

    print_table(
        "dynamic_conv2d (3x3, padding 1, ReLU between layers)",
        conv_rows,
        ("static",) + DYNAMIC_CONV2D_METHODS,
    )
    print_table("dynamic_linear", lin_rows, ("static",) + DYNAMIC_LINEAR_METHODS)

    def summary(rows, methods):
        auto_vs_best = [
            r["ms"]["auto"] / min(r["ms"][m] for m in methods if m != "auto") for r in rows
        ]
        return {
            "auto_over_best_dynamic_max": max(auto_vs_best),
            "auto_over_best_dynamic_median": statistics.median(auto_vs_best),
            "auto_over_loop_max": max(r["ms"]["auto"] / r["ms"]["loop"] for r in rows),
            "auto_over_static_median": statistics.median(
                r["ms"]["auto"] / r["ms"]["static"] for r in rows
            ),
        }

    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "conv": conv_rows,
        "linear": lin_rows,
        "conv_summary": summary(conv_rows, DYNAMIC_CONV2D_METHODS),
        "linear_summary": summary(lin_rows, DYNAMIC_LINEAR_METHODS),
    }
    print("\nconv summary:", json.dumps(result["conv_summary"], indent=1))
    print("linear summary:", json.dumps(result["linear_summary"], indent=1))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
