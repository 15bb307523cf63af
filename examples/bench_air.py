"""Seconds per SVI step and peak memory of AIR at the reference configuration.

Configuration (Pyro's examples/air tutorial run): batch 64, 50x50 canvases, 3 steps, LSTM 256,
window 28, z_what 50, MLPs of 200 units, baseline LSTM. One "step" is ``loss_and_grads`` plus an
Adam update, as in ``pyro.infer.SVI.step``.

Every probnets row steps the fused Adam that :class:`probnets.train.Trainer` uses where
PyTorch has it; the reference row steps ``torch.optim.Adam`` with its defaults, as
``pyro.optim.Adam`` does in the reference.

Compared in the same process, interleaved round by round (the CPU is shared, so absolute times
are noisy; the ratios are the result):

- ``probnets``: :class:`probnets.models.air.AIR` with
  ``ScoreFunction_ELBO(cache_dependencies=True)`` (the default of ``probnets train air``: the
  dependency structure found by provenance on the first step is reused afterwards);
- ``probnets-provenance``: the same, tracking provenance at every step;
- ``probnets+tracegraph``: the same model and guide under Pyro's ``TraceGraph_ELBO``;
- ``reference-recurrence+tracegraph``: Pyro's ``TraceGraph_ELBO`` with the guide recurrence the
  reference uses: ``nn.LSTMCell`` on ``[image, latents]`` at every step (the image part of the
  gates recomputed each step, as in ``examples/air``). Same parameters, same model.

- ``floor-trace-elbo``: the same model under Pyro's ``Trace_ELBO``, which ignores the score
  terms (biased for ``z_pres``): the cost of the model, guide and backward pass alone.

Peak memory is the high-water mark of the resident set (``VmHWM`` in ``/proc/self/status``,
else ``ru_maxrss``) of a fresh child process running a few steps of one configuration.

    python examples/bench_air.py --steps 10 --json bench_air.json
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import pyro
import torch

import probnets.models.air as air_module
from probnets.infer import ScoreFunction_ELBO
from probnets.models.air import AIR


class ReferenceRecurrence:
    """The reference's guide recurrence: ``LSTMCell([x, latents], (h, c))`` every step."""

    def __init__(self, cell, num_pixels):
        self.cell = cell

    def image_gates(self, image_flat):
        return image_flat

    def step(self, image, latents, h, c):
        return self.cell(torch.cat([image, latents], dim=-1), (h, c))


CONFIGS = (
    "probnets",
    "probnets-provenance",
    "probnets+tracegraph",
    "reference-recurrence+tracegraph",
    "floor-trace-elbo",
)
ELBOS = {
    "probnets": lambda: ScoreFunction_ELBO(cache_dependencies=True),
    "probnets-provenance": ScoreFunction_ELBO,
    "floor-trace-elbo": pyro.infer.Trace_ELBO,
}


def peak_rss_mb():
    # ru_maxrss survives fork+exec on Linux (it would report the parent's size); VmHWM is
    # per address space
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(name, batch_size, seed=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    air = AIR()
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 50, 50, generator=generator) * 0.5
    elbo = ELBOS.get(name, pyro.infer.TraceGraph_ELBO)()
    recurrence = ReferenceRecurrence if name.startswith("reference") else air_module._Recurrence
    # probnets' Trainer picks the fused Adam where PyTorch has one; the reference steps
    # pyro.optim.Adam, i.e. torch.optim.Adam's defaults (a per-tensor loop on a CPU)
    fused = {} if name.startswith("reference") else {"fused": True}
    optimizer = torch.optim.Adam(air.parameters(), lr=1e-4, **fused)

    def step():
        saved = air_module._Recurrence
        air_module._Recurrence = recurrence
        try:
            loss = elbo.loss_and_grads(air.model, air.guide, images)
        finally:
            air_module._Recurrence = saved
        optimizer.step()
        optimizer.zero_grad()
        return loss

    return step


def time_configs(names, steps, warmup, batch_size):
    runners = {name: setup(name, batch_size) for name in names}
    for run in runners.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in names}
    for _ in range(steps):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def child_peak_memory(name, batch_size, threads):
    code = (
        f"import sys; sys.argv=['bench_air.py', '--memory-child', {name!r}, "
        f"'--batch-size', '{batch_size}', '--threads', '{threads}']; "
        f"import runpy; runpy.run_path({__file__!r}, run_name='__main__')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS children")
    parser.add_argument(
        "--profile", action="store_true", help="print the top cProfile entries of the probnets step"
    )
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.memory_child:
        step = setup(args.memory_child, args.batch_size)
        for _ in range(3):
            step()
        print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
        return 0

    times = time_configs(args.configs, args.steps, args.warmup, args.batch_size)
    medians = {name: statistics.median(t) for name, t in times.items()}
    reference = medians.get("reference-recurrence+tracegraph")
    rows = []
    for name in args.configs:
        row = {
            "config": name,
            "median_s_per_step": medians[name],
            "min_s_per_step": min(times[name]),
            "steps": len(times[name]),
        }
        if reference:
            row["ratio_to_reference"] = medians[name] / reference
        if not args.no_memory:
            row["peak_rss_mb"] = child_peak_memory(name, args.batch_size, args.threads)
        rows.append(row)

    print(
        f"AIR step, batch {args.batch_size}, LSTM 256, window 28, 3 steps, "
        f"{args.threads} thread(s); interleaved, shared CPU: compare ratios, not seconds"
    )
    header = (
        f"{'config':34s} {'median s/step':>13s} {'min s/step':>10s} {'ratio':>7s} {'peak MB':>8s}"
    )
    print(header)
    for row in rows:
        print(
            f"{row['config']:34s} {row['median_s_per_step']:13.3f} {row['min_s_per_step']:10.3f} "
            f"{row.get('ratio_to_reference', float('nan')):7.2f} "
            f"{row.get('peak_rss_mb', float('nan')):8.0f}"
        )
    if args.profile:
        import cProfile
        import pstats

        step = setup("probnets", args.batch_size)
        step()
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(3):
            step()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"batch_size": args.batch_size, "threads": args.threads, "rows": rows}, f, indent=2
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
