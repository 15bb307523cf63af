"""Forward + backward time of HyperLSTM against nn.LSTM, an nn.LSTMCell loop and the
layer-norm LSTM, on one sequence batch (default T=100, B=32, H=256, input 256, one thread).

The first HyperLSTM is the default one, ``HyperLSTM(input, hidden)`` (hyper cell
``hidden // 8`` wide, embeddings of 4: 32/4 at H=256). ``--hyper N_h/N_z ...`` adds one
HyperLSTM per size (default: 128/16, the paper's absolute sizes and the default before).
``--compiled`` also times each with ``compile_steps=True`` (its chunks of steps through
``torch.compile``; the one-off compile, in the warm-up call, takes minutes and is reported
apart).

Methods are timed round-robin (interleaved) after one warm-up call each; each repeat's
time is divided by nn.LSTM's in the same round, and the median ratio and its spread over
the repeats (lowest and highest) are reported: the CPU is shared with other jobs, so read
those ratios, not absolute times. Two clocks: wall time, and the process's CPU time, which
on a loaded machine leaves out the time the process waited for a core (one thread, so CPU
time is the work done; other jobs still slow it through shared caches and memory).

    python examples/bench_hyperlstm.py [--threads 1] [--hyper 128/16 32/4] [--compiled] \
        [--repeats 15] [--out bench.json]
"""

import argparse
import json
import statistics
import time

import torch
from torch import nn

from probnets.nn import HyperLSTM, LayerNormLSTM


class LSTMCellLoop(nn.Module):
    """The obvious Python loop over ``nn.LSTMCell``: the usual cost of a custom cell."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)

    def forward(self, x):
        h = c = x.new_zeros(x.shape[1], self.cell.hidden_size)
        outputs = []
        for x_t in x.unbind(0):
            h, c = self.cell(x_t, (h, c))
            outputs.append(h)
        return torch.stack(outputs), (h, c)


def hyper_sizes(text):
    """``"128/16"`` -> ``(128, 16)``, for ``--hyper``."""
    try:
        width, embedding = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N_h/N_z such as 128/16, got {text!r}")
    if width < 1 or embedding < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return width, embedding


def build_models(args):
    """nn.LSTM, the LSTMCell loop, the layer-norm LSTM, the default HyperLSTM and one per
    ``--hyper`` size (each also compiled with ``--compiled``), by name."""
    torch.manual_seed(0)
    models = {
        "nn.LSTM": nn.LSTM(args.input, args.hidden),
        "LSTMCell loop": LSTMCellLoop(args.input, args.hidden),
        "LayerNormLSTM": LayerNormLSTM(args.input, args.hidden),
    }
    default = HyperLSTM(args.input, args.hidden)
    sizes = [(default.hyper_size, default.hyper_embedding_size)]
    sizes += [size for size in args.hyper if size != sizes[0]]
    for width, embedding in sizes:
        for compiled in (False, True) if args.compiled else (False,):
            name = f"HyperLSTM {width}/{embedding}"
            if (width, embedding) == sizes[0]:
                name += " (default)"
            if compiled:
                name += ", compiled steps"
            models[name] = HyperLSTM(
                args.input,
                args.hidden,
                hyper_size=width,
                hyper_embedding_size=embedding,
                compile_steps=compiled,
            )
    return models


def time_round_robin(models, x, repeats):
    """One warm-up call per model, then ``repeats`` rounds timing every model once each."""

    def forward_backward(model):
        wall, cpu = time.perf_counter(), time.process_time()
        output, _ = model(x)
        output.sum().backward()
        return time.perf_counter() - wall, time.process_time() - cpu

    warmup = {name: forward_backward(model)[0] for name, model in models.items()}
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(forward_backward(model))
    return warmup, times


def _ratios(times, clock):
    """Per model: its times on ``clock`` (0 wall, 1 CPU) in seconds, and the sorted ratios
    to nn.LSTM's time in the same round."""
    return {
        name: (
            [t[clock] for t in ts],
            sorted(t[clock] / ref[clock] for t, ref in zip(ts, times["nn.LSTM"])),
        )
        for name, ts in times.items()
    }


def report(models, warmup, times, args):
    """Print the table; returns its rows. Ratios are taken per round, against nn.LSTM's time
    in the same round, on each clock."""
    clocks = {"wall": _ratios(times, 0), "cpu": _ratios(times, 1)}
    print(
        f"T={args.steps} B={args.batch} H={args.hidden} input={args.input} "
        f"threads={torch.get_num_threads()} repeats={args.repeats}"
    )
    print(
        "fwd+bwd per sequence batch; ratio to nn.LSTM in the same round: median "
        "[lowest, highest] over the repeats, on wall and on CPU time (shared CPU: trust "
        "ratios)"
    )
    print(
        f"{'model':40s}{'params':>9s}{'wall ms':>9s}{'x nn.LSTM':>11s}{'spread':>15s}"
        f"{'cpu ms':>9s}{'x nn.LSTM':>11s}{'spread':>15s}{'first call s':>14s}"
    )
    rows = []
    for name, model in models.items():
        row = {
            "model": name,
            "params": sum(p.numel() for p in model.parameters()),
            "first_call_s": warmup[name],
        }
        line = f"{name:40s}{row['params']:9d}"
        for clock, table in clocks.items():
            seconds, ratios = table[name]
            prefix = "" if clock == "wall" else "cpu_"
            row.update(
                {
                    f"{prefix}ms": 1e3 * statistics.median(seconds),
                    f"{prefix}ratio": statistics.median(ratios),
                    f"{prefix}ratio_low": ratios[0],
                    f"{prefix}ratio_high": ratios[-1],
                }
            )
            spread = f"[{ratios[0]:.2f}, {ratios[-1]:.2f}]"
            line += f"{row[prefix + 'ms']:9.1f}{row[prefix + 'ratio']:11.2f}{spread:>15s}"
        print(f"{line}{warmup[name]:14.2f}")
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--input", type=int, default=256)
    parser.add_argument(
        "--hyper",
        type=hyper_sizes,
        nargs="*",
        default=[(128, 16)],
        metavar="N_h/N_z",
        help="hyper cell width / embedding size, one "
        "HyperLSTM per pair besides the default one (default: 128/16)",
    )
    parser.add_argument(
        "--compiled", action="store_true", help="also time each HyperLSTM with compile_steps=True"
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: with other jobs on the cores, OpenMP's "
        "multi-thread barriers make timings several times slower and erratic)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    models = build_models(args)
    x = torch.randn(args.steps, args.batch, args.input, requires_grad=True)
    warmup, times = time_round_robin(models, x, args.repeats)
    rows = report(models, warmup, times, args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"config": vars(args), "rows": rows}, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
