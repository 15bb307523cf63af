"""
Known-truth problems for learned wiring.

- :func:`dnm_toy`: the addition/subtraction toy of the Dynamic Neural Manifold (DNM) write-up.
  Inputs ``a..e ~ N(0, 1)``, targets ``(b + e, e - d, b + e + d, e - d - c)``; input ``a`` is
  irrelevant. Its true input->output dependency matrix has 10 ones.
- :func:`random_teacher_dag` / :func:`teacher_forward`: a random sparse neuron DAG (same node
  order and candidate edges as ``probnets.models.gated.NeuronDAG``) whose outputs generate
  regression data, for teacher-student recovery of the wiring itself.
- :func:`sparse_linear_teacher`: ``y = x W^T + noise`` with a sparse ``W``, the plainest
  problem whose input->output dependencies (the nonzeros of ``W``) are known exactly.

This module does not import the models: the teacher has its own (neuron-by-neuron) forward
pass, which doubles as an independent reference.
"""

import warnings
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, overload

import torch


class Toy(NamedTuple):
    """A regression problem with known ``(output, input)`` dependencies."""

    x: torch.Tensor
    y: torch.Tensor
    dependencies: torch.Tensor
    input_names: Sequence[str]
    output_names: Sequence[str]


class Teacher(NamedTuple):
    """A neuron DAG (see :func:`random_teacher_dag`)."""

    adjacency: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    num_inputs: int
    num_hidden: int
    num_outputs: int


class LinearTeacher(NamedTuple):
    """Data of a sparse linear map and its weights (see :func:`sparse_linear_teacher`)."""

    x: torch.Tensor
    y: torch.Tensor
    weight: torch.Tensor
    dependencies: torch.Tensor


#: A hidden neuron's activation.
Activation = Callable[[torch.Tensor], torch.Tensor]

#: True (output, input) dependencies of :func:`dnm_toy`: rows b+e, e-d, b+e+d, e-d-c;
#: columns a, b, c, d, e.
DNM_TOY_DEPENDENCIES = torch.tensor(
    [
        [0, 1, 0, 0, 1],
        [0, 0, 0, 1, 1],
        [0, 1, 0, 1, 1],
        [0, 0, 1, 1, 1],
    ],
    dtype=torch.bool,
)


def dnm_toy(num_samples: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Toy:
    """
    The DNM addition/subtraction toy: ``y = (b + e, e - d, b + e + d, e - d - c)`` of
    ``x = (a, b, c, d, e) ~ N(0, I)``, noise-free. Input ``a`` feeds no output, so a learned
    wiring should cut it off; the 10 true input->output dependencies are
    :data:`DNM_TOY_DEPENDENCIES`.

    :param int num_samples: rows to draw.
    :param int seed: seed of a private generator (the global RNG is untouched).
    :returns: :class:`Toy` ``(x (N, 5), y (N, 4), dependencies (4, 5) bool, names...)``.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, 5, generator=gen, dtype=dtype)
    a, b, c, d, e = x.unbind(-1)
    y = torch.stack([b + e, e - d, b + e + d, e - d - c], -1)
    return Toy(x, y, DNM_TOY_DEPENDENCIES.clone(), "abcde", ("b+e", "e-d", "b+e+d", "e-d-c"))


def seed002_toy(num_samples: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Toy:
    """Deprecated alias of :func:`dnm_toy`."""
    warnings.warn("seed002_toy is deprecated; use dnm_toy", DeprecationWarning, stacklevel=2)
    return dnm_toy(num_samples, seed=seed, dtype=dtype)


def __getattr__(name: str) -> torch.Tensor:
    # The old name of DNM_TOY_DEPENDENCIES, kept importable with a warning.
    if name == "SEED002_DEPENDENCIES":
        warnings.warn(
            "SEED002_DEPENDENCIES is deprecated; use DNM_TOY_DEPENDENCIES",
            DeprecationWarning,
            stacklevel=2,
        )
        return DNM_TOY_DEPENDENCIES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def random_teacher_dag(
    num_inputs: int,
    num_hidden: int,
    num_outputs: int,
    edge_prob: float = 0.15,
    weight_range: tuple[float, float] = (0.5, 1.5),
    seed: int = 0,
) -> Teacher:
    """
    A random sparse DAG over nodes ordered inputs, hidden, outputs (edges ``j -> i`` with
    ``j < i``, no input->input, no output->output). Each candidate edge is present with
    probability ``edge_prob``; every hidden and output node gets at least one parent and every
    hidden node at least one child, so no part of the teacher is dead. Weights are
    ``+-U(weight_range)``, bounded away from zero so every present edge matters.

    :returns: :class:`Teacher` with ``adjacency`` bool ``(n, n)`` (``[i, j]``: ``j -> i``),
        ``weight`` ``(n, n)`` (zero off the adjacency) and ``bias`` ``(n,)``.
    """
    for arg, value, least in (
        ("num_inputs", num_inputs, 1),
        ("num_hidden", num_hidden, 0),
        ("num_outputs", num_outputs, 1),
    ):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{arg}: expected an int >= {least}, got {value!r}")
    if not 0.0 < edge_prob <= 1.0:
        raise ValueError(f"edge_prob: expected a probability in (0, 1], got {edge_prob!r}")
    gen = torch.Generator().manual_seed(seed)
    n = num_inputs + num_hidden + num_outputs
    first_output = num_inputs + num_hidden
    rows, cols = torch.tril_indices(n, n, offset=-1)
    candidate = torch.zeros(n, n, dtype=torch.bool)
    keep = (rows >= num_inputs) & (cols < first_output)
    candidate[rows[keep], cols[keep]] = True
    adj = candidate & (torch.rand(n, n, generator=gen) < edge_prob)
    for i in range(num_inputs, n):
        if not adj[i].any():
            parents = candidate[i].nonzero().squeeze(-1)
            adj[i, parents[torch.randint(len(parents), (1,), generator=gen)]] = True
    for j in range(num_inputs, first_output):
        if not adj[:, j].any():
            children = candidate[:, j].nonzero().squeeze(-1)
            adj[children[torch.randint(len(children), (1,), generator=gen)], j] = True
    low, high = weight_range
    magnitude = low + (high - low) * torch.rand(n, n, generator=gen)
    sign = torch.where(torch.rand(n, n, generator=gen) < 0.5, -1.0, 1.0)
    weight = torch.where(adj, magnitude * sign, torch.zeros(()))
    bias = torch.zeros(n)
    return Teacher(adj, weight, bias, num_inputs, num_hidden, num_outputs)


@overload
def teacher_forward(
    teacher: Teacher,
    x: torch.Tensor,
    activation: Activation = ...,
    return_hidden: Literal[False] = ...,
) -> torch.Tensor: ...


@overload
def teacher_forward(
    teacher: Teacher, x: torch.Tensor, activation: Activation = ..., *, return_hidden: Literal[True]
) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def teacher_forward(
    teacher: Teacher, x: torch.Tensor, activation: Activation, return_hidden: Literal[True]
) -> tuple[torch.Tensor, torch.Tensor]: ...


def teacher_forward(
    teacher: Teacher,
    x: torch.Tensor,
    activation: Activation = torch.tanh,
    return_hidden: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Evaluate a teacher neuron by neuron (hidden: ``activation``, outputs: linear); with
    ``return_hidden`` also the hidden neurons' values ``(B, H)``."""
    I, H = teacher.num_inputs, teacher.num_hidden
    w = teacher.weight.to(x)
    b = teacher.bias.to(x)
    values = [x[:, j] for j in range(I)]
    n = w.shape[0]
    for i in range(I, n):
        pre = b[i] + sum(w[i, j] * values[j] for j in range(i))
        values.append(activation(pre) if i < I + H else pre)
    outputs = torch.stack(values[I + H :], -1)
    if return_hidden:
        return outputs, torch.stack(values[I : I + H], -1) if H else x.new_zeros(len(x), 0)
    return outputs


def teacher_data(
    teacher: Teacher,
    num_samples: int,
    noise_scale: float = 0.1,
    seed: int = 0,
    activation: Activation = torch.tanh,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` with ``x ~ N(0, I)`` and ``y = teacher(x) + noise_scale * N(0, I)``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, teacher.num_inputs, generator=gen)
    y = teacher_forward(teacher, x, activation)
    return x, y + noise_scale * torch.randn(y.shape, generator=gen)


def sparse_linear_teacher(
    num_inputs: int,
    num_outputs: int,
    num_dependencies: int,
    num_samples: int,
    noise_scale: float = 0.05,
    weight_range: tuple[float, float] = (0.5, 1.5),
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> LinearTeacher:
    """
    A sparse linear map with exactly ``num_dependencies`` nonzero weights: ``x ~ N(0, I)``,
    ``y = x W^T + noise_scale * N(0, I)``. Every output gets at least one input; the nonzero
    positions are otherwise uniform, so some inputs usually feed nothing (they should be cut).
    Weights are ``+-U(weight_range)``, bounded away from zero so every dependency matters.

    :param int num_dependencies: nonzeros of ``W``, between ``num_outputs`` and
        ``num_inputs * num_outputs``.
    :param int seed: seed of a private generator (the global RNG is untouched).
    :returns: :class:`LinearTeacher` ``(x (N, I), y (N, O), weight (O, I),
        dependencies (O, I) bool)``.
    """
    for arg, value in (
        ("num_inputs", num_inputs),
        ("num_outputs", num_outputs),
        ("num_samples", num_samples),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg}: expected a positive int, got {value!r}")
    if not isinstance(num_dependencies, int) or not (
        num_outputs <= num_dependencies <= num_inputs * num_outputs
    ):
        raise ValueError(
            f"num_dependencies: expected an int in [{num_outputs}, {num_inputs * num_outputs}] "
            f"(at least one per output), got {num_dependencies!r}"
        )
    gen = torch.Generator().manual_seed(seed)
    deps = torch.zeros(num_outputs, num_inputs, dtype=torch.bool)
    # One input per output first, then the rest uniformly among the remaining positions.
    deps[torch.arange(num_outputs), torch.randint(num_inputs, (num_outputs,), generator=gen)] = 1
    free = (~deps).flatten().nonzero().squeeze(-1)
    extra = free[torch.randperm(len(free), generator=gen)[: num_dependencies - num_outputs]]
    deps.view(-1)[extra] = True
    low, high = weight_range
    magnitude = low + (high - low) * torch.rand(num_outputs, num_inputs, generator=gen)
    sign = torch.where(torch.rand(num_outputs, num_inputs, generator=gen) < 0.5, -1.0, 1.0)
    weight = torch.where(deps, magnitude * sign, torch.zeros(())).to(dtype)
    x = torch.randn(num_samples, num_inputs, generator=gen).to(dtype)
    noise = torch.randn(num_samples, num_outputs, generator=gen).to(dtype)
    return LinearTeacher(x, x @ weight.T + noise_scale * noise, weight, deps)
