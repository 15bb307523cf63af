"""The ``probnets`` command: ``probnets train NAME [options]`` and friends.

Every training command shares the flags of :func:`add_common_arguments` and adds its own (see
:mod:`probnets.tasks`). ``probnets train --help`` lists the models; ``probnets train NAME -h``
lists a model's options.
"""

import argparse
import dataclasses
import datetime
import json
import math
import os
import sys
import warnings

import pyro
import torch

import probnets.tasks  # noqa: F401  (registers the tasks)
from probnets.tasks import variance as variance_command
from probnets.tasks.base import tasks
from probnets.train import (
    Evaluation,
    LossObjective,
    NonFiniteLossError,
    StepMetrics,
    SVIObjective,
    TrainConfig,
    Trainer,
    distributed,
    parse_schedule,
    resolve_device,
)
from probnets.train.precision import check_precision_supported

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _int_at_least(minimum, description):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _float_above(minimum, strict, description):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (value > minimum if strict else value >= minimum) or value == math.inf:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    return parse


_positive_float = _float_above(0.0, True, "a positive number")
_non_negative_float = _float_above(0.0, False, "a number >= 0")


def _clip_norm(text):
    """A positive gradient-norm bound, or ``none`` to turn a task's default clipping off."""
    return None if text.lower() == "none" else _positive_float(text)


def _device(text):
    try:
        resolve_device(text)
    except ValueError as error:  # "device ...": name the flag
        raise argparse.ArgumentTypeError(f"--{error}") from None
    return text


def _schedule(text):
    try:
        parse_schedule(text, 1)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_common_arguments(parser, task):
    group = parser.add_argument_group("training (common to every model)")
    group.add_argument("--steps", type=_positive_int, default=task.default_steps,
                       help=f"total optimisation steps (default {task.default_steps})")
    group.add_argument("--batch-size", type=_positive_int, default=task.default_batch_size,
                       help=f"examples per step (default {task.default_batch_size})")
    group.add_argument("--lr", type=_positive_float, default=task.default_lr,
                       help=f"learning rate (default {task.default_lr})")
    group.add_argument("--cv-lr", type=_positive_float, default=None,
                       help="learning rate of baselines and control variates (parameters named "
                            "cv.* or *baseline*); default: --lr")
    group.add_argument("--weight-decay", type=_non_negative_float, default=0.0,
                       help="decoupled weight decay (as AdamW's) of the weight matrices; biases "
                            "and norm gains are not decayed (default 0)")
    group.add_argument("--clip-norm", type=_clip_norm, default=task.default_clip_norm,
                       help="clip each parameter group's gradient norm to this value, or none "
                            f"(default {task.default_clip_norm or 'none'})")
    group.add_argument("--lr-schedule", type=_schedule, default="constant",
                       help="constant | cosine | exp:FINAL_FACTOR | warmup:N[,SCHEDULE]")
    group.add_argument("--device", type=_device, default="auto", help="auto | cpu | cuda[:N]")
    group.add_argument("--dtype", choices=sorted(_DTYPES), default="float32",
                       help="floating-point precision of model and data")
    group.add_argument("--precision", choices=["32", "bf16", "16-mixed"], default="32",
                       help="32 (default); bf16 autocast; or 16-mixed: float16 autocast "
                            "with dynamic loss scaling")
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the objective of deterministic models (not SVI "
                            "models: Pyro's effect handlers break the graph at every site)")
    group.add_argument("--threads", type=_positive_int, default=None,
                       help="torch intra-op threads (default: torch's choice)")
    group.add_argument("--seed", type=_non_negative_int, default=0, help="random seed")
    group.add_argument("--out", default=None,
                       help="run directory for checkpoints (*.pt), metrics.csv and figures "
                            "(default runs/NAME-TIMESTAMP)")
    group.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint")
    group.add_argument("--checkpoint-every", type=_positive_int, default=500,
                       help="steps between checkpoints (default 500; always one at the end)")
    group.add_argument("--eval-every", type=_positive_int, default=None,
                       help="steps between held-out evaluations (default: steps / 10)")
    group.add_argument("--log-every", type=_positive_int, default=10,
                       help="steps between rows of metrics.csv (default 10)")
    group.add_argument("--max-bad-steps", type=_positive_int, default=10,
                       help="consecutive non-finite steps tolerated before stopping")
    group.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    group.add_argument("--tensorboard", action="store_true",
                       help="also log to OUT/tensorboard (needs the tensorboard package)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="probnets", description="Probabilistic neural networks in Pyro.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    train = commands.add_parser("train", help="train a model",
                                description="Train a model with SVI.")
    models = train.add_subparsers(dest="task", metavar="MODEL")
    models.required = True
    for name, task in sorted(tasks().items()):
        sub = models.add_parser(name, help=task.help, description=task.help)
        task.add_arguments(sub)
        add_common_arguments(sub, task)
    variance_command.add_arguments(commands)
    evaluate = commands.add_parser("eval", help="evaluate a trained model",
                                   description="Evaluate a checkpoint.")
    evaluators = evaluate.add_subparsers(dest="task", metavar="MODEL")
    evaluators.required = True
    for name, task in sorted(tasks().items()):
        if not task.supports_eval:
            continue
        sub = evaluators.add_parser(name, help=task.help, description=task.help)
        sub.add_argument("--checkpoint", required=True, help="a checkpoint (*.pt) of this model")
        sub.add_argument("--device", type=_device, default="auto", help="auto | cpu | cuda[:N]")
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        task.add_eval_arguments(sub)
    return parser


def evaluate(args):
    task = tasks()[args.task]
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"probnets: error: --checkpoint: no file at {args.checkpoint}")
    results = task.evaluate(args)
    if args.json:
        print(json.dumps(results, default=float))
    else:
        for key, value in results.items():
            print(f"{key}: {value}")
    return 0


def _run_directory(args, create=True):
    if args.out is None:
        if args.resume:
            raise SystemExit("probnets: error: --resume needs --out DIR (the run to continue)")
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = os.path.join("runs", f"{args.task}-{stamp}")
        if distributed.world_size() > 1:  # every rank uses rank 0's directory
            args.out = distributed.broadcast_object(args.out)
    checkpoint = os.path.join(args.out, "last.pt")
    if args.resume and not os.path.exists(checkpoint):
        raise SystemExit(f"probnets: error: --resume: no checkpoint at {checkpoint}")
    if not args.resume and os.path.exists(checkpoint):
        raise SystemExit(
            f"probnets: error: {args.out} already holds a run; pass --resume to continue it or "
            "choose another --out")
    if create:
        os.makedirs(args.out, exist_ok=True)


def _with_flag(error):
    """A TrainConfig error (``"lr must be ..."``) with the flag that sets the field."""
    field = str(error).split(" ", 1)[0]
    if field in {f.name for f in dataclasses.fields(TrainConfig)}:
        flag = "out" if field == "out_dir" else field.replace("_", "-")
        return f"--{flag}: {error}"
    return str(error)


def _trainer(run, config):
    """The Trainer of a task's run: its objective, data and callbacks under ``config``."""
    objective = (SVIObjective(run.model_fn, run.guide_fn, run.loss)
                 if run.model_fn is not None else LossObjective(run.objective_fn, run.module))
    callbacks = [StepMetrics(run.metrics_fn)] if run.metrics_fn is not None else []
    callbacks += [Evaluation(run.eval_fn)] if run.eval_fn is not None else []
    return Trainer(objective, run.data, config, callbacks=callbacks)


def train(args):
    task = tasks()[args.task]
    if distributed.launched_distributed():
        # torchrun: every rank builds the same model (same seed), then draws its own noise.
        device = distributed.init_distributed(args.device)
    else:
        device = resolve_device(args.device)
    main_process = distributed.is_main_process()
    try:
        check_precision_supported(args.precision, device)
    except ValueError as error:
        print(f"probnets: error: --precision: {error}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    _run_directory(args, create=main_process)
    args.dtype = _DTYPES[args.dtype]
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = task.build(args, device)
    if distributed.world_size() > 1:
        pyro.set_rng_seed(args.seed + 7919 * distributed.rank())
    for warning in caught if main_process else ():
        print(f"warning: {warning.message}", file=sys.stderr)
    if main_process:
        print(f"probnets train {task.name}: data={run.data_source or 'n/a'} device={device} "
              f"dtype={str(args.dtype).replace('torch.', '')} seed={args.seed} "
              f"ranks={distributed.world_size()} out={args.out}", file=sys.stderr)
    param_groups = dict(run.param_groups)
    if args.cv_lr is not None:
        param_groups.setdefault("cv.*", {})["lr"] = args.cv_lr
        param_groups.setdefault("*baseline*", {})["lr"] = args.cv_lr
    common = dict(
        steps=args.steps, lr=args.lr, param_groups=param_groups, clip_norm=args.clip_norm,
        weight_decay=args.weight_decay, lr_schedule=parse_schedule(args.lr_schedule, args.steps),
        schedules=run.schedules,
        eval_every=args.eval_every or max(args.steps // 10, 1), log_every=args.log_every,
        out_dir=args.out, checkpoint_every=args.checkpoint_every, resume=args.resume,
        max_bad_steps=args.max_bad_steps, progress=not args.no_progress,
        tensorboard=args.tensorboard,
        precision=args.precision,
        checkpoint_extra={"task": task.name, "config": run.config,
                          "data_source": run.data_source},
        description=f"train {task.name}")
    if args.compile and run.model_fn is not None:
        print(f"probnets: error: --compile: {task.name} is an SVI model; Pyro's effect "
              "handlers break the compiled graph at every sample and param site, so compiling "
              "its step does not help", file=sys.stderr)
        return 2
    if args.compile:
        run.objective_fn = torch.compile(run.objective_fn)
    try:
        trainer = _trainer(run, TrainConfig(**common))
    except (ValueError, ImportError) as error:
        print(f"probnets: error: {_with_flag(error)}", file=sys.stderr)
        return 2
    try:
        result = trainer.run()
    except NonFiniteLossError as error:
        print(f"probnets: error: {error} (--lr, --clip-norm)", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"probnets: interrupted; continue with --out {args.out} --resume", file=sys.stderr)
        return 130
    if not main_process:
        return 0
    task.finish(run, result, args)
    summary = {"task": task.name, "steps": result.step, "bad_steps": result.bad_steps,
               "data": run.data_source, "checkpoint": result.checkpoint,
               "final": result.history[-1] if result.history else {},
               "eval": result.eval_history[-1] if result.eval_history else {}}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=float)
    print(json.dumps({k: summary[k] for k in ("steps", "bad_steps", "eval")}, default=float))
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        return train(args)
    if args.command == "eval":
        return evaluate(args)
    if args.command == "variance":
        return variance_command.run(args)
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":
    raise SystemExit(main())
