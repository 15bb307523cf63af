"""Shared machinery of the layer-norm LSTM and the HyperLSTM: the ``nn.LSTM`` calling
convention (layouts, unbatched input, stacked layers, states) and the layer-normalised
LSTM update both cells end with."""

import math
from collections.abc import Sequence
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# A layer-norm LSTM cell's normalisation parameters: the gate gains and shifts ``(4, H)`` (as
# :func:`fused_gate_affine` returns them) and the cell norm's weight and bias ``(H,)``.
NormParameters = tuple[Tensor, Tensor, Tensor, Tensor]

_CONVERSIONS = {
    torch.float32: ".float()",
    torch.float64: ".double()",
    torch.float16: ".half()",
    torch.bfloat16: ".bfloat16()",
}


def check_tensor(name: str, value: Any, like: Tensor) -> None:
    """Raise a ``TypeError``/``ValueError`` naming ``name`` unless ``value`` is a tensor of
    ``like``'s dtype on ``like``'s device (the module's parameters or the checked input)."""
    if not isinstance(value, torch.Tensor):
        kind, hint = type(value).__name__, ""
        if type(value).__module__ == "numpy":
            kind = f"numpy.{kind}"
            hint = f"; convert it with torch.as_tensor(..., dtype={like.dtype})"
        raise TypeError(f"{name} must be a torch.Tensor, got {kind}{hint}")
    if value.dtype != like.dtype:
        conversion = _CONVERSIONS.get(like.dtype, f".to({like.dtype})")
        raise TypeError(
            f"{name} must have dtype {like.dtype} (the module's parameters), got "
            f"{value.dtype}; convert it with {conversion}, or the module with "
            f".to({value.dtype}) if it is floating point"
        )
    if value.device != like.device:
        raise ValueError(
            f"{name} must be on {like.device} (the module's device), got {value.device}"
        )


def init_lstm_weights(weight_ih: Tensor, weight_hh: Tensor, hidden_size: int) -> None:
    """``nn.LSTM``'s uniform init for the input weights; each gate's recurrent block
    orthogonal, as in the reference HyperLSTM cell (Ha et al. 2016, hardmaru/supercell)."""
    bound = 1.0 / math.sqrt(hidden_size)
    nn.init.uniform_(weight_ih, -bound, bound)
    with torch.no_grad():
        for block in weight_hh.view(4, hidden_size, -1):
            nn.init.orthogonal_(block)


def add_layer_norm_lstm_parameters(
    cell: nn.Module, input_size: int, hidden_size: int, bias: bool
) -> None:
    """Register the parameters of a layer-norm LSTM cell on ``cell``: input and recurrent
    weights (initialised by :func:`init_lstm_weights`), the optional bias, and the layer-norm
    gains and offsets of the four gates and of the cell state."""
    cell.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
    cell.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
    # torch's stub types Module.__setattr__ values as Tensor | Module; None is valid at run time.
    cell.bias = nn.Parameter(torch.zeros(4 * hidden_size)) if bias else None  # type: ignore[assignment]
    cell.gate_norm_weight = nn.Parameter(torch.ones(4, hidden_size))
    cell.gate_norm_bias = nn.Parameter(torch.zeros(4, hidden_size))
    cell.cell_norm_weight = nn.Parameter(torch.ones(hidden_size))
    cell.cell_norm_bias = nn.Parameter(torch.zeros(hidden_size))
    init_lstm_weights(cell.weight_ih, cell.weight_hh, hidden_size)


def fused_gate_affine(gamma: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """Fold the forget bias and ``tanh`` into the layer-norm affine of the gates.

    The gates are ``i, f, g, o`` (``nn.LSTM``'s order) with per-gate layer-norm gains
    ``gamma`` and shifts ``beta`` of shape ``(4, H)``. Since ``tanh(a) = 2 sigmoid(2a) - 1``,
    doubling the ``g`` row lets one ``sigmoid`` cover all four gates, and the forget bias 1,
    added after layer norm, is just ``beta_f + 1``.
    """
    scale = gamma.new_tensor([1.0, 1.0, 2.0, 1.0]).unsqueeze(-1)
    shift = gamma.new_tensor([0.0, 1.0, 0.0, 0.0]).unsqueeze(-1)
    return gamma * scale, (beta + shift) * scale


def layer_norm_lstm_update(
    pre: Tensor,
    c: Tensor,
    gamma: Tensor,
    beta: Tensor,
    cell_weight: Tensor,
    cell_bias: Tensor,
    eps: float,
    dropout: float,
    training: bool,
) -> tuple[Tensor, Tensor]:
    """One layer-normalised LSTM update from gate pre-activations ``pre`` of shape (B, 4, H).

    ``gamma, beta`` come from :func:`fused_gate_affine`. Returns ``(h, c)`` with
    ``c' = sigma(f) c + sigma(i) drop(tanh(g))`` (recurrent dropout without memory loss,
    Semeniuta et al. 2016: only the candidate is dropped, so the cell state is never
    erased) and ``h' = sigma(o) tanh(LN(c'))``; the stored ``c'`` is not normalised.
    """
    hidden = pre.shape[-1]
    gates = torch.sigmoid(torch.addcmul(beta, F.layer_norm(pre, (hidden,), eps=eps), gamma))
    i, f, g, o = gates.unbind(1)
    g = 2.0 * g - 1.0
    if dropout > 0.0 and training:
        g = F.dropout(g, dropout, training=True)
    c = torch.addcmul(f * c, i, g)
    h = o * torch.tanh(F.layer_norm(c, (hidden,), cell_weight, cell_bias, eps))
    return h, c


class RecurrentCell(Protocol):
    """What :class:`StackedRecurrent` needs of a layer's cell: the input projection of a
    whole sequence, and the scan over it from a state (returning the outputs, the final
    state and optionally more)."""

    def input_projection(self, x: Tensor) -> Any: ...

    def scan(self, x_proj: Any, state: Sequence[Tensor]) -> tuple[Any, ...]: ...


class StackedRecurrent(nn.Module):
    """Base of stacked recurrent layers called like ``nn.LSTM``.

    Subclasses set ``self.cells`` (one per layer, each with ``input_projection(x)`` and
    ``scan(x_proj, state)``), ``state_names`` and ``state_sizes`` (the name and width of each
    state component, e.g. ``("h", "c")`` and ``(H, H)``). :meth:`forward` checks the input and
    state (:meth:`_prepare`), runs the layers (:meth:`_run_layers`, dropout between them, each
    layer by :meth:`_run_layer`) and brings the output and final states back to the caller's
    layout (:meth:`_finish`); a subclass overrides :meth:`_run_layer` to run a layer
    differently, or :meth:`forward` to return more.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)

    state_names: tuple[str, ...] = ()
    cells: nn.ModuleList

    def state_sizes(self) -> tuple[int, ...]:
        raise NotImplementedError

    # How a state may be passed, for error messages.
    state_help = "a pair (h_0, c_0)"

    def _prepare(
        self, input: Tensor, state: Sequence[Tensor] | None
    ) -> tuple[Tensor, list[tuple[Tensor, ...]], bool]:
        """Check ``input`` and ``state`` and bring them to the time-major layout: returns
        ``x`` of shape ``(T, B, input_size)``, the per-layer states and whether the input was
        unbatched."""
        if isinstance(input, nn.utils.rnn.PackedSequence):
            raise TypeError(f"{type(self).__name__} does not take PackedSequence input; pad it")
        parameter = next(self.parameters())
        check_tensor("input", input, parameter)
        if input.dim() not in (2, 3):
            raise ValueError(
                f"input must have shape (T, B, {self.input_size}), (B, T, {self.input_size}) "
                f"with batch_first=True, or unbatched (T, {self.input_size}); "
                f"got {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"input must have last dimension input_size={self.input_size}, "
                f"got shape {tuple(input.shape)}"
            )
        unbatched = input.dim() == 2
        if unbatched:
            x = input.unsqueeze(1)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        if x.shape[0] == 0:
            raise ValueError(
                f"input must have at least one time step, got shape {tuple(input.shape)}"
            )
        batch = x.shape[1]
        sizes = self.state_sizes()
        if state is None:
            state = tuple(x.new_zeros(self.num_layers, batch, size) for size in sizes)
        else:
            state = self._check_state(state, batch, sizes, unbatched, x)
        per_layer = [tuple(s[layer] for s in state) for layer in range(self.num_layers)]
        return x, per_layer, unbatched

    def _check_state(
        self,
        state: Sequence[Tensor],
        batch: int,
        sizes: tuple[int, ...],
        unbatched: bool,
        x: Tensor,
    ) -> list[Tensor]:
        if not isinstance(state, (tuple, list)) or len(state) not in (2, len(sizes)):
            kind = type(state).__name__
            if isinstance(state, (tuple, list)):
                kind += f" of length {len(state)}"
            raise TypeError(f"state must be {self.state_help}, got {kind}")
        state = list(state)
        # (h, c) alone: the remaining components (the hyper cell's) start at zero.
        for size in sizes[len(state) :]:
            shape = (self.num_layers, size) if unbatched else (self.num_layers, batch, size)
            state.append(x.new_zeros(shape))
        checked = []
        for name, s, size in zip(self.state_names, state, sizes):
            check_tensor(f"state {name}", s, x)
            expected = (self.num_layers, size) if unbatched else (self.num_layers, batch, size)
            if tuple(s.shape) != expected:
                raise ValueError(f"state {name} must have shape {expected}, got {tuple(s.shape)}")
            checked.append(s.unsqueeze(1) if unbatched else s)
        return checked

    def forward(
        self, input: Tensor, state: Sequence[Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """``output, (h_n, c_n) = m(input, state)``, as with ``nn.LSTM``."""
        x, states, unbatched = self._prepare(input, state)
        output, finals, _ = self._run_layers(x, states)
        return self._finish(output, finals, unbatched)

    def _run_layers(
        self, x: Tensor, states: Sequence[tuple[Tensor, ...]]
    ) -> tuple[Tensor, list[tuple[Tensor, ...]], list[Any]]:
        """Every layer in turn over ``x`` ``(T, B, input_size)``, each from its entry of
        ``states``, with dropout on the outputs of all but the last: returns the last layer's
        output, each layer's final state and what each :meth:`_run_layer` returned besides."""
        finals, extras = [], []
        for layer, state in enumerate(states):
            if layer > 0:
                x = F.dropout(x, self.dropout, self.training)
            x, final, extra = self._run_layer(layer, x, state)
            finals.append(final)
            extras.append(extra)
        return x, finals, extras

    def _run_layer(
        self, layer: int, x: Tensor, state: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...], Any]:
        """Layer ``layer`` over ``x`` ``(T, B, width)`` from its ``state``: its output
        ``(T, B, hidden_size)``, its final state and whatever else the cell's ``scan``
        returns (None if nothing)."""
        cell = cast(RecurrentCell, self.cells[layer])
        output, final, *extra = cell.scan(cell.input_projection(x), state)
        return output, final, extra[0] if extra else None

    def _finish(
        self, output: Tensor, final_states: Sequence[tuple[Tensor, ...]], unbatched: bool
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        state = tuple(torch.stack(parts) for parts in zip(*final_states))
        if unbatched:
            return output.squeeze(1), tuple(s.squeeze(1) for s in state)
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, state

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s
