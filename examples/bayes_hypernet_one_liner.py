"""The default BayesianHypernet on 1-D regression with a gap, exactly as a user writes it.

For each seed: ``x, y = gap_regression(120, seed=seed)`` (``x`` on [-3, -1] ∪ [1, 3], no
data in the gap), then

    BayesianHypernet([1, 64, 64, 1], task="regression").fit(x, y, num_steps=3000)

with every other argument at its default, and the predictive std in the gap (|x| ≤ 0.5) and
far outside the data (4 ≤ |x| ≤ 6) relative to the std on the data, and the rmse of the
predictive mean against the noiseless truth on the data. ``--set name=value`` overrides a
constructor argument (repeatable; values are Python literals), so the compressed models and the
old default are measured the same way. ``--figure PATH`` also draws the first seed's
predictive bands (mean, ±2 std total and epistemic, data, truth) on [-6, 6]:

    python examples/bayes_hypernet_one_liner.py --seeds 0 1 2
    python examples/bayes_hypernet_one_liner.py --set generator='"linear"'   # the old default
    python examples/bayes_hypernet_one_liner.py --seeds 0 \
        --figure guides/figures/bayes_hypernet_gap_bnn.png
"""

import argparse
import ast
import json
import time

import pyro
import torch

from probnets.experiments.bayes_hypernet import gap_metrics
from probnets.models.bayes_hypernet import BayesianHypernet
from probnets.models.bayes_hypernet.toy import gap_function, gap_regression
from probnets.viz.uncertainty import predictive_bands


def one_liner(widths, num_steps, overrides):
    """The call as the user writes it (printed above the table and used as a figure title)."""
    return (
        f"BayesianHypernet({list(widths)}, task='regression'"
        + "".join(f", {k}={v!r}" for k, v in overrides.items())
        + f").fit(x, y, num_steps={num_steps})"
    )


def run(seed, widths=(1, 64, 64, 1), num_steps=3000, figure=None, **overrides):
    """Fit the one-liner on seed ``seed`` and measure it; with ``figure``, also draw its
    predictive bands there (after the measurements, so they are the same with or without)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    x, y = gap_regression(120, seed=seed)
    model = BayesianHypernet(list(widths), task="regression", **overrides)
    start = time.perf_counter()
    model.fit(x, y, num_steps=num_steps)
    row = {"seed": seed, **gap_metrics(model, 200), "seconds": time.perf_counter() - start}
    if figure:
        # The grid and draws of examples/bayes_hypernet_gap.py.
        grid = torch.linspace(-6, 6, 241, dtype=x.dtype).unsqueeze(-1)
        prediction = model.predict(grid, 200)
        predictive_bands(
            grid[:, 0],
            prediction.mean,
            prediction.std,
            figure,
            epistemic_std=prediction.epistemic_std,
            x_train=x[:, 0],
            y_train=y,
            truth=gap_function(grid[:, 0]),
            title=f"{one_liner(widths, num_steps, overrides)}, seed {seed}",
            xlabel="x (unitless)",
            ylabel="y (unitless)",
        )
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a constructor argument, e.g. --set generator='\"linear\"'",
    )
    parser.add_argument("--json", default=None, help="write the rows here")
    parser.add_argument(
        "--figure", default=None, metavar="PATH", help="draw the first seed's predictive bands"
    )
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        overrides[name] = ast.literal_eval(value)
    rows = []
    widths = (1, args.width, args.width, 1)
    print(one_liner(widths, args.steps, overrides))
    print(
        f"{'seed':>4s} {'rmse':>6s} {'epistemic data/gap/outside':>28s} {'gap ×':>6s} "
        f"{'out ×':>6s} {'s':>5s}"
    )
    for i, seed in enumerate(args.seeds):
        figure = args.figure if i == 0 else None
        row = run(seed, widths, args.steps, figure, **overrides)
        rows.append(row)
        print(
            f"{seed:4d} {row['rmse_data']:6.3f} {row['epistemic_data']:8.3f} / "
            f"{row['epistemic_gap']:6.3f} / {row['epistemic_outside']:6.3f} "
            f"{row['std_ratio_gap']:6.2f} {row['std_ratio_outside']:6.2f} {row['seconds']:5.0f}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"overrides": overrides, "steps": args.steps, "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
