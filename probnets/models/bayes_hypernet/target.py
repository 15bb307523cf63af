"""The target network of a Bayesian hypernetwork: an MLP described by its widths.

The hypernetwork generates every weight of the target, so the target itself holds no
parameters: it is the list of layer widths ``[n_0, ..., n_L]`` plus one elementwise activation
between layers, and :func:`mlp_forward` runs it with generated (possibly sample-batched)
weights. A ``torch.nn.Sequential`` of ``nn.Linear`` layers and elementwise activations is read
into the same description; any other layer is refused by name, since its weights could not be
generated.
"""

import numbers
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

#: The names of :data:`ACTIVATIONS`.
ActivationName = Literal["relu", "tanh", "sigmoid", "elu", "gelu", "silu", "softplus"]
#: A target network: its layer widths ``[n_0, ..., n_L]`` or an ``nn.Sequential``.
Target = Sequence[int] | nn.Module

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": nn.functional.elu,
    "gelu": nn.functional.gelu,
    "silu": nn.functional.silu,
    "softplus": nn.functional.softplus,
}
_MODULE_ACTIVATIONS: dict[type[nn.Module], ActivationName] = {
    nn.ReLU: "relu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.ELU: "elu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Softplus: "softplus",
}


def parse_target(target: Target, activation: ActivationName) -> tuple[list[int], ActivationName]:
    """Return ``(widths, activation_name)`` for a width list or an ``nn.Sequential``.

    :param target: ``[n_0, ..., n_L]`` (at least two positive ints, numpy integers
        included) or an ``nn.Sequential`` of ``nn.Linear`` layers separated by one kind of
        elementwise activation.
    :param str activation: activation for a width list (ignored for a module, which names its
        own).
    """
    if isinstance(target, nn.Module):
        return _parse_module(target)
    if not isinstance(target, (list, tuple)):
        raise TypeError(
            "target must be a list of layer widths such as [1, 64, 64, 1] or an nn.Sequential "
            f"of nn.Linear layers, got {type(target).__name__}"
        )
    if len(target) < 2 or not all(
        isinstance(w, numbers.Integral) and not isinstance(w, (bool, np.bool_)) and int(w) > 0
        for w in target
    ):
        raise ValueError(
            f"target must list at least two positive int widths (input, ..., output), got "
            f"{list(target)!r}"
        )
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return [int(w) for w in target], activation


def _parse_module(module: nn.Module) -> tuple[list[int], ActivationName]:
    layers = list(module) if isinstance(module, nn.Sequential) else [module]
    widths: list[int] = []
    activations: set[ActivationName] = set()
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            _check_linear(index, layer, widths)
            widths = widths or [layer.in_features]
            widths.append(layer.out_features)
        elif type(layer) in _MODULE_ACTIVATIONS:
            if not widths or index == len(layers) - 1:
                raise ValueError(
                    f"target layer {index} ({layer}): activations must sit between nn.Linear "
                    "layers (the output layer is linear; the likelihood adds its link)"
                )
            activations.add(_MODULE_ACTIVATIONS[type(layer)])
        else:
            raise TypeError(
                f"target layer {index} is {type(layer).__name__} ({layer}); a Bayesian "
                "hypernetwork supports only nn.Linear layers and elementwise activations "
                f"({', '.join(c.__name__ for c in _MODULE_ACTIVATIONS)})"
            )
    return widths, _the_activation(widths, activations)


def _check_linear(index: int, layer: nn.Linear, widths: Sequence[int]) -> None:
    """Target layer ``index`` must read the previous layer's outputs and have a bias."""
    if widths and widths[-1] != layer.in_features:
        raise ValueError(
            f"target layer {index} ({layer}) expects {layer.in_features} inputs but the "
            f"previous layer gives {widths[-1]}"
        )
    if layer.bias is None:
        raise ValueError(
            f"target layer {index} ({layer}) has no bias; the hypernetwork generates "
            "a bias for every layer, use nn.Linear(..., bias=True)"
        )


def _the_activation(widths: Sequence[int], activations: set[ActivationName]) -> ActivationName:
    """The one activation of a parsed target module (``"relu"`` for a single linear layer,
    which has none)."""
    if len(widths) < 2:
        raise ValueError("target module must contain at least one nn.Linear layer")
    if len(activations) > 1:
        raise ValueError(f"target mixes activations {sorted(activations)}; use one kind")
    if len(activations) == 0 and len(widths) > 2:
        raise ValueError("target stacks nn.Linear layers without an activation between them")
    return activations.pop() if activations else "relu"


def mlp_forward(
    x: torch.Tensor, weights: Sequence[tuple[torch.Tensor, torch.Tensor]], activation: str
) -> torch.Tensor:
    """Run the target on ``x`` of shape ``(N, n_0)`` with ``weights = [(W_l, b_l), ...]``.

    ``W_l`` has shape ``(..., n_l, n_{l-1})`` and ``b_l`` shape ``(..., n_l)``; leading sample
    dimensions broadcast, so the output has shape ``(..., N, n_L)``.
    """
    act = ACTIVATIONS[activation]
    h = x
    for index, (weight, bias) in enumerate(weights):
        h = torch.matmul(h, weight.transpose(-1, -2)) + bias.unsqueeze(-2)
        if index < len(weights) - 1:
            h = act(h)
    return h
