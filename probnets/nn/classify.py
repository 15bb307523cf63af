"""Objective and accuracy for the image classifiers here (``HyperCNN``,
``ReactiveQueryNet``, ``StaticQueryCNN``), in the form
:class:`~probnets.train.LossObjective` takes."""

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["cross_entropy_objective", "accuracy"]


def cross_entropy_objective(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """``objective(images, labels) -> mean cross-entropy`` of ``model``'s logits."""

    def objective(images: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(model(images), labels)

    return objective


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """Fraction of ``images`` whose arg-max logit is the label (eval mode, no grad)."""
    for name, value in (("images", images), ("labels", labels)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if images.shape[0] == 0:
        raise ValueError("images is empty: accuracy needs at least one example")
    if labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(
            f"labels must be a 1-d integer tensor, got {labels.dtype} of shape "
            f"{tuple(labels.shape)}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images and labels must have the same length, got "
            f"{images.shape[0]} and {labels.shape[0]}"
        )
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start : start + batch_size])
        correct += (logits.argmax(-1) == labels[start : start + batch_size]).sum().item()
    model.train(was_training)
    return correct / images.shape[0]
