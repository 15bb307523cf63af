"""The estimator-comparison problems that ship: the REBAR/RELAX one-Bernoulli toy, a plate
of such toys with costs of different sizes, sigmoid belief nets on binarized MNIST, and AIR's
presence sites on multi-MNIST. Each factory
returns a :class:`~probnets.experiments.problem.Problem` at freshly initialised params."""

from collections.abc import Callable, Sequence

import pyro.poutine as poutine
import torch

from probnets.data import check_images
from probnets.experiments.problem import Problem
from probnets.models.air import AIR
from probnets.models.plated_toy import PlatedBernoulli
from probnets.models.sbn import SigmoidBeliefNet, binarize
from probnets.models.toy import ToyBernoulli

__all__ = ["air_problem", "plate_problem", "sbn_problem", "toy_problem"]


def toy_problem(
    target: float = 0.45, theta: float = 0.0, dtype: torch.dtype = torch.float32
) -> Problem:
    """The toy :class:`~probnets.models.toy.ToyBernoulli` at logit ``theta`` with its exact
    gradient and, along training, the exact loss ``L(theta)`` and ``sigma(theta)``."""
    toy = ToyBernoulli(target=target, theta=theta).to(dtype=dtype)

    def evaluate() -> dict[str, float]:
        return {
            "expected_loss": toy.expected_loss(),
            "prob": float(torch.sigmoid(toy.theta_unconstrained.detach())),
        }

    return Problem(
        name=f"toy_t{target:g}",
        model=toy.model,
        guide=toy.guide,
        args=(),
        exact=toy.exact_gradient,
        params=["theta"],
        evaluate=evaluate,
    )


def plate_problem(
    scales: Sequence[float] = (1.0, 10.0, 100.0),
    target: float = 0.45,
    theta: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> Problem:
    """The :class:`~probnets.models.plated_toy.PlatedBernoulli` plate at logit ``theta``
    with its exact gradient and, along training, the exact loss: the problem that shows a
    decaying-average baseline per plate element (``score+avg``) against one per site
    (``score+avg-site``)."""
    toy = PlatedBernoulli(scales=scales, target=target, theta=theta).to(dtype=dtype)

    def evaluate() -> dict[str, float]:
        return {"expected_loss": toy.expected_loss()}

    return Problem(
        name="plate_" + "-".join(f"{s:g}" for s in toy.scales.tolist()),
        model=toy.model,
        guide=toy.guide,
        args=(),
        exact=toy.exact_gradient,
        params=["theta"],
        evaluate=evaluate,
    )


def _check_sbn_arguments(
    images: torch.Tensor, layers: Sequence[int], batch_size: int
) -> torch.Tensor:
    if not torch.is_tensor(images) or not images.is_floating_point():
        raise TypeError("images must be a floating-point tensor of intensities in [0, 1]")
    images = images.reshape(images.shape[0], -1)
    if images.shape[1] != layers[0]:
        raise ValueError(
            f"images must have {layers[0]} pixels per image to match layers[0], "
            f"got {images.shape[1]}"
        )
    if not isinstance(batch_size, int) or not 1 <= batch_size <= images.shape[0]:
        raise ValueError(f"batch_size must be an int in [1, {images.shape[0]}], got {batch_size!r}")
    return images


def _epoch_batches(
    images: torch.Tensor, batch_size: int, seed: int
) -> Callable[[int], tuple[torch.Tensor]]:
    """``step -> (binarized minibatch,)``: reshuffled every epoch and binarized afresh, both
    determined by ``seed`` and the step."""
    num = images.shape[0]
    per_epoch = num // batch_size
    perms: dict[int, torch.Tensor] = {}

    def batch(step: int) -> tuple[torch.Tensor]:
        epoch, index = divmod(step, per_epoch)
        if epoch not in perms:
            perms.clear()
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            perms[epoch] = torch.randperm(num, generator=g)
        idx = perms[epoch][index * batch_size : (index + 1) * batch_size]
        g = torch.Generator(device=images.device).manual_seed(seed * 1_000_003 + 7919 * step + 1)
        return (binarize(images[idx.to(images.device)], generator=g),)

    return batch


def sbn_problem(
    images: torch.Tensor,
    layers: Sequence[int] = (784, 200),
    batch_size: int = 24,
    seed: int = 0,
    eval_images: torch.Tensor | None = None,
    eval_size: int = 1000,
    eval_samples: int = 1,
) -> Problem:
    """A :class:`~probnets.models.sbn.SigmoidBeliefNet` on images.

    :param images: training intensities in [0, 1], shape ``(N, 28, 28)`` or ``(N, D)``
        (e.g. ``probnets.data.load_mnist("train").images``); the net takes their dtype.
    :param batch_size: minibatch size (24 in the REBAR experiments). Variance is measured on
        one fixed binarized minibatch; training minibatches are reshuffled every epoch and
        binarized afresh (dynamic binarization), deterministically from ``seed``.
    :param eval_images: optional held-out intensities; the evaluation metrics are the mean
        ELBO (``eval_samples`` samples per image) on up to ``eval_size`` fixed binarized
        training images (``elbo_train``) and held-out images (``elbo_test``).
    """
    images = _check_sbn_arguments(images, layers, batch_size)
    net = SigmoidBeliefNet(layers, data_mean=images.mean(0)).to(dtype=images.dtype)
    fixed = binarize(images[:batch_size], seed=seed)
    train_eval = binarize(images[:eval_size], seed=seed + 1)
    test_eval = (
        None
        if eval_images is None
        else binarize(eval_images.reshape(eval_images.shape[0], -1)[:eval_size], seed=seed + 2)
    )

    def evaluate() -> dict[str, float]:
        out = {"elbo_train": float(net.elbo(train_eval, eval_samples).mean())}
        if test_eval is not None:
            out["elbo_test"] = float(net.elbo(test_eval, eval_samples).mean())
        return out

    return Problem(
        name=f"sbn_{'x'.join(str(n) for n in layers[1:])}",
        model=net.model,
        guide=net.guide,
        args=(fixed,),
        batch=_epoch_batches(images, batch_size, seed),
        evaluate=evaluate,
    )


def air_problem(
    images: torch.Tensor,
    counts: torch.Tensor,
    batch_size: int = 64,
    seed: int = 0,
    dair: bool = False,
    eval_size: int = 500,
) -> Problem:
    """AIR (or DAIR) at its initial parameters on canvases ``images``: gradients of the
    guide's parameters, whose variance comes from the ``z_pres`` sites (the model's baseline
    LSTM is used by the score-function estimators, as in Eslami et al. 2016).

    :param images: ``(N, S, S)`` intensities in [0, 1], e.g. the training canvases of
        :func:`probnets.data.multi_mnist`; the model takes their dtype and device and an
        ``S``-pixel canvas.
    :param counts: ``(N,)`` true object counts, for the metric ``count_accuracy`` (MAP
        counts of the first ``eval_size`` canvases) along training.
    :param batch_size: canvases per minibatch; variance is measured on the first
        ``batch_size``, training draws minibatches with replacement, seeded by ``seed`` and
        the step.
    """
    check_images(images, name="images")
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images must be square canvases, got {tuple(images.shape)}")
    counts = torch.as_tensor(counts)
    if counts.shape != (len(images),) or counts.is_floating_point():
        raise ValueError(
            f"counts must be integers of shape ({len(images)},), got "
            f"{counts.dtype} {tuple(counts.shape)}"
        )
    num_images = len(images)
    if not isinstance(batch_size, int) or not 1 <= batch_size <= num_images:
        raise ValueError(f"batch_size must be an int in [1, {num_images}], got {batch_size!r}")
    air = AIR(image_size=images.shape[-1], dair=dair).to(device=images.device, dtype=images.dtype)

    def batch(step: int) -> tuple[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        index = torch.randint(num_images, (batch_size,), generator=generator)
        return (images[index.to(images.device)],)

    def evaluate() -> dict[str, float]:
        inferred = air.infer(images[:eval_size])
        correct = inferred.counts.cpu() == counts[:eval_size].cpu()
        return {"count_accuracy": float(correct.float().mean())}

    # Measure the guide's own parameters: the baseline LSTM's gradient is that of its
    # regression loss, not of the ELBO.
    with poutine.trace(param_only=True) as params:
        air.guide(images[:2])
    guide_params = [name for name in params.trace.nodes if "baseline" not in name]
    return Problem(
        name="air" + ("-dair" if dair else ""),
        model=air.model,
        guide=air.guide,
        args=(images[:batch_size],),
        batch=batch,
        evaluate=evaluate,
        params=guide_params,
    )
