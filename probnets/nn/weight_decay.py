r"""Which parameters decoupled weight decay shrinks.

Decoupled weight decay (Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization")
multiplies parameters by :math:`1 - \eta \lambda` each step. It is meant for the weight
matrices of linear maps, whose size bounds what the network can fit. Gains and shifts are a
different kind of parameter: a layer-norm gain pulled towards 0 flattens every gate it feeds
towards :math:`\sigma(0) = 1/2`, and a shift pulled towards 0 is a bias prior, not a capacity
limit. The usual rule, "decay what has two or more dimensions", misses gains stored as
matrices, such as the per-gate layer-norm gains and shifts of shape ``(4, H)`` of
:class:`~probnets.nn.LayerNormLSTMCell` and :class:`~probnets.nn.HyperLSTMCell`. A module lists
such parameters by name in a ``no_weight_decay`` class attribute, and the functions here honour
it.
"""

from typing import Any

from torch import nn

__all__ = ["decayed_parameters", "weight_decay_groups"]


def decayed_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``module`` that weight decay shrinks: those of two or more dimensions,
    apart from those a submodule names in its ``no_weight_decay`` attribute.

    :param torch.nn.Module module: the model.
    :returns: a list of parameters, each once even if shared.
    """
    decayed: list[nn.Parameter] = []
    seen: set[int] = set()
    for submodule in module.modules():
        exempt = getattr(submodule, "no_weight_decay", ())
        for name, param in submodule.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if param.dim() >= 2 and name not in exempt:
                decayed.append(param)
    return decayed


def weight_decay_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Parameter groups for a ``torch.optim`` optimizer: the :func:`decayed_parameters` with
    ``weight_decay``, everything else with none.

    Example: ``torch.optim.AdamW(weight_decay_groups(model, 0.03), lr=4e-3)``.

    :param torch.nn.Module module: the model.
    :param float weight_decay: the decay of the decayed group (``>= 0``).
    :returns: up to two groups (``{"params": [...], "weight_decay": ...}``), empty ones left
        out.
    """
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    decayed = {id(param) for param in decayed_parameters(module)}
    params = list(module.parameters())
    groups = [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]
