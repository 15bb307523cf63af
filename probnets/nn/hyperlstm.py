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


def _gate_norm(pre, gamma, beta, eps):
    """Layer norm per gate of pre-activations ``(B, 4, H)``, the fused affine and one
    ``sigmoid`` for all gates (see :func:`fused_gate_affine`); returns the normalised
    ``n`` too."""
    n = torch.native_layer_norm(pre, pre.shape[-1:], None, None, eps)[0]
    return n, torch.sigmoid(torch.addcmul(beta, n, gamma))


def _cell_norm(c, weight, bias, eps):
    """``(LN(c), tanh(weight LN(c) + bias))`` and the layer-norm statistics of ``c``."""
    nc, mean, rstd = torch.native_layer_norm(c, c.shape[-1:], None, None, eps)
    return nc, torch.tanh(torch.addcmul(bias, nc, weight)), mean, rstd


class _LayerNormLSTMStep:
    """Forward and hand-written backward of the layer-norm LSTM update of
    :func:`layer_norm_lstm_update`, for :class:`_HyperLSTMScan`.

    Per step only the gate pre-activations, the gate values and the (masked) candidate
    are kept; the layer norms are recomputed in the backward pass, which is cheaper on a CPU
    than writing and later re-reading fresh memory for them. The gradients of the affine
    parameters are accumulated in place.
    """

    def __init__(self, gamma, beta, cell_weight, cell_bias, eps):
        self.gamma, self.beta, self.eps = gamma, beta, eps
        self.cell_weight, self.cell_bias = cell_weight, cell_bias
        self.grads = None

    def zero_grads(self):
        """Fresh accumulators, once per backward pass (a graph kept with ``retain_graph``
        may be differentiated more than once)."""
        self.grads = [torch.zeros_like(self.gamma), torch.zeros_like(self.beta),
                      torch.zeros_like(self.cell_weight), torch.zeros_like(self.cell_bias)]

    def forward(self, pre, c, mask):
        _, s = _gate_norm(pre, self.gamma, self.beta, self.eps)
        i, f, g, o = s.unbind(1)
        g = 2.0 * g - 1.0  # tanh of the g pre-activation, see fused_gate_affine
        if mask is not None:
            g = g * mask
        c_new = torch.addcmul(f * c, i, g)
        h = o * _cell_norm(c_new, self.cell_weight, self.cell_bias, self.eps)[1]
        return h, c_new, (pre, s, g)

    def backward(self, dh, dc, saved, c, c_new, mask):
        """``dpre, dc_prev`` from ``dh, dc`` (gradients of the step's ``h`` and ``c``)."""
        pre, s, g = saved
        H = pre.shape[-1]
        i, f, _, o = s.unbind(1)
        nc, th, c_mean, c_rstd = _cell_norm(c_new, self.cell_weight, self.cell_bias, self.eps)
        dy = torch.ops.aten.tanh_backward(dh * o, th)
        self.grads[2].add_((dy * nc).sum(0))
        self.grads[3].add_(dy.sum(0))
        dc = dc + torch.ops.aten.native_layer_norm_backward(
            dy * self.cell_weight, c_new, (H,), c_mean, c_rstd, None, None,
            [True, False, False])[0]
        dg = dc * i
        if mask is not None:
            dg = dg * mask
        da = torch.ops.aten.sigmoid_backward(
            torch.stack([dc * g, dc * c, 2.0 * dg, dh * th], dim=1), s)
        n, mean, rstd = torch.native_layer_norm(pre, (H,), None, None, self.eps)
        self.grads[0].add_((da * n).sum(0))
        self.grads[1].add_(da.sum(0))
        dpre = torch.ops.aten.native_layer_norm_backward(
            da * self.gamma, pre, (H,), mean, rstd, None, None, [True, False, False])[0]
        return dpre, dc * f


class _HyperLSTMScan(torch.autograd.Function):
    """The whole recurrence of a :class:`HyperLSTMCell`, with a hand-written backward.

    Autograd would record ~35 small operations per step and replay each as a backward node
    with its bookkeeping and fresh buffers. Here the forward runs unrecorded and keeps only
    what the backward cannot cheaply recompute; the backward is one reverse loop in which
    every gradient of a parameter is accumulated in place (``addmm_``) and one matmul carries
    the gradient through everything that read ``h_{t-1}``.
    """

    @staticmethod
    def forward(ctx, x_main, x_hyper, h, c, hh, hc, w_h, w_hyper, w_z, z_bias, scale_weight,
                bias, gamma, beta, cell_weight, cell_bias, hgamma, hbeta, hcell_weight,
                hcell_bias, mask, eps):
        T, B = x_main.shape[:2]
        H, Nh = h.shape[-1], hh.shape[-1]
        Nz = scale_weight.shape[1]
        main = _LayerNormLSTMStep(gamma, beta, cell_weight, cell_bias, eps)
        hyper = _LayerNormLSTMStep(hgamma, hbeta, hcell_weight, hcell_bias, eps)
        w_h_t, w_hyper_t, w_z_t = w_h.t(), w_hyper.t(), w_z.t()
        bias = None if bias is None else bias.view(4, H)
        states = [(h, c, hh, hc)]
        saved = []
        for t in range(T):
            rec_main, rec_hyper = torch.mm(h, w_h_t).split([4 * H, 4 * Nh], dim=1)
            pre_hyper = torch.addmm(x_hyper[t] + rec_hyper, hh, w_hyper_t).view(B, 4, Nh)
            hh, hc, hyper_saved = hyper.forward(pre_hyper, hc, None)
            z = torch.addmm(z_bias, hh, w_z_t).view(B, 12, Nz)
            d_x, d_h, delta = torch.bmm(z.transpose(0, 1), scale_weight).transpose(0, 1).split(4, 1)
            if bias is not None:
                delta = delta + bias
            rec_main = rec_main.view(B, 4, H)
            pre = torch.addcmul(torch.addcmul(delta, d_x, x_main[t].view(B, 4, H)), d_h, rec_main)
            h, c, main_saved = main.forward(pre, c, None if mask is None else mask[t])
            states.append((h, c, hh, hc))
            saved.append((main_saved, hyper_saved, z, rec_main))
        ctx.main, ctx.hyper, ctx.states, ctx.saved = main, hyper, states, saved
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x_main, w_h, w_hyper, w_z, scale_weight, mask)
        outputs = torch.stack([s[0] for s in states[1:]])
        hyper_outputs = torch.stack([s[2] for s in states[1:]])
        # The final state is returned as copies: ctx keeps the originals in `states`, and an
        # output held by its own ctx is a reference cycle autograd never frees (every
        # training step would leak its saved tensors).
        return outputs, h.clone(), c.clone(), hh.clone(), hc.clone(), hyper_outputs

    @staticmethod
    def backward(ctx, d_outputs, dh, dc, dhh, dhc, d_hyper_outputs):
        x_main, w_h, w_hyper, w_z, scale_weight, mask = ctx.saved_tensors
        main, hyper, states = ctx.main, ctx.hyper, ctx.states
        main.zero_grads()
        hyper.zero_grads()
        T, B = x_main.shape[:2]
        H, Nh = states[0][0].shape[-1], states[0][2].shape[-1]
        Nz = scale_weight.shape[1]
        zero = x_main.new_zeros(())
        dh = zero if dh is None else dh
        dc = zero if dc is None else dc
        dhh = zero if dhh is None else dhh
        dhc = zero if dhc is None else dhc
        d_x_main = torch.empty_like(x_main)
        d_x_hyper = x_main.new_empty(T, B, 4 * Nh)
        d_w_h, d_w_hyper, d_w_z = torch.zeros_like(w_h), torch.zeros_like(w_hyper), torch.zeros_like(w_z)
        d_scale = torch.zeros_like(scale_weight)
        d_z_bias = w_z.new_zeros(12 * Nz)
        d_bias = x_main.new_zeros(4, H)
        scale_t = scale_weight.transpose(1, 2)
        for t in reversed(range(T)):
            (main_saved, hyper_saved, z, rec_main) = ctx.saved[t]
            h_prev, c_prev, hh_prev, hc_prev = states[t]
            _, c_new, hh_new, hc_new = states[t + 1]
            if d_outputs is not None:
                dh = dh + d_outputs[t]
            dpre, dc = main.backward(dh, dc, main_saved, c_prev, c_new,
                                     None if mask is None else mask[t])
            d_bias.add_(dpre.sum(0))
            d_x, d_h, _ = torch.bmm(z.transpose(0, 1), scale_weight).transpose(0, 1).split(4, 1)
            torch.mul(dpre, d_x, out=d_x_main[t].view(B, 4, H))
            # Gradients of d = (d_x, d_h, delta), gate-major for the per-gate matmuls.
            dd = torch.cat([dpre * x_main[t].view(B, 4, H), dpre * rec_main, dpre], 1).transpose(0, 1)
            d_scale.baddbmm_(z.transpose(0, 1).transpose(1, 2), dd)
            dz = torch.bmm(dd, scale_t).transpose(0, 1).reshape(B, 12 * Nz)
            d_z_bias.add_(dz.sum(0))
            d_w_z.addmm_(dz.t(), hh_new)
            dhh = torch.addmm(dhh, dz, w_z)
            if d_hyper_outputs is not None:
                dhh = dhh + d_hyper_outputs[t]
            dph, dhc = hyper.backward(dhh, dhc, hyper_saved, hc_prev, hc_new, None)
            dph = dph.view(B, 4 * Nh)
            d_x_hyper[t] = dph
            d_rec = torch.cat([(dpre * d_h).view(B, 4 * H), dph], 1)
            d_w_h.addmm_(d_rec.t(), h_prev)
            d_w_hyper.addmm_(dph.t(), hh_prev)
            dhh = torch.mm(dph, w_hyper)
            dh = torch.mm(d_rec, w_h)
        return (d_x_main, d_x_hyper, dh, dc, dhh, dhc, d_w_h, d_w_hyper, d_w_z, d_z_bias,
                d_scale, d_bias.view(4 * H) if ctx.has_bias else None, *main.grads,
                *hyper.grads, None, None)


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
        hyper = self.hyper_cell
        gamma, beta = fused_gate_affine(self.gate_norm_weight, self.gate_norm_bias)
        hgamma, hbeta = fused_gate_affine(hyper.gate_norm_weight, hyper.gate_norm_bias)
        # Everything that reads h_{t-1}: the main recurrent weights and the h-part of the
        # hyper cell's input weights, one matmul per step.
        w_h = torch.cat([self.weight_hh, hyper.weight_ih[:, self.input_size:]])
        mask = None
        if self.training and self.recurrent_dropout > 0.0:
            keep = 1.0 - self.recurrent_dropout
            mask = x_main.new_empty(*x_main.shape[:2], self.hidden_size).bernoulli_(keep) / keep
        outputs, h, c, hh, hc, hyper_outputs = _HyperLSTMScan.apply(
            x_main, x_hyper, *state, w_h, hyper.weight_hh, self.embedding_weight,
            self._embedding_bias(), self.scale_weight, self.bias, gamma, beta,
            self.cell_norm_weight, self.cell_norm_bias, hgamma, hbeta, hyper.cell_norm_weight,
            hyper.cell_norm_bias, mask, self.eps)
        return outputs, (h, c, hh, hc), hyper_outputs

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
