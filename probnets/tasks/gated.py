"""``probnets train gated``: a neuron DAG whose edges are latent gates.

``--problem toy`` is the DNM toy (inputs a..e, targets b+e, e−d, b+e+d, e−d−c; 5 + 16 + 4
= 25 neurons, 284 candidate edges); evaluation reports how many of the 10 true input→output
dependencies are recovered, spurious ones, and whether input ``a`` is cut off.
``--problem mnist`` classifies digits with a neuron DAG and reports held-out accuracy against
the fraction of active connections. Bernoulli gates train under any estimator of
:func:`probnets.infer.standard_estimators`; ``--gate hard_concrete`` uses
reparameterized L0 gates instead (Louizos et al., 2018).
"""

import os
from dataclasses import dataclass
from typing import Any, Literal, Optional, cast

import pyro.infer
import torch

from probnets.data import load_mnist
from probnets.data.dag_toy import dnm_toy
from probnets.infer import standard_estimators
from probnets.models.gated import BernoulliPrior, NeuronDAG
from probnets.tasks.base import Task, TaskRun, model_record, register
from probnets.tasks.config import (
    ConfigError,
    EvalConfig,
    RunConfig,
    positive,
    positive_int,
    probability,
    retune,
    setting,
)
from probnets.train import BatchSampler, Trainer, TrainResult
from probnets.viz.gates import plot_adjacency, save_figure


def _noise_scale(name: str, value: Any) -> None:
    """Check: ``"auto"``, ``"learned"`` or a positive number (as text, from the command line)."""
    if value in ("auto", "learned"):
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0 < number < float("inf"):
        raise ConfigError(name, f"{name} must be auto, learned or a positive number, got {value!r}")


@dataclass(kw_only=True)
class GatedConfig(RunConfig):
    """``probnets train gated``: a neuron DAG with latent edge gates, on the toy or MNIST.

    The defaults are those of :meth:`NeuronDAG.fit <probnets.models.gated.NeuronDAG.fit>`
    (the setting that prunes unseen sparse teachers, ``guides/gated.md``): Bernoulli gates
    under the Concrete relaxation at temperature 0.5, prior inclusion probability 0.01, gate
    logits from 0 with their own learning rate 0.05 and Adam betas (0.9, 0.9), batches of
    200, and on the toy the noise scale fixed at each target's standard deviation. The
    previous task defaults are ``--estimator disarm --batch-size 100 --noise-scale 1``.
    """

    steps: int = retune("steps", 4000)
    batch_size: int = retune("batch_size", 200)
    lr: float = retune("lr", 1e-2)
    problem: Literal["toy", "mnist"] = setting("toy", choices=["toy", "mnist"], help=None)
    gate: Literal["bernoulli", "hard_concrete"] = setting(
        "bernoulli", choices=["bernoulli", "hard_concrete"], help="gate type (default bernoulli)"
    )
    estimator: str = setting(
        "relaxed",
        choices=list(standard_estimators()),
        help="estimator of Bernoulli gates (default relaxed: Concrete at "
        "temperature 0.5, NeuronDAG.fit's; disarm for an unbiased "
        "gradient)",
    )
    prior_p: float = setting(
        0.01, check=probability, help="prior inclusion probability of an edge (default 0.01)"
    )
    gate_lr: float = setting(
        0.05, check=positive, help="learning rate of the gate logits (default 0.05)"
    )
    hidden: Optional[int] = setting(
        None, check=positive_int, help="hidden neurons (default 16 for toy, 32 for mnist)"
    )
    num_train: int = setting(2000, check=positive_int, help="toy samples (default 2000)")
    noise_scale: str = setting(
        "auto",
        check=_noise_scale,
        help="noise std of the toy's normal likelihood: auto (each target's std in the "
        "training data, the default), learned, or a fixed positive number",
    )


@register
class GatedTask(Task[GatedConfig, EvalConfig]):
    name = "gated"
    help = "neuron DAG with latent Bernoulli / hard-concrete edge gates (toy or MNIST)"
    config_class = GatedConfig

    def build(self, config: GatedConfig, device: torch.device) -> TaskRun:
        dtype = config.torch_dtype
        if config.problem == "toy":
            toy = dnm_toy(config.num_train, seed=config.seed, dtype=dtype)
            x, y, source = toy.x, toy.y, "dnm-toy"
            shape, likelihood = (5, config.hidden or 16, 4), "normal"
            test = None
        else:
            train, held_out = load_mnist("train"), load_mnist("test")
            x, y, source = train.images.reshape(-1, 784).to(dtype), train.labels, train.source
            shape, likelihood = (784, config.hidden or 32, 10), "categorical"
            test = (
                held_out.images.reshape(-1, 784).to(device=device, dtype=dtype),
                held_out.labels.to(device),
            )
        arguments: dict[str, Any] = dict(gate=config.gate, likelihood=likelihood, init_logit=0.0)
        if test is None:
            arguments["noise_scale"] = _model_noise_scale(config.noise_scale)
        net = NeuronDAG(*shape, prior=BernoulliPrior(config.prior_p), **arguments)
        net = net.to(device=device, dtype=dtype)
        net.num_data = len(x)
        if net.noise_scale_mode == "auto":
            # As NeuronDAG.fit does: each output's std in the training targets (1 where
            # constant). Set before training, so that a resumed run loads it back.
            std = y.std(0)
            net.target_scale = torch.where(std > 0, std, torch.ones_like(std)).to(device)
        elbo: pyro.infer.ELBO
        if config.gate == "hard_concrete":
            elbo = pyro.infer.Trace_ELBO()
        else:
            elbo = standard_estimators([config.estimator])[config.estimator]()

        def evaluate(trainer: Trainer) -> dict[str, Any]:
            active = net.gate_probs() > 0.5
            row = {
                "active_edges": int(active.sum()),
                "active_fraction": float(active.float().mean()),
            }
            if test is None:
                found = net.dependencies()
                row.update(
                    true_dependencies=int((found & toy.dependencies).sum()),
                    spurious_dependencies=int((found & ~toy.dependencies).sum()),
                    input_a_cut=bool(not found[:, 0].any()),
                )
            else:
                probs = net.predict(test[0], num_samples=10)
                row["test_accuracy"] = float((probs.argmax(-1) == test[1]).float().mean())
            return row

        prior = model_record(net.prior, p=config.prior_p)
        return TaskRun(
            data=BatchSampler(
                x, y, batch_size=min(config.batch_size, len(x)), seed=config.seed, device=device
            ),
            model_fn=net.model,
            guide_fn=net.guide,
            loss=elbo,
            module=net,
            # A short second-moment memory lets the small, steady prior gradient switch unused
            # gates off (see GatedNetwork.fit).
            param_groups={"*gate_logits": {"lr": config.gate_lr, "betas": (0.9, 0.9)}},
            eval_fn=evaluate,
            data_source=source,
            config={
                "shape": list(shape),
                "gate": config.gate,
                "prior_p": config.prior_p,
                "estimator": config.estimator if config.gate == "bernoulli" else None,
                "noise_scale": config.noise_scale if test is None else None,
            },
            model=model_record(
                net,
                num_inputs=shape[0],
                num_hidden=shape[1],
                num_outputs=shape[2],
                prior=prior,
                **arguments,
            ),
        )

    def finish(self, run: TaskRun, result: TrainResult, config: GatedConfig) -> None:
        assert config.out is not None  # run_task has chosen the run directory
        fig = plot_adjacency(
            cast(NeuronDAG, run.module).edge_probs().cpu(),
            title=f"posterior inclusion probabilities ({config.problem}, {config.gate})",
        )
        save_figure(fig, os.path.join(config.out, "adjacency.png"))


def _model_noise_scale(value: str) -> float | Literal["auto"] | None:
    """``--noise-scale`` as :class:`NeuronDAG` takes it: ``"auto"``, ``None`` (learned) or
    a number."""
    if value == "auto":
        return "auto"
    return None if value == "learned" else float(value)
