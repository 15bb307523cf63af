"""``probnets train sbn``: a sigmoid belief net on dynamically binarized MNIST digits.

The REBAR / RELAX benchmark model: 200 Bernoulli units per stochastic layer, linear layers,
batch 24. ``--estimator`` picks any estimator of :func:`probnets.infer.standard_estimators`
(the model itself is unchanged). Evaluation reports the held-out ELBO during training and an
importance-sampled log-likelihood at the end.
"""

import os

from probnets.data import load_mnist
from probnets.infer import standard_estimators
from probnets.models.sbn import SigmoidBeliefNet, binarize
from probnets.tasks.base import Task, TaskRun, register
from probnets.train import BatchSampler
from probnets.viz.images import curves


def _layers(text):
    try:
        hidden = tuple(int(h) for h in text.split(","))
    except ValueError:
        hidden = ()
    if not hidden or any(h < 1 for h in hidden):
        raise ValueError(f"--layers must be comma-separated positive integers, got {text!r}")
    return (784,) + hidden


def _dynamic_binarization(batch, generator):
    (intensities,) = batch
    return (binarize(intensities, generator=generator),)


@register
class SBNTask(Task):
    name = "sbn"
    help = "sigmoid belief net (Bernoulli layers) on binarized MNIST, under any estimator"
    default_steps = 5000
    default_batch_size = 24
    default_lr = 3e-4

    def add_arguments(self, parser):
        parser.add_argument("--estimator", choices=list(standard_estimators()), default="nvil",
                            help="gradient estimator for the Bernoulli layers (default nvil)")
        parser.add_argument("--layers", default="200",
                            help="stochastic layer widths, e.g. 200 or 200,200 (default 200)")
        parser.add_argument("--temperature", type=float, default=0.5,
                            help="temperature of the relaxed estimator (default 0.5)")
        parser.add_argument("--num-particles", type=int, default=2,
                            help="samples per example for loo and vimco (default 2)")
        parser.add_argument("--num-test", type=int, default=1000,
                            help="held-out digits for evaluation (default 1000)")
        parser.add_argument("--ll-samples", type=int, default=100,
                            help="importance samples of the final log-likelihood (default 100)")

    def build(self, args, device):
        layers = _layers(args.layers)
        train, test = load_mnist("train"), load_mnist("test")
        images = train.images.reshape(len(train.images), -1).to(dtype=args.dtype)
        held_out = binarize(test.images[:args.num_test].reshape(-1, 784).to(args.dtype),
                            seed=args.seed + 1).to(device)
        net = SigmoidBeliefNet(layers, data_mean=images.mean(0)).to(device=device,
                                                                      dtype=args.dtype)
        elbo = standard_estimators([args.estimator], temperature=args.temperature,
                                   num_particles=args.num_particles)[args.estimator]()

        def evaluate(trainer):
            return {"test_elbo": float(net.elbo(held_out).mean())}

        return TaskRun(
            data=BatchSampler(images, batch_size=args.batch_size, seed=args.seed, device=device,
                              transform=_dynamic_binarization),
            model_fn=net.model, guide_fn=net.guide, loss=elbo, module=net,
            metrics_fn=lambda trainer: {"elbo": -trainer.last_loss / args.batch_size},
            eval_fn=evaluate, data_source=train.source,
            config={"layers": list(layers), "estimator": args.estimator},
            extras={"held_out": held_out})

    def finish(self, run, result, args):
        log_likelihood = run.module.log_likelihood(run.extras["held_out"],
                                                   num_samples=args.ll_samples)
        result.eval_history.append({"step": result.step,
                                    f"test_log_likelihood_is{args.ll_samples}":
                                        float(log_likelihood.mean())})
        print(f"held-out importance-sampled log-likelihood ({args.ll_samples} samples): "
              f"{float(log_likelihood.mean()):.2f} nats per image")
        if result.eval_history:
            rows = [r for r in result.eval_history if "test_elbo" in r]
            curves({"held-out ELBO": ([r["step"] for r in rows], [r["test_elbo"] for r in rows]),
                    "train ELBO": ([r["step"] for r in result.history],
                                   [r["elbo"] for r in result.history])},
                   os.path.join(args.out, "elbo.png"), ylabel="nats per image",
                   title=f"SBN {args.layers}, {args.estimator}")
