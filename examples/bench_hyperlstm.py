"""Forward + backward time of HyperLSTM against nn.LSTM, an nn.LSTMCell loop and the
layer-norm LSTM, on one sequence batch (default T=100, B=32, H=256, input 256). The
HyperLSTM is timed for each hyper-cell size ``N_h/N_z`` given (default: 128/16, the paper's
absolute sizes, half the main width here; and 32/4, the paper's proportion of 1000 main
units to 128 hyper units, and about the proportion chosen on validation for the character
model in ``guides/hypernets.md``), each twice: eager, and with ``compile_steps=True`` (its
chunks of steps through ``torch.compile``; the one-off compile time, in the warm-up call, is
reported apart).

Methods are timed round-robin and the median over repeats reported; the CPU is shared with
other jobs, so read the ratios to nn.LSTM measured in the same run, not absolute times.

    python examples/bench_hyperlstm.py [--threads 2] [--hyper 128/16 32/4] [--out bench.json]
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--input", type=int, default=256)
    parser.add_argument("--hyper", type=hyper_sizes, nargs="+", default=[(128, 16), (32, 4)],
                        metavar="N_h/N_z", help="hyper cell width / embedding size, one "
                        "HyperLSTM per pair")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: with other jobs on the cores, OpenMP's "
                             "multi-thread barriers make timings several times slower and erratic)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    models = {
        "nn.LSTM": nn.LSTM(args.input, args.hidden),
        "LSTMCell loop": LSTMCellLoop(args.input, args.hidden),
        "LayerNormLSTM": LayerNormLSTM(args.input, args.hidden),
    }
    for width, embedding in args.hyper:
        for compiled in (False, True):
            name = f"HyperLSTM {width}/{embedding}" + (", compiled steps" if compiled else "")
            models[name] = HyperLSTM(args.input, args.hidden, hyper_size=width,
                                     hyper_embedding_size=embedding, compile_steps=compiled)
    x = torch.randn(args.steps, args.batch, args.input, requires_grad=True)

    def forward_backward(model):
        t0 = time.perf_counter()
        output, _ = model(x)
        output.sum().backward()
        return time.perf_counter() - t0

    warmup = {name: forward_backward(model) for name, model in models.items()}
    times = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name].append(forward_backward(model))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    ref = med["nn.LSTM"]
    print(f"T={args.steps} B={args.batch} H={args.hidden} input={args.input} "
          f"threads={torch.get_num_threads()}")
    print("fwd+bwd per sequence batch, median of round-robin repeats (shared CPU: trust ratios)")
    print(f"{'model':34s}{'params':>10s}{'ms':>10s}{'x nn.LSTM':>11s}{'first call s':>14s}")
    rows = []
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:34s}{params:10d}{1e3 * med[name]:10.1f}{med[name] / ref:11.2f}"
              f"{warmup[name]:14.2f}")
        rows.append({"model": name, "params": params, "ms": 1e3 * med[name],
                     "ratio": med[name] / ref, "first_call_s": warmup[name]})
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"config": vars(args), "rows": rows}, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
