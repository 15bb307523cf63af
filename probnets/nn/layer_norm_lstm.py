"""Layer-normalised LSTM (Ba, Kiros, Hinton 2016), the HyperLSTM's baseline and its
inner hyper cell."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from probnets.data.validation import check_size

from ._recurrent import (
    StackedRecurrent,
    check_tensor,
    fused_gate_affine,
    add_layer_norm_lstm_parameters,
    layer_norm_lstm_update,
)

__all__ = ["LayerNormLSTMCell", "LayerNormLSTM"]


class LayerNormLSTMCell(nn.Module):
    r"""LSTM cell with layer norm on each gate and on the cell, as in Ha et al. 2016's
    reference cell (appendix A.2; hardmaru/supercell):

    .. math::

        a &= W_x x_t + W_h h_{t-1} + b, \quad a = (a_i, a_f, a_g, a_o) \\
        \hat a_k &= \gamma_k \odot \mathrm{LN}(a_k) + \beta_k \\
        c_t &= \sigma(\hat a_f + 1) \odot c_{t-1}
               + \sigma(\hat a_i) \odot \mathrm{drop}(\tanh \hat a_g) \\
        h_t &= \sigma(\hat a_o) \odot \tanh(\mathrm{LN}_c(c_t))

    The forget bias 1 is added after layer norm (before it, layer norm would remove it);
    ``drop`` is recurrent dropout without memory loss (Semeniuta et al. 2016), active only
    in training mode. Gates are ordered ``i, f, g, o`` like ``nn.LSTM``.

    :param int input_size: width of :math:`x_t`.
    :param int hidden_size: width of :math:`h_t` and :math:`c_t`.
    :param bool bias: learn :math:`b` (initialised at 0).
    :param float recurrent_dropout: probability of dropping a candidate unit.
    :param float eps: layer-norm epsilon.
    """

    # Layer-norm gains and shifts of the gates, kept as (4, H) matrices (see weight_decay.py).
    no_weight_decay = ("gate_norm_weight", "gate_norm_bias")

    # Registered by add_layer_norm_lstm_parameters.
    weight_ih: nn.Parameter
    weight_hh: nn.Parameter
    bias: nn.Parameter | None
    gate_norm_weight: nn.Parameter
    gate_norm_bias: nn.Parameter
    cell_norm_weight: nn.Parameter
    cell_norm_bias: nn.Parameter

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        recurrent_dropout: float = 0.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_size("input_size", input_size)
        check_size("hidden_size", hidden_size)
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ValueError(f"recurrent_dropout must be in [0, 1), got {recurrent_dropout!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.recurrent_dropout = float(recurrent_dropout)
        self.eps = eps
        add_layer_norm_lstm_parameters(self, input_size, hidden_size, bias)

    def input_projection(self, x: Tensor) -> Tensor:
        """``W_x x + b`` for inputs of any leading shape (done once for a whole sequence)."""
        return nn.functional.linear(x, self.weight_ih, self.bias)

    def scan(self, x_proj: Tensor, state: Sequence[Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run the cell over projected inputs ``x_proj`` of shape ``(T, B, 4H)``.

        :returns: outputs ``(T, B, H)`` and the final ``(h, c)``.
        """
        h, c = state
        gamma, beta = fused_gate_affine(self.gate_norm_weight, self.gate_norm_bias)
        w_hh = self.weight_hh.t()
        outputs = []
        for x_t in x_proj.unbind(0):
            pre = torch.addmm(x_t, h, w_hh).view(-1, 4, self.hidden_size)
            h, c = layer_norm_lstm_update(
                pre,
                c,
                gamma,
                beta,
                self.cell_norm_weight,
                self.cell_norm_bias,
                self.eps,
                self.recurrent_dropout,
                self.training,
            )
            outputs.append(h)
        return torch.stack(outputs), (h, c)

    def forward(self, x: Tensor, state: Sequence[Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """One step, like ``nn.LSTMCell``: ``x`` of shape ``(B, input_size)``, ``state`` a
        pair ``(h, c)`` of shape ``(B, hidden_size)`` or None; returns ``(h, c)``."""
        check_tensor("x", x, self.weight_ih)
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"x must have shape (B, {self.input_size}), got shape {tuple(x.shape)}"
            )
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        _, state = self.scan(self.input_projection(x).unsqueeze(0), state)
        return state


class LayerNormLSTM(StackedRecurrent):
    """Stacked :class:`LayerNormLSTMCell` layers with ``nn.LSTM``'s interface:
    ``output, (h_n, c_n) = m(input, state=None)``.

    :param float dropout: dropout on the outputs of every layer but the last (training only).
    :param float recurrent_dropout: see :class:`LayerNormLSTMCell`.
    """

    state_names = ("h", "c")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout)
        self.cells = nn.ModuleList(
            LayerNormLSTMCell(
                input_size if layer == 0 else hidden_size, hidden_size, bias, recurrent_dropout, eps
            )
            for layer in range(num_layers)
        )

    def state_sizes(self) -> tuple[int, int]:
        return (self.hidden_size, self.hidden_size)
