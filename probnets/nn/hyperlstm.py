"""HyperLSTM (Ha, Dai, Le 2016, "HyperNetworks", arXiv:1609.09106, section 3.2 and
appendix A.2): a small LSTM that rescales the weights of a big one at every step."""

import torch
from torch import nn
from torch.nn import functional as F

from ._recurrent import (
    StackedRecurrent,
    fused_gate_affine,
    add_layer_norm_lstm_parameters,
    layer_norm_lstm_update,
)
from .layer_norm_lstm import LayerNormLSTMCell

__all__ = ["HyperLSTMCell", "HyperLSTM"]

# Ha et al.'s initial weight scaling d (from recurrent batch norm, Cooijmans et al. 2016).
_INITIAL_SCALE = 0.1


class HyperLSTMCell(nn.Module):
    r"""The HyperLSTM cell: a layer-norm LSTM whose weights a smaller hyper LSTM rescales.

    The hyper cell (a :class:`LayerNormLSTMCell` of width :math:`N_h`) reads
    :math:`\hat x_t = [x_t; h_{t-1}]` and emits :math:`\hat h_t`. For each gate
    :math:`k \in \{i, f, g, o\}` linear maps produce embeddings (width :math:`N_z`) and from
    them the weight scalings and a bias correction (paper eqs. 10-12, the memory-efficient
    form in which the generated weights are never materialised):

    .. math::

        z^k_x = W^k_{\hat h x} \hat h_t + b^k_{\hat h x}, \quad
        z^k_h = W^k_{\hat h h} \hat h_t + b^k_{\hat h h}, \quad
        z^k_b = W^k_{\hat h b} \hat h_t \\
        d^k_x = W^k_{xz} z^k_x, \quad d^k_h = W^k_{hz} z^k_h, \quad
        \delta^k = W^k_{bz} z^k_b \\
        a_k = d^k_x \odot (W^k_x x_t) + d^k_h \odot (W^k_h h_{t-1}) + b_k + \delta^k

    so :math:`d^k_h \odot (W^k_h h)` is :math:`h` multiplied by the row-scaled matrix
    :math:`\mathrm{diag}(d^k_h) W^k_h`. The main update is then the layer-norm LSTM of
    :class:`LayerNormLSTMCell` on :math:`a` (forget bias 1 after layer norm,
    :math:`h_t = \sigma(\hat a_o) \odot \tanh(\mathrm{LN}(c_t))`, stored :math:`c_t`
    unnormalised, recurrent dropout without memory loss on the candidate).

    Initialisation follows the reference cell (hardmaru/supercell): :math:`W_{\hat h x},
    W_{\hat h h} = 0` with biases 1, so :math:`z_x = z_h = 1`; :math:`W_{xz}, W_{hz}` constant
    :math:`0.1 / N_z`, so :math:`d_x = d_h = 0.1`; :math:`W_{\hat h b} \sim \mathcal N(0,
    0.01^2)` and :math:`W_{bz} = 0`, so :math:`\delta = 0`; :math:`b = 0`. Hence at
    initialisation :math:`a = 0.1 (W_x x_t + W_h h_{t-1})` whatever the hyper cell does, and
    because layer norm is scale invariant the cell computes exactly a
    :class:`LayerNormLSTMCell` with the same :math:`W_x, W_h` and layer-norm epsilon
    :math:`100 \epsilon` -- at every step, until training moves :math:`W_{\hat h \cdot}` or
    :math:`W_{\cdot z}`.

    :param int input_size: width of :math:`x_t`.
    :param int hidden_size: width of the main state.
    :param int hyper_size: width :math:`N_h` of the hyper LSTM (paper: 128).
    :param int hyper_embedding_size: :math:`N_z` (paper: 16 for character models).
    :param bool bias: learn the main bias :math:`b` (initialised at 0).
    :param float recurrent_dropout: dropout probability on the main cell's candidate.
    :param float eps: layer-norm epsilon.
    """

    def __init__(self, input_size, hidden_size, hyper_size=128, hyper_embedding_size=16,
                 bias=True, recurrent_dropout=0.0, eps=1e-5):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("hyper_size", hyper_size),
                            ("hyper_embedding_size", hyper_embedding_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ValueError(f"recurrent_dropout must be in [0, 1), got {recurrent_dropout!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.hyper_size = hyper_size
        self.hyper_embedding_size = hyper_embedding_size
        self.recurrent_dropout = float(recurrent_dropout)
        self.eps = eps
        H, Nz = hidden_size, hyper_embedding_size

        add_layer_norm_lstm_parameters(self, input_size, H, bias)

        self.hyper_cell = LayerNormLSTMCell(input_size + H, hyper_size, eps=eps)
        # Rows: 4 gates x (input scale z_x, recurrent scale z_h, bias z_b), Nz each.
        self.embedding_weight = nn.Parameter(torch.zeros(12 * Nz, hyper_size))
        self.embedding_bias = nn.Parameter(torch.ones(8 * Nz))  # z_b has no bias
        self.scale_weight = nn.Parameter(torch.full((12, Nz, H), _INITIAL_SCALE / Nz))
        with torch.no_grad():
            self.embedding_weight[8 * Nz:].normal_(0.0, 0.01)
            self.scale_weight[8:].zero_()

    def input_projection(self, x):
        """Parts that depend on ``x`` only, for a whole sequence at once: ``W_x x`` for the
        main cell and the hyper cell's ``W x`` (its input is ``[x; h]``)."""
        main = F.linear(x, self.weight_ih)
        hyper = F.linear(x, self.hyper_cell.weight_ih[:, : self.input_size], self.hyper_cell.bias)
        return main, hyper

    def _embedding_bias(self):
        return torch.cat([self.embedding_bias, self.embedding_bias.new_zeros(4 * self.hyper_embedding_size)])

    def scales(self, hyper_h, embedding_bias=None):
        """``(d_x, d_h, delta)``, each of shape ``(..., 4, H)``, from hyper outputs ``(..., N_h)``."""
        if embedding_bias is None:
            embedding_bias = self._embedding_bias()
        z = F.linear(hyper_h, self.embedding_weight, embedding_bias)
        z = z.view(*hyper_h.shape[:-1], 12, self.hyper_embedding_size)
        d = torch.einsum("...gk,gkh->...gh", z, self.scale_weight)
        return d[..., 0:4, :], d[..., 4:8, :], d[..., 8:12, :]

    def scan(self, x_proj, state):
        """Run over projected inputs (from :meth:`input_projection`, leading dims ``(T, B)``).

        :param tuple state: ``(h, c, hyper_h, hyper_c)``.
        :returns: outputs ``(T, B, H)``, the final state, and the hyper outputs
            ``(T, B, N_h)`` (for :meth:`modulation`).
        """
        x_main, x_hyper = x_proj
        h, c, hh, hc = state
        H, Nh, Nz = self.hidden_size, self.hyper_size, self.hyper_embedding_size
        hyper = self.hyper_cell
        gamma, beta = fused_gate_affine(self.gate_norm_weight, self.gate_norm_bias)
        hgamma, hbeta = fused_gate_affine(hyper.gate_norm_weight, hyper.gate_norm_bias)
        # One matmul per step for everything that reads h_{t-1}: the main recurrent weights
        # and the h-part of the hyper cell's input weights.
        T, B = x_hyper.shape[:2]
        # One matmul per step for everything that reads h_{t-1}: the main recurrent weights
        # and the h-part of the hyper cell's input weights.
        w_h = torch.cat([self.weight_hh, hyper.weight_ih[:, self.input_size:]]).t()
        w_hyper = hyper.weight_hh.t()
        w_z = self.embedding_weight.t()
        z_bias = self._embedding_bias()
        bias = None if self.bias is None else self.bias.view(4, H)
        # unbind, not indexing: its backward stacks the step gradients once instead of
        # scattering each into a full-size zero tensor.
        x_main = x_main.view(T, B, 4, H).unbind(0)
        x_hyper = x_hyper.unbind(0)
        outputs, hyper_outputs = [], []
        for t in range(T):
            # split, not slicing: the backward is one cat, not zero-filled buffers per slice.
            rec_main, rec_hyper = torch.mm(h, w_h).split([4 * H, 4 * Nh], dim=1)
            pre_hyper = torch.addmm(x_hyper[t] + rec_hyper, hh, w_hyper).view(B, 4, Nh)
            hh, hc = layer_norm_lstm_update(
                pre_hyper, hc, hgamma, hbeta, hyper.cell_norm_weight, hyper.cell_norm_bias,
                self.eps, 0.0, self.training,
            )
            z = torch.addmm(z_bias, hh, w_z).view(B, 12, Nz)
            d = torch.bmm(z.transpose(0, 1), self.scale_weight).transpose(0, 1)  # (B, 12, H)
            d_x, d_h, delta = d.split(4, dim=1)
            if bias is not None:
                delta = delta + bias
            pre = torch.addcmul(torch.addcmul(delta, d_x, x_main[t]), d_h, rec_main.view(B, 4, H))
            h, c = layer_norm_lstm_update(
                pre, c, gamma, beta, self.cell_norm_weight, self.cell_norm_bias,
                self.eps, self.recurrent_dropout, self.training,
            )
            outputs.append(h)
            hyper_outputs.append(hh)
        return torch.stack(outputs), (h, c, hh, hc), torch.stack(hyper_outputs)

    def modulation(self, hyper_outputs, initial_hyper_h):
        r"""Per-step size of the change of the recurrent weights, per gate.

        The effective recurrent matrix of gate :math:`k` at step :math:`t` is
        :math:`W^k_t = \mathrm{diag}(d^k_{h,t}) W^k_h`, so
        :math:`\|W^k_t - W^k_{t-1}\|_F = \|(d^k_{h,t} - d^k_{h,t-1}) \odot r^k\|_2` with
        :math:`r^k` the row norms of :math:`W^k_h`; :math:`d_{h,-1}` comes from the initial
        hyper state. This is the quantity of the "weight-changing activity" figures of
        seed 003.

        :param hyper_outputs: ``(T, B, N_h)`` from :meth:`scan`.
        :param initial_hyper_h: ``(B, N_h)``, the hyper ``h`` the scan started from.
        :returns: ``(T, B, 4)``, gates ordered ``i, f, g, o``.
        """
        hyper_h = torch.cat([initial_hyper_h.unsqueeze(0), hyper_outputs])
        _, d_h, _ = self.scales(hyper_h)
        row_norms = self.weight_hh.view(4, self.hidden_size, self.hidden_size).norm(dim=-1)
        return ((d_h[1:] - d_h[:-1]) * row_norms).norm(dim=-1)

    def forward(self, x, state=None):
        """One step: ``x`` of shape ``(B, input_size)``, ``state`` ``(h, c, hyper_h, hyper_c)``
        or None; returns the new state tuple (``state[0]`` is the output ``h``)."""
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape (B, {self.input_size}), got shape {tuple(x.shape)}")
        if state is None:
            B = x.shape[0]
            state = (x.new_zeros(B, self.hidden_size), x.new_zeros(B, self.hidden_size),
                     x.new_zeros(B, self.hyper_size), x.new_zeros(B, self.hyper_size))
        main, hyper = self.input_projection(x)
        _, state, _ = self.scan((main.unsqueeze(0), hyper.unsqueeze(0)), state)
        return state


class HyperLSTM(StackedRecurrent):
    r"""Stacked :class:`HyperLSTMCell` layers, called like ``nn.LSTM``.

    ``output, state = m(input, state=None)``: ``input`` is ``(T, B, input_size)``
    (``(B, T, input_size)`` if ``batch_first``) or unbatched ``(T, input_size)``; ``output``
    has ``nn.LSTM``'s shape; ``state = (h_n, c_n, hyper_h_n, hyper_c_n)`` where ``h_n, c_n``
    are shaped like ``nn.LSTM``'s (``(num_layers, B, hidden_size)``) and the hyper cells'
    states are ``(num_layers, B, hyper_size)``. Passing the returned state back in continues
    the sequence exactly (truncated back-propagation keeps the hyper state); a pair
    ``(h_0, c_0)`` starts the hyper cells from zero.

    With ``return_modulation=True`` a third value is returned: the per-step size of the
    change of each layer's recurrent weights (:meth:`HyperLSTMCell.modulation`), shaped
    ``(T, B, num_layers, 4)`` (``(B, T, num_layers, 4)`` if ``batch_first``).

    Speed (``examples/bench_hyperlstm.py``): input projections of all steps are computed at
    once; per step the main recurrent matmul is fused with the hyper cell's ``h``-input
    matmul and one ``sigmoid`` covers all gates. Forward + backward measured 3.8-5.1x
    ``nn.LSTM`` (T=100, B=32, H=256), against a 2.5x target: see ``guides/hypernets.md``.

    :param float dropout: dropout on each layer's output except the last (training only).
    :param float recurrent_dropout: see :class:`HyperLSTMCell`.
    """

    state_names = ("h", "c", "hyper_h", "hyper_c")

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, hyper_size=128, hyper_embedding_size=16, recurrent_dropout=0.0,
                 eps=1e-5):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout)
        self.hyper_size = hyper_size
        self.hyper_embedding_size = hyper_embedding_size
        self.cells = nn.ModuleList(
            HyperLSTMCell(input_size if layer == 0 else hidden_size, hidden_size, hyper_size,
                          hyper_embedding_size, bias, recurrent_dropout, eps)
            for layer in range(num_layers)
        )

    def state_sizes(self):
        H, Nh = self.hidden_size, self.hyper_size
        return (H, H, Nh, Nh)

    def forward(self, input, state=None, return_modulation=False):
        x, states, unbatched = self._prepare(input, state)
        finals, modulation = [], []
        for layer, cell in enumerate(self.cells):
            if layer > 0:
                x = F.dropout(x, self.dropout, self.training)
            x, final, hyper_outputs = cell.scan(cell.input_projection(x), states[layer])
            finals.append(final)
            if return_modulation:
                modulation.append(cell.modulation(hyper_outputs, states[layer][2]))
        output, state = self._finish(x, finals, unbatched)
        if not return_modulation:
            return output, state
        modulation = torch.stack(modulation, dim=2)  # (T, B, L, 4)
        if unbatched:
            modulation = modulation.squeeze(1)
        elif self.batch_first:
            modulation = modulation.transpose(0, 1)
        return output, state, modulation
