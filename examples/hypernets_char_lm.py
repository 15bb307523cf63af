"""Character language models on an offline corpus (``--corpus pydoc``, the default, or
``docstrings``, see :mod:`probnets.data.chars`): HyperLSTM vs a layer-norm LSTM vs nn.LSTM with
(nearly) the same parameter count, trained the same number of steps.

    python examples/hypernets_char_lm.py --steps 1500 --out runs/char_lm.json \
        --figures guides/figures

Prints held-out bits per character, writes JSON, the validation curves and the
"how much the weights changed" figure of Ha et al. (2016) for the trained HyperLSTM.

With ``--checkpoint-dir DIR`` each model's training is checkpointed to ``DIR/<model>.pt`` at
every evaluation (weights, Adam's moments, the data position, the recurrent state carried by
truncated back-propagation and the random states). Running the same command again resumes
each model where its checkpoint left it, continuing exactly as an uninterrupted run; a model
whose checkpoint is at the last step is only evaluated again.
"""

import argparse
import itertools
import json
import os
import time

import torch

from probnets.data.chars import CORPORA, TBPTTBatches, load_corpus
from probnets.nn import (
    CharLanguageModel,
    TBPTTObjective,
    evaluate_bpc,
    matched_hidden_size,
    state_tensors,
    weight_decay_groups,
)
from probnets.train import parse_schedule
from probnets.train.checkpoint import (
    FORMAT_VERSION,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)

# Arguments that change what training computes: a checkpoint resumes only if they agree.
RESUME_ARGS = (
    "corpus",
    "steps",
    "seq_len",
    "batch_size",
    "embedding",
    "hidden",
    "hyper_size",
    "hyper_embedding",
    "lr",
    "lr_schedule",
    "dropout",
    "recurrent_dropout",
    "hyper_recurrent_dropout",
    "weight_decay",
    "eval_every",
    "valid_chars",
    "seed",
)
# Of those, the ones added after checkpoints were first written, with the value that older
# checkpoints were trained with.
ADDED_ARGS = {"hyper_recurrent_dropout": 0.0, "weight_decay": 0.0}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def make_optimizer(model, lr, weight_decay):
    """Adam, or with ``weight_decay > 0`` AdamW (Loshchilov & Hutter, 2019): each step shrinks
    the weight matrices by ``lr * weight_decay``, apart from the gradient step. Biases and
    layer-norm gains and shifts (the per-gate ones are (4, H) matrices) are not decayed:
    shrinking them changes the function without limiting its capacity
    (:mod:`probnets.nn.weight_decay`)."""
    if weight_decay == 0:
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.AdamW(weight_decay_groups(model, weight_decay), lr=lr)


def resume(path, label, args, model, optimizer, batches, objective):
    """Load ``path`` into the training objects; returns the curve, steps done and seconds."""
    saved = load_checkpoint(path)
    saved_args = {**ADDED_ARGS, **saved["args"]}
    changed = [
        f"--{key.replace('_', '-')} {saved_args.get(key)!r} -> {getattr(args, key)!r}"
        for key in RESUME_ARGS
        if saved_args.get(key) != getattr(args, key)
    ]
    if saved["model_name"] != label:
        raise ValueError(f"checkpoint {path} holds a {saved['model_name']}, not a {label}")
    if changed:
        raise ValueError(
            f"checkpoint {path} was written with other arguments "
            f"({', '.join(changed)}); remove it or use another --checkpoint-dir"
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    batches.load_state_dict(saved["batches"])
    objective.state = None if saved["rnn_state"] is None else tuple(saved["rnn_state"])
    set_rng_state(saved["rng"])
    print(f"{label:15s} resumed from {path} at step {saved['step']}", flush=True)
    return [tuple(point) for point in saved["curve"]], saved["step"], saved["seconds"]


def train(model, corpus, args, label, checkpoint=None):
    torch.manual_seed(args.seed)
    batches = TBPTTBatches(corpus.train, args.seq_len, args.batch_size)
    objective = TBPTTObjective(model, batches)
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    lr_factor = parse_schedule(args.lr_schedule, args.steps)
    curve, done, seconds = [], 0, 0.0
    if checkpoint is not None and os.path.exists(checkpoint):
        curve, done, seconds = resume(checkpoint, label, args, model, optimizer, batches, objective)
    start = time.perf_counter() - seconds
    for step in range(done + 1, args.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * lr_factor(step - 1)
        loss = objective(*next(batches))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            bpc = evaluate_bpc(model, corpus.valid[: args.valid_chars], args.seq_len, 8)
            curve.append((step, bpc))
            print(
                f"{label:15s} step {step:5d} train {loss.item() / 0.6931:.3f} "
                f"valid {bpc:.3f} bpc ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
            if checkpoint is not None:
                carried = objective.state
                save_checkpoint(
                    checkpoint,
                    {
                        "format": FORMAT_VERSION,
                        "model_name": label,
                        "args": vars(args),
                        "step": step,
                        "curve": curve,
                        "seconds": time.perf_counter() - start,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "batches": batches.state_dict(),
                        "rnn_state": None if carried is None else list(state_tensors(carried)),
                        "rng": get_rng_state(),
                    },
                )
    return curve, time.perf_counter() - start


def weight_change_figure(model, corpus, path, n_chars=120):
    from probnets.viz.recurrent import plot_weight_change

    # A stretch of prose (the corpus also has tables and code), starting at a sentence.
    text = "".join(corpus.vocab[i] for i in corpus.test.tolist())
    start = text.index(". The ", 2000) + 2
    ids = corpus.test[start : start + n_chars]
    model.eval()
    with torch.no_grad():
        x = model.embedding(ids.unsqueeze(1))
        _, _, modulation = model.rnn(x, return_modulation=True)
    # sequence 0, layer 0: (T, 4 gates)
    plot_weight_change(
        modulation[:, 0, 0, :], [corpus.vocab[i] for i in ids.tolist()], path, per_row=n_chars // 2
    )


#: How each model is named in the figures.
MODEL_NAMES = {"hyperlstm": "HyperLSTM", "layernorm_lstm": "layer-norm LSTM", "lstm": "nn.LSTM"}


def validation_curve_figure(curves):
    """Validation bits per character against the training step, one curve per model, with
    the legend outside the axes so that it covers no curve whatever their values, and hollow
    markers of different shapes so that models that end level both stay visible."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    for (rnn, curve), marker in zip(curves.items(), itertools.cycle("os^Dv")):
        ax.plot(*zip(*curve), marker=marker, fillstyle="none", label=MODEL_NAMES.get(rnn, rnn))
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss (bits per character)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--embedding", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--hyper-size", type=int, default=64)
    parser.add_argument("--hyper-embedding", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--lr-schedule",
        default="constant",
        help="factor on --lr over the run, as `probnets train`'s: constant | "
        "cosine | exp:FINAL_FACTOR | warmup:N[,SCHEDULE]",
    )
    parser.add_argument(
        "--dropout", type=float, default=0.0, help="dropout on embeddings and outputs, every model"
    )
    parser.add_argument(
        "--recurrent-dropout",
        type=float,
        default=0.0,
        help="dropout on the candidate (HyperLSTM and layer-norm LSTM; nn.LSTM has none)",
    )
    parser.add_argument(
        "--hyper-recurrent-dropout",
        type=float,
        default=0.0,
        help="dropout on the HyperLSTM's hyper-cell candidate",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        help="decoupled weight decay on the weight matrices (AdamW), every model; "
        "0 (the default) trains with Adam",
    )
    parser.add_argument(
        "--compile-steps",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="HyperLSTM(compile_steps=True): its per-step kernels fused by "
        "torch.compile after a one-off compile of about a minute (default "
        "on; --no-compile-steps runs eagerly)",
    )
    parser.add_argument(
        "--corpus",
        choices=CORPORA,
        default="pydoc",
        help="pydoc_data.topics (418k training characters) or the standard "
        "library's docstrings (1.5M)",
    )
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--valid-chars", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="hyperlstm,layernorm_lstm,lstm")
    parser.add_argument("--out", default=None)
    parser.add_argument("--save-hyperlstm", default=None, help="path for the trained state_dict")
    parser.add_argument("--figures", default=None, help="directory for the PNG figures")
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        help="checkpoint each model to DIR/<model>.pt at every evaluation and "
        "resume from there when the command is run again",
    )
    args = parser.parse_args(argv)
    try:
        parse_schedule(args.lr_schedule, args.steps)
    except ValueError as error:
        parser.error(str(error))
    if args.weight_decay < 0:
        parser.error(f"--weight-decay must be >= 0, got {args.weight_decay}")
    torch.set_num_threads(args.threads)

    corpus = load_corpus(args.corpus)
    vocab = len(corpus.vocab)
    print(
        f"corpus {corpus.source}: {len(corpus.train)} train / {len(corpus.valid)} valid / "
        f"{len(corpus.test)} test chars, vocab {vocab}"
    )
    torch.manual_seed(args.seed)
    hyper = CharLanguageModel(
        vocab,
        "hyperlstm",
        args.embedding,
        args.hidden,
        dropout=args.dropout,
        hyper_size=args.hyper_size,
        hyper_embedding_size=args.hyper_embedding,
        recurrent_dropout=args.recurrent_dropout,
        hyper_recurrent_dropout=args.hyper_recurrent_dropout,
        compile_steps=args.compile_steps,
    )
    target = n_params(hyper)
    rows, curves, models = [], {}, {}
    for rnn in args.models.split(","):
        torch.manual_seed(args.seed)
        if rnn == "hyperlstm":
            model, hidden = hyper, args.hidden
        else:
            hidden = matched_hidden_size(rnn, vocab, target, args.embedding)
            extra = {"recurrent_dropout": args.recurrent_dropout} if rnn == "layernorm_lstm" else {}
            model = CharLanguageModel(
                vocab, rnn, args.embedding, hidden, dropout=args.dropout, **extra
            )
        checkpoint = None
        if args.checkpoint_dir:
            checkpoint = os.path.join(args.checkpoint_dir, f"{rnn}.pt")
        curve, seconds = train(model, corpus, args, rnn, checkpoint)
        test_bpc = evaluate_bpc(model, corpus.test, args.seq_len, 8)
        rows.append(
            {
                "model": rnn,
                "hidden": hidden,
                "params": n_params(model),
                "valid_bpc": curve[-1][1],
                "test_bpc": test_bpc,
                "train_seconds": seconds,
            }
        )
        curves[rnn], models[rnn] = curve, model
    print(
        f"\nsteps={args.steps} T={args.seq_len} B={args.batch_size} lr={args.lr} "
        f"({args.lr_schedule}) weight decay {args.weight_decay} "
        f"(valid on the first {args.valid_chars} chars)"
    )
    print(
        f"{'model':16s}{'hidden':>7s}{'params':>9s}{'valid bpc':>11s}"
        f"{'test bpc':>10s}{'s/step':>8s}"
    )
    for r in rows:
        print(
            f"{r['model']:16s}{r['hidden']:7d}{r['params']:9d}{r['valid_bpc']:11.3f}"
            f"{r['test_bpc']:10.3f}{r['train_seconds'] / args.steps:8.2f}"
        )
    if args.save_hyperlstm and "hyperlstm" in models:
        torch.save(models["hyperlstm"].state_dict(), args.save_hyperlstm)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "curves": curves}, f, indent=1)
    if args.figures:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        os.makedirs(args.figures, exist_ok=True)
        fig = validation_curve_figure(curves)
        fig.savefig(
            os.path.join(args.figures, "hypernets_char_lm.png"), dpi=120, bbox_inches="tight"
        )
        plt.close(fig)
        if "hyperlstm" in models:
            weight_change_figure(
                models["hyperlstm"],
                corpus,
                os.path.join(args.figures, "hypernets_weight_change.png"),
            )


if __name__ == "__main__":
    main()
