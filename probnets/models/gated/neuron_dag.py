from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F

from probnets.models.gated.base import GatedNetwork
from probnets.models.gated.inputs import check_count
from probnets.models.gated.priors import CostKind
from probnets.models.gated.structure import (
    neuron_dag_edges,
    reachability,
    topological_levels,
)

EVALUATION_METHODS = ("auto", "levels", "dense", "sequential")
#: How :meth:`NeuronDAG.forward` runs the hidden-to-hidden recursion.
EvaluationMethod = Literal["auto", "levels", "dense", "sequential"]
#: An elementwise nonlinearity.
Activation = Callable[[torch.Tensor], torch.Tensor]
#: Up to this many hidden neurons ``"auto"`` picks ``"dense"``, above it ``"levels"``
#: (from ``examples/gated_eval_methods.py``: with few hidden neurons every product is tiny and
#: the per-level gathers cost more than the repeated full product saves).
AUTO_DENSE_MAX_HIDDEN = 64
#: Activations a checkpoint records by name (others must be passed again when loading).
ACTIVATIONS: dict[str, Activation] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "silu": F.silu,
    "elu": F.elu,
    "softplus": F.softplus,
}
_ACTIVATION_ALIASES: dict[Activation, str] = {
    torch.nn.functional.relu: "relu",
    torch.nn.functional.tanh: "tanh",
    torch.nn.functional.sigmoid: "sigmoid",
}
_Network = TypeVar("_Network", bound="NeuronDAG")


class NeuronDAG(GatedNetwork):
    r"""
    A neural network whose wiring between individual neurons is a latent DAG (the Dynamic
    Neural Manifold, made Bayesian): one gate per possible neuron-to-neuron edge.

    Nodes are ordered inputs (``I``), hidden (``H``), outputs (``O``),
    ``n = I + H + O``. An edge ``j -> i`` exists in the candidate set when ``j < i``, ``i`` is
    not an input and ``j`` is not an output: strictly lower-triangular, no input->input and
    no output->output edges, direct input->output edges allowed. That is
    ``E = H I + H (H - 1) / 2 + O (I + H)`` gates (284 for the DNM toy's 5 + 16 + 4).

    Each node computes

    .. math::

        v_i = x_i \ (i < I),\qquad
        v_i = \mathrm{act}\Big(b_i + \sum_{j} z_{ij} w_{ij} v_j\Big)\ (\text{hidden}),\qquad
        v_i = b_i + \sum_j z_{ij} w_{ij} v_j\ (\text{outputs: means or logits}).

    **Parallel evaluation.** Inputs feed every other node in one matrix product; outputs read
    every hidden node in one product; only the hidden-to-hidden recursion is sequential, and
    only along the longest path of the *sampled* wiring. ``method="levels"`` (default) groups
    hidden nodes by topological level of the active hidden->hidden edges
    (:func:`~probnets.models.gated.structure.topological_levels`, over the union of all gate
    samples in the batch) and updates a whole level per batched product: ``depth`` products
    with ``H`` rows in total. ``"dense"`` instead repeats the full masked product
    :math:`h \leftarrow \mathrm{act}(b + W_{xh}x + W_{hh}h)` ``depth`` times (no gather, but
    ``depth * H`` rows of work); ``"sequential"`` is the neuron-at-a-time reference.
    All return the same values. ``"auto"`` (default) takes ``"dense"`` up to
    ``AUTO_DENSE_MAX_HIDDEN`` hidden neurons and ``"levels"`` above, the faster of the two
    in forward+backward time at each size (``examples/gated_eval_methods.py``; the
    measurements are in ``guides/gated.md``).

    ``edge_probs()`` is the ``(n, n)`` matrix with entry ``[i, j]`` the posterior inclusion
    probability of edge ``j -> i`` (zero outside the candidate set).

    See :class:`~probnets.models.gated.base.GatedNetwork` for the model, guide, priors and
    gate types (``gate="bernoulli"`` or ``"hard_concrete"``).

    :param int num_inputs: ``I >= 1``.
    :param int num_hidden: ``H >= 0``.
    :param int num_outputs: ``O >= 1``.
    :param activation: hidden nonlinearity, a callable (default ``torch.tanh``).
    :param str method: evaluation strategy, one of ``"auto"``, ``"levels"``, ``"dense"``,
        ``"sequential"``.
    :param kwargs: gate type, prior, likelihood etc., see ``GatedNetwork``.
    """

    def __init__(
        self,
        num_inputs: int,
        num_hidden: int,
        num_outputs: int,
        activation: Activation = torch.tanh,
        method: EvaluationMethod = "auto",
        name: str = "neuron_dag",
        **kwargs: Any,
    ) -> None:
        num_inputs = check_count("num_inputs", num_inputs, 1)
        num_hidden = check_count("num_hidden", num_hidden, 0)
        num_outputs = check_count("num_outputs", num_outputs, 1)
        if not callable(activation):
            raise TypeError(f"activation: expected a callable, got {type(activation).__name__}")
        if method not in EVALUATION_METHODS:
            raise ValueError(f"method: expected one of {EVALUATION_METHODS}, got {method!r}")
        targets, sources = neuron_dag_edges(num_inputs, num_hidden, num_outputs)
        super().__init__(targets.numel(), name=name, **kwargs)
        self.num_inputs, self.num_hidden, self.num_outputs = num_inputs, num_hidden, num_outputs
        self.num_nodes = num_inputs + num_hidden + num_outputs
        self.input_shape = (num_inputs,)
        self.activation = activation
        self.method = method
        self.register_buffer("edge_targets", targets)
        self.register_buffer("edge_sources", sources)
        self.register_buffer("_flat_index", targets * self.num_nodes + sources)
        self.weight = torch.nn.Parameter(torch.empty(self.num_gates))
        self.bias = torch.nn.Parameter(torch.empty(num_hidden + num_outputs))
        self.reset_parameters()

    def model_config(self) -> dict[str, Any]:
        """Constructor arguments; the activation is recorded by its name in
        :data:`ACTIVATIONS` (``None`` for another callable, to be passed when loading)."""
        names = {fn: name for name, fn in ACTIVATIONS.items()} | _ACTIVATION_ALIASES
        return {
            "num_inputs": self.num_inputs,
            "num_hidden": self.num_hidden,
            "num_outputs": self.num_outputs,
            "activation": names.get(self.activation),
            "method": self.method,
            **super().model_config(),
        }

    @classmethod
    def from_config(cls: type[_Network], config: Mapping[str, Any]) -> _Network:
        activation = config.get("activation", torch.tanh)
        if activation is None:
            raise ValueError(
                "the checkpoint could not record the NeuronDAG's activation (a "
                "callable other than those of probnets.models.gated.neuron_dag."
                "ACTIVATIONS): pass it, e.g. NeuronDAG.load(path, activation=fn)"
            )
        if isinstance(activation, str):
            activation = ACTIVATIONS[activation]
        return cls(**dict(config, activation=activation))

    def reset_parameters(self) -> None:
        """Weights ~ N(0, 1 / fan_in) over each node's candidate parents; zero biases."""
        fan_in = torch.bincount(self.edge_targets, minlength=self.num_nodes).clamp(min=1)
        with torch.no_grad():
            std = fan_in[self.edge_targets].to(self.weight).rsqrt()
            self.weight.copy_(torch.randn_like(self.weight) * std)
            self.bias.zero_()

    # ----- structure --------------------------------------------------------------------------

    def to_matrix(self, values: torch.Tensor) -> torch.Tensor:
        """Scatter per-edge values ``(..., E)`` into ``(..., n, n)`` adjacency matrices."""
        n = self.num_nodes
        flat = values.new_zeros(values.shape[:-1] + (n * n,))
        flat = flat.index_copy(-1, self._flat_index, values)
        return flat.view(values.shape[:-1] + (n, n))

    def edge_probs(self) -> torch.Tensor:
        """``(n, n)``: ``[i, j]`` is the posterior inclusion probability of edge ``j -> i``."""
        return self.to_matrix(self.gate_probs())

    def candidate_mask(self) -> torch.Tensor:
        """``(n, n)`` bool: the edges that have a gate."""
        return self.to_matrix(torch.ones_like(self.weight)).bool()

    def dependencies(self, threshold: float = 0.5) -> torch.Tensor:
        """``(O, I)`` bool: output ``o`` depends on input ``i`` when a directed path of edges
        with inclusion probability above ``threshold`` leads from ``i`` to ``o``."""
        reach = reachability(self.edge_probs() > threshold)
        return reach[self.num_inputs + self.num_hidden :, : self.num_inputs]

    def gate_costs(self, kind: CostKind = "edges") -> torch.Tensor:
        """Per-gate cost: every edge is one multiply-accumulate per example, so ``"edges"``
        and ``"flops"`` coincide for a neuron DAG."""
        if kind not in ("edges", "flops"):
            raise ValueError(f"kind: expected 'edges' or 'flops', got {kind!r}")
        return torch.ones_like(self.weight)

    # ----- evaluation -------------------------------------------------------------------------

    def forward(
        self, x: torch.Tensor, gates: torch.Tensor, method: EvaluationMethod | None = None
    ) -> torch.Tensor:
        """
        :param torch.Tensor x: ``(B, I)`` inputs.
        :param torch.Tensor gates: ``(E,)`` or ``batch + (1, E)``.
        :returns: ``(B, O)`` or ``batch + (B, O)`` output means / logits.
        """
        _, out, batch = self._evaluate(x, gates, method)
        return self._restore(out, batch)

    def hidden_activations(
        self, x: torch.Tensor, gates: torch.Tensor, method: EvaluationMethod | None = None
    ) -> torch.Tensor:
        """The hidden neurons' values, ``(B, H)`` or ``batch + (B, H)``, for the same
        arguments as :meth:`forward` (e.g. to match them to another network's neurons)."""
        h, _, batch = self._evaluate(x, gates, method)
        return self._restore(h, batch)

    def _evaluate(
        self, x: torch.Tensor, gates: torch.Tensor, method: EvaluationMethod | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Size | None]:
        method = self.method if method is None else method
        if method not in EVALUATION_METHODS:
            raise ValueError(f"method: expected one of {EVALUATION_METHODS}, got {method!r}")
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.num_inputs:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected shape (batch, {self.num_inputs}), got {shape}")
        flat_gates, batch = self._flatten_gates(gates)
        I, H = self.num_inputs, self.num_hidden
        adj = self.to_matrix(self.weight * flat_gates)  # (K, n, n)
        hidden_rows = slice(I, I + H)
        output_rows = slice(I + H, None)
        bias_h, bias_o = self.bias[:H], self.bias[H:]

        # Inputs reach every hidden node at once; only hidden->hidden edges are sequential.
        pre_h = x @ adj[:, hidden_rows, :I].transpose(-1, -2) + bias_h  # (K, B, H)
        w_hh = adj[:, hidden_rows, hidden_rows]
        h = self._hidden(pre_h, w_hh, flat_gates, method)
        out = (
            x @ adj[:, output_rows, :I].transpose(-1, -2)
            + h @ adj[:, output_rows, hidden_rows].transpose(-1, -2)
            + bias_o
        )
        return h, out, batch

    def _hidden(
        self,
        pre_h: torch.Tensor,
        w_hh: torch.Tensor,
        flat_gates: torch.Tensor,
        method: EvaluationMethod,
    ) -> torch.Tensor:
        act = self.activation
        h = act(pre_h)
        H = self.num_hidden
        if H <= 1:
            return h
        if method == "auto":
            method = "dense" if H <= AUTO_DENSE_MAX_HIDDEN else "levels"
        if method == "sequential":
            for i in range(1, H):
                col = act(pre_h[..., i] + (h[..., :i] * w_hh[:, i, :i].unsqueeze(-2)).sum(-1))
                h = h.index_copy(-1, torch.tensor([i], device=h.device), col.unsqueeze(-1))
            return h
        active = (flat_gates != 0).any(0)
        I = self.num_inputs
        mask = self.to_matrix(active.to(flat_gates))[I : I + H, I : I + H].bool()
        if int(mask.sum()) == H * (H - 1) // 2:
            # Every hidden->hidden edge is active (always so under a continuous relaxation):
            # the hidden nodes form one chain, node k at level k.
            level = torch.arange(H, device=mask.device)
        else:
            level = topological_levels(mask)
        depth = int(level.max())
        if method == "dense":
            for _ in range(depth):
                h = act(pre_h + h @ w_hh.transpose(-1, -2))
            return h
        for lv in range(1, depth + 1):
            rows = (level == lv).nonzero().squeeze(-1)
            update = act(pre_h[..., rows] + h @ w_hh[:, rows, :].transpose(-1, -2))
            h = h.index_copy(-1, rows, update)
        return h

    def extra_repr(self) -> str:
        return (
            f"num_inputs={self.num_inputs}, num_hidden={self.num_hidden}, "
            f"num_outputs={self.num_outputs}, num_gates={self.num_gates}, gate={self.gate!r}, "
            f"likelihood={self.likelihood!r}, method={self.method!r}"
        )
