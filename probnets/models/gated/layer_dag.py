import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from pyro.nn.module import to_pyro_module_

from probnets.models.gated.base import GatedNetwork, Likelihood
from probnets.models.gated.priors import CostKind

MERGE_MODES = ("concat", "sum", "max", "squeeze")
GATE_GRANULARITY = ("layer", "feature_map")
RESIZE_MODES = ("pool", "interpolate")
#: How a block's gated inputs are combined.
MergeMode = Literal["concat", "sum", "max", "squeeze"]
#: One gate per connection or one per channel of the connection's source.
GatePer = Literal["layer", "feature_map"]
#: How inputs are brought to a block's spatial size.
ResizeMode = Literal["pool", "interpolate"]
#: ``slices[k - 1][j]``: the ``(start, stop)`` of the gates of connection ``j -> k``.
GateSlices = list[list[tuple[int, int]]]
_Network = TypeVar("_Network", bound="LayerDAG")


class LayerDAG(GatedNetwork):
    r"""
    Layer blocks wired by latent gates (a Keras ``Connection`` layer's "fully connected" layer
    graph, made Bayesian): block :math:`L_k` reads every earlier output :math:`v_0 = x, v_1,
    \dots, v_{k-1}`, each through a gate, and the network's output is the last block's output.

    .. math::

        v_k = L_k\Big(\mathrm{merge}_{j<k}\ z_{jk} \odot \mathrm{resize}_k(v_j)\Big).

    - **Gates**: ``gate_per="layer"`` gives one gate per connection ``j -> k``
      (:math:`n(n+1)/2` gates for ``n`` blocks); ``"feature_map"`` one per channel of
      :math:`v_j` per connection.
    - **Resize**: every input of block ``k`` is brought to the smallest spatial size among
      them, by adaptive average pooling (``"pool"``) or antialiased bilinear interpolation
      (``"interpolate"``). Block outputs of shape ``(B, F)`` (dense blocks) are treated as
      ``(B, F, 1, 1)`` maps, so a dense block can feed and be fed like any other; a block that
      receives maps must flatten them itself (e.g. ``nn.Sequential(nn.Flatten(), ...)``).
    - **Merge**: ``"concat"`` (DenseNet: channels stack); ``"sum"`` (ResNet: inputs with
      fewer channels are zero-padded to the widest, the parameter-free shortcut "option A" of
      He et al. 2016); ``"max"`` (elementwise max over inputs; a closed gate *removes* its input
      from the max instead of offering zeros, and a block whose inputs are all closed receives
      zeros); ``"squeeze"`` (SqueezeNet-like: concatenate, then a learned 1x1 convolution to
      ``squeeze_channels``, default the widest input).

    A closed gate multiplies its input by 0 (for ``"max"``: removes it), so with Bernoulli gates
    a closed connection has no influence at all; hard-concrete gates in (0, 1) scale.

    Blocks may be lazy modules (``nn.LazyConv2d``, ``nn.LazyLinear``): shapes are inferred at
    construction by one dry run on zeros of ``input_shape``. Blocks are converted in place to
    ``PyroModule`` s so their parameters reach Pyro's optimizer.

    :param blocks: sequence of ``nn.Module`` ``L_1 .. L_n``.
    :param tuple input_shape: ``(C, H, W)`` of one input.
    :param str merge: one of ``"concat"``, ``"sum"``, ``"max"``, ``"squeeze"``.
    :param str gate_per: ``"layer"`` or ``"feature_map"``.
    :param str resize: ``"pool"`` or ``"interpolate"``.
    :param int squeeze_channels: output channels of the 1x1 reduction (``merge="squeeze"``).
    :param kwargs: gate type, prior, likelihood (default ``"categorical"``) etc., see
        :class:`~probnets.models.gated.base.GatedNetwork`.
    """

    def __init__(
        self,
        blocks: Iterable[torch.nn.Module],
        input_shape: Sequence[int],
        merge: MergeMode = "concat",
        gate_per: GatePer = "layer",
        resize: ResizeMode = "pool",
        squeeze_channels: int | None = None,
        likelihood: Likelihood = "categorical",
        name: str = "layer_dag",
        **kwargs: Any,
    ) -> None:
        blocks, input_shape = _check_arguments(
            blocks, input_shape, merge, gate_per, resize, squeeze_channels
        )
        shapes, sizes, slices, reducers = _lay_out(
            blocks, input_shape, merge, gate_per, squeeze_channels
        )
        start = slices[-1][-1][1]
        super().__init__(start, likelihood=likelihood, name=name, **kwargs)
        self.input_shape = input_shape
        self.num_outputs = math.prod(shapes[-1])
        self.merge = merge
        self.squeeze_channels = squeeze_channels
        self.gate_per = gate_per
        self.resize = resize
        self.node_shapes = shapes
        self.target_sizes = sizes
        self.gate_slices = slices
        self.num_blocks = len(blocks)
        module_list = torch.nn.ModuleList(blocks)
        to_pyro_module_(module_list)
        self.blocks = module_list
        if reducers:
            reducer_list = torch.nn.ModuleList(reducers)
            to_pyro_module_(reducer_list)
            self.reducers: torch.nn.ModuleList | None = reducer_list
        else:
            self.reducers = None

    def model_config(self) -> dict[str, Any]:
        """Constructor arguments except ``blocks`` (arbitrary modules, recorded as ``None``):
        pass them when loading, ``LayerDAG.load(path, blocks=[...])``."""
        return {
            "blocks": None,
            "input_shape": list(self.input_shape),
            "merge": self.merge,
            "gate_per": self.gate_per,
            "resize": self.resize,
            "squeeze_channels": self.squeeze_channels,
            **super().model_config(),
        }

    @classmethod
    def from_config(cls: type[_Network], config: Mapping[str, Any]) -> _Network:
        if config.get("blocks") is None:
            raise ValueError(
                "a LayerDAG checkpoint records its blocks' weights but not the "
                "blocks themselves (any modules): pass them as built for training, "
                "LayerDAG.load(path, blocks=[...])"
            )
        return cls(**config)

    def reset_parameters(self) -> None:
        """Re-initialize every block (and 1x1 reduction) that defines ``reset_parameters``."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                reset: Callable[[], object] = getattr(module, "reset_parameters")
                reset()

    # ----- structure --------------------------------------------------------------------------

    def edge_probs(self) -> torch.Tensor:
        """
        ``(n + 1, n + 1)`` over nodes ``x, L_1 .. L_n``: ``[k, j]`` is the posterior inclusion
        probability of connection ``j -> k`` (per-feature-map gates: the expected fraction of
        the connection's maps that are kept).
        """
        probs = self.gate_probs()
        n = self.num_blocks + 1
        out = probs.new_zeros(n, n)
        for k, row in enumerate(self.gate_slices, start=1):
            for j, (a, b) in enumerate(row):
                out[k, j] = probs[a:b].mean()
        return out

    def dependencies(self, threshold: float = 0.5) -> torch.Tensor:
        """
        ``(C,)`` bool over the input's channels: channel ``c`` reaches the output when a chain
        of connections with a gate above ``threshold`` leads from it to the last block (for a
        connection out of ``x`` with per-feature-map gates, channel ``c``'s own gate; between
        blocks, any open gate of the connection, since a block mixes all its inputs). With
        per-connection gates all channels share one answer. Blocks mix channels, so unlike
        :meth:`NeuronDAG.dependencies` this does not resolve which output reads which input.
        """
        open_gates = self.gate_probs() > threshold
        channels = self.input_shape[0]
        # reached[k]: (C,) channels of x that reach node k (node 0 is x itself).
        reached = [torch.ones(channels, dtype=torch.bool, device=open_gates.device)]
        for row in self.gate_slices:
            (a, b), later = row[0], row[1:]
            into = open_gates[a:b].expand(channels)
            for j, (a, b) in enumerate(later, start=1):
                into = into | (reached[j] & open_gates[a:b].any())
            reached.append(into)
        return reached[-1]

    def gate_costs(self, kind: CostKind = "edges") -> torch.Tensor:
        """
        Per-gate cost. ``"edges"``: 1 per gate. ``"flops"``: the number of activation
        elements the gate carries into its block (channels x target height x width per
        example), which is proportional to the multiply-accumulates the block's first layer
        spends on them for concat and squeeze merges.
        """
        if kind not in ("edges", "flops"):
            raise ValueError(f"kind: expected 'edges' or 'flops', got {kind!r}")
        costs = torch.ones_like(self.gate_logits)
        if kind == "edges":
            return costs
        for k, row in enumerate(self.gate_slices, start=1):
            h, w = self.target_sizes[k - 1]
            for j, (a, b) in enumerate(row):
                per_gate = self.node_shapes[j][0] // (b - a)
                costs[a:b] = float(per_gate * h * w)
        return costs

    # ----- evaluation -------------------------------------------------------------------------

    def _resize(self, v: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(v.shape[-2:]) == size:
            return v
        if self.resize == "pool":
            return F.adaptive_avg_pool2d(v, size)
        return F.interpolate(v, size=size, mode="bilinear", align_corners=False, antialias=True)

    def _merge(self, k: int, inputs: Sequence[torch.Tensor], gates: torch.Tensor) -> torch.Tensor:
        widest = max(v.shape[1] for v in inputs)
        gated = []
        for j, v in enumerate(inputs):
            a, b = self.gate_slices[k - 1][j]
            g = gates[:, a:b, None, None]
            if self.merge == "max":
                v = torch.where(g == 0, torch.full_like(v, -float("inf")), g * v)
                v = F.pad(v, (0, 0, 0, 0, 0, widest - v.shape[1]), value=-float("inf"))
            else:
                v = g * v
                if self.merge == "sum":
                    v = F.pad(v, (0, 0, 0, 0, 0, widest - v.shape[1]))
            gated.append(v)
        if self.merge == "concat":
            return torch.cat(gated, 1)
        if self.merge == "squeeze":
            reducers = self.reducers
            assert reducers is not None  # merge="squeeze" builds them
            return reducers[k - 1](torch.cat(gated, 1))
        if self.merge == "sum":
            return torch.stack(gated).sum(0)
        merged = torch.stack(gated).amax(0)
        return torch.where(torch.isinf(merged), torch.zeros_like(merged), merged)

    def forward(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """
        :param torch.Tensor x: ``(B,) + input_shape``.
        :param torch.Tensor gates: ``(E,)`` or ``batch + (1, E)``.
        :returns: the last block's output flattened, ``(B, O)`` or ``batch + (B, O)``.
        """
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.input_shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected shape (batch,) + {self.input_shape}, got {shape}")
        flat_gates, batch = self._flatten_gates(gates)
        num_draws, batch_size = flat_gates.shape[0], x.shape[0]
        # One forward pass over draws x data: each example row carries its draw's gates.
        xs = x.unsqueeze(0).expand((num_draws,) + x.shape).reshape((-1,) + x.shape[1:])
        row_gates = flat_gates.repeat_interleave(batch_size, 0)
        nodes = [xs]
        for k, block in enumerate(self.blocks, start=1):
            size = self.target_sizes[k - 1]
            inputs = [self._resize(v, size) for v in nodes]
            out = block(self._merge(k, inputs, row_gates))
            nodes.append(out.view(out.shape + (1, 1)) if out.dim() == 2 else out)
        out = nodes[-1].flatten(1)
        return self._restore(out.view(num_draws, batch_size, -1), batch)

    def extra_repr(self) -> str:
        return (
            f"input_shape={self.input_shape}, num_blocks={self.num_blocks}, "
            f"num_gates={self.num_gates}, merge={self.merge!r}, gate_per={self.gate_per!r}, "
            f"resize={self.resize!r}, gate={self.gate!r}, likelihood={self.likelihood!r}"
        )


def _check_arguments(
    blocks: Iterable[torch.nn.Module],
    input_shape: Sequence[int],
    merge: str,
    gate_per: str,
    resize: str,
    squeeze_channels: int | None,
) -> tuple[list[torch.nn.Module], tuple[int, ...]]:
    """The constructor's argument checks; returns ``blocks`` as a list and ``input_shape`` as a
    tuple of ints."""
    if merge not in MERGE_MODES:
        raise ValueError(f"merge: expected one of {MERGE_MODES}, got {merge!r}")
    if gate_per not in GATE_GRANULARITY:
        raise ValueError(f"gate_per: expected one of {GATE_GRANULARITY}, got {gate_per!r}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize: expected one of {RESIZE_MODES}, got {resize!r}")
    blocks = list(blocks)
    if not blocks or not all(isinstance(b, torch.nn.Module) for b in blocks):
        raise TypeError("blocks: expected a non-empty sequence of torch.nn.Module")
    if squeeze_channels is not None and merge != "squeeze":
        raise ValueError("squeeze_channels: only meaningful with merge='squeeze'")
    if squeeze_channels is not None and not (
        isinstance(squeeze_channels, int) and squeeze_channels > 0
    ):
        raise ValueError(f"squeeze_channels: expected a positive int, got {squeeze_channels!r}")
    return blocks, _check_input_shape(input_shape)


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """``input_shape`` as a tuple of three positive ints."""
    dims = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    if len(dims) != 3 or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and int(s) > 0 for s in dims
    ):
        raise ValueError(
            f"input_shape: expected (channels, height, width) positive ints, got {input_shape!r}"
        )
    return tuple(int(s) for s in dims)


def _lay_out(
    blocks: Sequence[torch.nn.Module],
    input_shape: tuple[int, ...],
    merge: str,
    gate_per: str,
    squeeze_channels: int | None,
) -> tuple[list[tuple[int, ...]], list[tuple[int, int]], GateSlices, list[torch.nn.Module]]:
    """
    Dry run on zeros: every node's ``(C, H, W)``, each block's target size, the gate slice of
    every connection (``slices[k - 1][j]``: the gates of ``j -> k``) and the 1x1 reductions of
    ``merge="squeeze"``.
    """
    shapes = [input_shape]
    sizes: list[tuple[int, int]] = []
    slices: GateSlices = []
    reducers: list[torch.nn.Module] = []
    start = 0
    for k, block in enumerate(blocks, start=1):
        preds = shapes[:k]
        size = (min(s[1] for s in preds), min(s[2] for s in preds))
        widths = [s[0] for s in preds]
        if merge == "concat":
            in_channels = sum(widths)
        elif merge == "squeeze":
            in_channels = squeeze_channels or max(widths)
            reducers.append(torch.nn.Conv2d(sum(widths), in_channels, 1))
        else:
            in_channels = max(widths)
        row = []
        for c in widths:
            stop = start + (1 if gate_per == "layer" else c)
            row.append((start, stop))
            start = stop
        slices.append(row)
        sizes.append(size)
        was_training = block.training
        block.train(False)
        with torch.no_grad():
            out = block(torch.zeros((2, in_channels) + size))
        block.train(was_training)
        if out.dim() == 2:
            shapes.append((out.shape[1], 1, 1))
        elif out.dim() == 4:
            shapes.append(tuple(out.shape[1:]))
        else:
            raise ValueError(
                f"blocks[{k - 1}]: expected an output of shape (B, F) or (B, C, H, W), "
                f"got {tuple(out.shape)}"
            )
    return shapes, sizes, slices, reducers
