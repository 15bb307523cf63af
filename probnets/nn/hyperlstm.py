"""HyperLSTM (Ha, Dai, Le 2016, "HyperNetworks", arXiv:1609.09106, section 3.2 and
appendix A.2): a small LSTM that rescales the weights of a big one at every step."""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast, overload

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._recurrent import (
    NormParameters,
    StackedRecurrent,
    check_tensor,
    fused_gate_affine,
    add_layer_norm_lstm_parameters,
)
from ._hyperlstm_eager import scan_backward, scan_forward
from .layer_norm_lstm import LayerNormLSTMCell

__all__ = ["HyperLSTMCell", "HyperLSTM", "HyperLSTMState"]


class HyperLSTMState(tuple[Tensor, Tensor]):
    """The state a :class:`HyperLSTM` (or :class:`HyperLSTMCell`) returns: the pair
    ``(h, c)`` of ``nn.LSTM`` (``nn.LSTMCell``), so that ``out, (h_n, c_n) = m(x)`` works,
    carrying the hyper cells' state as the attributes ``hyper_h`` and ``hyper_c``.

    Passed back in, it continues the sequence exactly; a plain pair ``(h, c)`` starts the
    hyper cells from zero. ``state.detach()`` detaches all four tensors (truncated
    back-propagation); ``state.astuple()`` gives them as the plain tuple ``(h, c, hyper_h,
    hyper_c)``, for checkpoints loaded with ``weights_only=True``, and the modules take that
    tuple back as well.
    """

    hyper_h: Tensor
    hyper_c: Tensor

    def __new__(cls, h: Tensor, c: Tensor, hyper_h: Tensor, hyper_c: Tensor) -> "HyperLSTMState":
        state = super().__new__(cls, (h, c))
        state.hyper_h, state.hyper_c = hyper_h, hyper_c
        return state

    def __getnewargs__(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.astuple()

    def astuple(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(h, c, hyper_h, hyper_c)`` as a plain tuple."""
        return (self[0], self[1], self.hyper_h, self.hyper_c)

    def detach(self) -> "HyperLSTMState":
        """The same state with every tensor detached from the graph."""
        return HyperLSTMState(*(s.detach() for s in self.astuple()))

    def __repr__(self) -> str:
        return (
            f"HyperLSTMState(h={self[0]!r}, c={self[1]!r}, hyper_h={self.hyper_h!r}, "
            f"hyper_c={self.hyper_c!r})"
        )


def _flat_state(state: Sequence[Tensor] | None) -> Sequence[Tensor] | None:
    """A state as passed in, with a :class:`HyperLSTMState` opened to its four tensors."""
    return state.astuple() if isinstance(state, HyperLSTMState) else state


def default_hyper_size(hidden_size: int) -> int:
    """The default width of the hyper cell: ``hidden_size // 8`` (at least 4), about the
    paper's proportion of 128 hyper units beside 1000 main units."""
    return max(4, hidden_size // 8)


# The four state tensors (h, c, hyper_h, hyper_c) and what the functional scan keeps of a step
# for its backward pass: the two cells' saved tensors of _lstm_forward, z and W_h h.
_State = tuple[Tensor, Tensor, Tensor, Tensor]
_StepSaved = tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor, Tensor]

# Ha et al.'s initial weight scaling d (from recurrent batch norm, Cooijmans et al. 2016).
_INITIAL_SCALE = 0.1


def _lstm_forward(
    pre: Tensor, c: Tensor, norm: NormParameters, mask: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """The layer-norm LSTM update of :func:`layer_norm_lstm_update` on pre-activations
    ``(B, 4, H)``; ``norm = (gamma, beta, cell_weight, cell_bias)``. Returns ``h, c_new``
    and what :func:`_lstm_backward` needs: the pre-activations, their layer norm and its
    statistics, the gate values, the (masked) candidate, ``tanh`` of the normalised cell
    and the cell's layer-norm statistics (kept, so the backward pass recomputes nothing)."""
    gamma, beta, cell_weight, cell_bias = norm
    H = pre.shape[-1]
    n, mean, rstd = torch.native_layer_norm(pre, (H,), None, None, eps)
    s = torch.sigmoid(torch.addcmul(beta, n, gamma))
    i, f, g, o = s.unbind(1)
    g = 2.0 * g - 1.0  # tanh of the g pre-activation, see fused_gate_affine
    if mask is not None:
        g = g * mask
    c_new = torch.addcmul(f * c, i, g)
    y, c_mean, c_rstd = torch.native_layer_norm(c_new, (H,), cell_weight, cell_bias, eps)
    th = torch.tanh(y)
    return o * th, c_new, (pre, n, mean, rstd, s, g, th, c_mean, c_rstd)


def _lstm_backward(
    dh: Tensor,
    dc: Tensor,
    saved: tuple[Tensor, ...],
    c: Tensor,
    c_new: Tensor,
    norm: NormParameters,
    grads: NormParameters,
    mask: Tensor | None,
) -> tuple[Tensor, Tensor, NormParameters]:
    """Hand-written backward of :func:`_lstm_forward`: ``dpre, dc_prev`` from ``dh, dc``,
    and ``grads`` (of ``norm``'s four tensors) plus this step's contribution."""
    pre, n, mean, rstd, s, g, th, c_mean, c_rstd = saved
    gamma, _, cell_weight, cell_bias = norm
    H = pre.shape[-1]
    i, f, _, o = s.unbind(1)
    dy = torch.ops.aten.tanh_backward(dh * o, th)
    d_c, d_cell_weight, d_cell_bias = torch.ops.aten.native_layer_norm_backward(
        dy, c_new, (H,), c_mean, c_rstd, cell_weight, cell_bias, [True, True, True]
    )
    dc = dc + d_c
    dg = dc * i
    if mask is not None:
        dg = dg * mask
    da = torch.ops.aten.sigmoid_backward(torch.stack([dc * g, dc * c, 2.0 * dg, dh * th], dim=1), s)
    d_gamma = grads[0] + (da * n).sum(0)
    d_beta = grads[1] + da.sum(0)
    dpre = torch.ops.aten.native_layer_norm_backward(
        da * gamma, pre, (H,), mean, rstd, None, None, [True, False, False]
    )[0]
    return dpre, dc * f, (d_gamma, d_beta, grads[2] + d_cell_weight, grads[3] + d_cell_bias)


def _scan_forward_step(
    h: Tensor,
    c: Tensor,
    hh: Tensor,
    hc: Tensor,
    x_main: Tensor,
    x_hyper: Tensor,
    w_h_t: Tensor,
    w_hyper_t: Tensor,
    w_z_t: Tensor,
    z_bias: Tensor,
    scale_weight: Tensor,
    bias: Tensor | None,
    norm: NormParameters,
    hyper_norm: NormParameters,
    mask: Tensor | None,
    hyper_mask: Tensor | None,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, _StepSaved]:
    """One step of :class:`_HyperLSTMScan`'s forward pass: the new state and what the
    backward pass keeps of this step."""
    B, H = h.shape
    Nh, Nz = hh.shape[-1], scale_weight.shape[1]
    rec_main, rec_hyper = torch.mm(h, w_h_t).split([4 * H, 4 * Nh], dim=1)
    pre_hyper = torch.addmm(x_hyper + rec_hyper, hh, w_hyper_t).view(B, 4, Nh)
    hh, hc, hyper_saved = _lstm_forward(pre_hyper, hc, hyper_norm, hyper_mask, eps)
    z = torch.addmm(z_bias, hh, w_z_t).view(B, 12, Nz)
    d_x, d_h, delta = torch.bmm(z.transpose(0, 1), scale_weight).transpose(0, 1).split(4, 1)
    if bias is not None:
        delta = delta + bias
    rec_main = rec_main.view(B, 4, H)
    pre = torch.addcmul(torch.addcmul(delta, d_x, x_main.view(B, 4, H)), d_h, rec_main)
    h, c, main_saved = _lstm_forward(pre, c, norm, mask, eps)
    return h, c, hh, hc, (main_saved, hyper_saved, z, rec_main)


def _scan_backward_step(
    dh: Tensor,
    dc: Tensor,
    dhh: Tensor,
    dhc: Tensor,
    saved: _StepSaved,
    c_prev: Tensor,
    c_new: Tensor,
    hc_prev: Tensor,
    hc_new: Tensor,
    x_main: Tensor,
    w_h: Tensor,
    w_hyper: Tensor,
    w_z: Tensor,
    scale_weight: Tensor,
    norm: NormParameters,
    hyper_norm: NormParameters,
    norm_grads: NormParameters,
    hyper_norm_grads: NormParameters,
    d_bias: Tensor,
    d_z_bias: Tensor,
    mask: Tensor | None,
    hyper_mask: Tensor | None,
    eps: float,
) -> tuple[Any, ...]:
    """One step of :class:`_HyperLSTMScan`'s backward pass, without the weight-gradient
    matmuls (:func:`_scan_backward_chunk` does those once per chunk). ``dh, dhh`` include
    the gradients of this step's outputs. Returns the gradients flowing to step ``t - 1``,
    this step's input gradients, the operands of the weight-gradient matmuls and the
    updated small accumulators."""
    main_saved, hyper_saved, z, rec_main = saved
    B, H = dh.shape
    Nh = dhh.shape[-1]
    dpre, dc, norm_grads = _lstm_backward(dh, dc, main_saved, c_prev, c_new, norm, norm_grads, mask)
    d_bias = d_bias + dpre.sum(0)
    d_x, d_h, _ = torch.bmm(z.transpose(0, 1), scale_weight).transpose(0, 1).split(4, 1)
    d_x_main = (dpre * d_x).view(B, 4 * H)
    # Gradients of d = (d_x, d_h, delta), gate-major for the per-gate matmuls.
    dd = torch.cat([dpre * x_main.view(B, 4, H), dpre * rec_main, dpre], 1).transpose(0, 1)
    dz = torch.bmm(dd, scale_weight.transpose(1, 2)).transpose(0, 1).reshape(B, -1)
    d_z_bias = d_z_bias + dz.sum(0)
    dhh = torch.addmm(dhh, dz, w_z)
    dph, dhc, hyper_norm_grads = _lstm_backward(
        dhh, dhc, hyper_saved, hc_prev, hc_new, hyper_norm, hyper_norm_grads, hyper_mask
    )
    dph = dph.view(B, 4 * Nh)
    d_rec = torch.cat([(dpre * d_h).view(B, 4 * H), dph], 1)
    dhh = torch.mm(dph, w_hyper)
    dh = torch.mm(d_rec, w_h)
    return (
        dh,
        dc,
        dhh,
        dhc,
        d_x_main,
        dph,
        d_rec,
        dd,
        dz,
        norm_grads,
        hyper_norm_grads,
        d_bias,
        d_z_bias,
    )


def _scan_forward_chunk(
    h: Tensor,
    c: Tensor,
    hh: Tensor,
    hc: Tensor,
    x_main: Tensor,
    x_hyper: Tensor,
    w_h_t: Tensor,
    w_hyper_t: Tensor,
    w_z_t: Tensor,
    z_bias: Tensor,
    scale_weight: Tensor,
    bias: Tensor | None,
    norm: NormParameters,
    hyper_norm: NormParameters,
    mask: Tensor | None,
    hyper_mask: Tensor | None,
    eps: float,
) -> tuple[list[_State], list[_StepSaved]]:
    """``len(x_main)`` consecutive steps of :func:`_scan_forward_step`: the state after each
    step and what the backward pass keeps of each."""
    states, saved = [], []
    for t in range(x_main.shape[0]):
        h, c, hh, hc, step_saved = _scan_forward_step(
            h,
            c,
            hh,
            hc,
            x_main[t],
            x_hyper[t],
            w_h_t,
            w_hyper_t,
            w_z_t,
            z_bias,
            scale_weight,
            bias,
            norm,
            hyper_norm,
            None if mask is None else mask[t],
            None if hyper_mask is None else hyper_mask[t],
            eps,
        )
        states.append((h, c, hh, hc))
        saved.append(step_saved)
    return states, saved


def _scan_backward_chunk(
    dh: Tensor,
    dc: Tensor,
    dhh: Tensor,
    dhc: Tensor,
    d_outputs: Tensor | None,
    d_hyper_outputs: Tensor | None,
    saved: Sequence[_StepSaved],
    states: Sequence[_State],
    x_main: Tensor,
    w_h: Tensor,
    w_hyper: Tensor,
    w_z: Tensor,
    scale_weight: Tensor,
    norm: NormParameters,
    hyper_norm: NormParameters,
    norm_grads: NormParameters,
    hyper_norm_grads: NormParameters,
    d_bias: Tensor,
    d_z_bias: Tensor,
    mask: Tensor | None,
    hyper_mask: Tensor | None,
    eps: float,
) -> tuple[Any, ...]:
    """The backward pass over the ``K = len(x_main)`` steps of one chunk, last step first.

    ``states`` holds the ``K + 1`` states from the one before the chunk to its last,
    ``saved`` what :func:`_scan_forward_chunk` kept. Returns the gradients flowing into the
    state before the chunk, the chunk's input gradients ``(K, B, 4H)`` and ``(K, B, 4N_h)``,
    its contributions to the weight gradients (sums over steps, each one matmul over all
    ``K * B`` rows) and the updated small accumulators."""
    K = x_main.shape[0]
    # Each step's gradients, filled in last step first.
    d_x_main: list[Any] = [None] * K
    d_x_hyper_steps: list[Any] = [None] * K
    d_recs: list[Any] = [None] * K
    dds: list[Any] = [None] * K
    dzs: list[Any] = [None] * K
    for t in reversed(range(K)):
        if d_outputs is not None:
            dh = dh + d_outputs[t]
        if d_hyper_outputs is not None:
            dhh = dhh + d_hyper_outputs[t]
        (
            dh,
            dc,
            dhh,
            dhc,
            d_x_main[t],
            d_x_hyper_steps[t],
            d_recs[t],
            dds[t],
            dzs[t],
            norm_grads,
            hyper_norm_grads,
            d_bias,
            d_z_bias,
        ) = _scan_backward_step(
            dh,
            dc,
            dhh,
            dhc,
            saved[t],
            states[t][1],
            states[t + 1][1],
            states[t][3],
            states[t + 1][3],
            x_main[t],
            w_h,
            w_hyper,
            w_z,
            scale_weight,
            norm,
            hyper_norm,
            norm_grads,
            hyper_norm_grads,
            d_bias,
            d_z_bias,
            None if mask is None else mask[t],
            None if hyper_mask is None else hyper_mask[t],
            eps,
        )
    d_x_hyper = torch.stack(d_x_hyper_steps)
    B = x_main.shape[1]
    hh = torch.cat([state[2] for state in states])  # ((K + 1) B, N_h): before and after each step
    d_w_h = torch.mm(torch.cat(d_recs).t(), torch.cat([state[0] for state in states[:-1]]))
    d_w_hyper = torch.mm(d_x_hyper.flatten(0, 1).t(), hh[: K * B])
    d_w_z = torch.mm(torch.cat(dzs).t(), hh[B:])
    # sum_t z_t^T dd_t per gate row: (12, N_z, K B) @ (12, K B, H).
    z = torch.cat([step_saved[2] for step_saved in saved])
    d_scale = torch.bmm(z.permute(1, 2, 0), torch.cat(dds, dim=1))
    return (
        dh,
        dc,
        dhh,
        dhc,
        torch.stack(d_x_main),
        d_x_hyper,
        d_w_h,
        d_w_hyper,
        d_w_z,
        d_scale,
        norm_grads,
        hyper_norm_grads,
        d_bias,
        d_z_bias,
    )


# Steps per compiled chunk. Dynamo unrolls a chunk into one graph: longer chunks save
# per-call overhead (guards, launches) and make the weight-gradient matmuls larger, but cost
# compile time.
_CHUNK = 5
_compiled_chunks: dict[str, Callable[..., Any]] = {}


def _chunk_functions(compiled: bool) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The chunk functions of ``compile_steps=True``, compiled once per process with
    ``torch.compile`` (Inductor fuses each step's ~30 small elementwise and layer-norm
    kernels); uncompiled with ``compiled=False`` (a functional reference of the eager pass
    of :mod:`probnets.nn._hyperlstm_eager`)."""
    if not compiled:
        return _scan_forward_chunk, _scan_backward_chunk
    if not _compiled_chunks:
        # A C++ wrapper launches each chunk's kernels and matmuls instead of one Python call
        # apiece, at the same compile time as Inductor's default Python wrapper.
        options: dict[str, str | int | bool | Callable[..., Any]] = {"cpp_wrapper": True}
        _compiled_chunks["forward"] = torch.compile(
            _scan_forward_chunk, fullgraph=True, options=options
        )
        _compiled_chunks["backward"] = torch.compile(
            _scan_backward_chunk, fullgraph=True, options=options
        )
    return _compiled_chunks["forward"], _compiled_chunks["backward"]


class _HyperLSTMScan(torch.autograd.Function):
    """The whole recurrence of a :class:`HyperLSTMCell`, with a hand-written backward.

    Autograd would record ~35 small operations per step and replay each as a backward node
    with its bookkeeping and fresh buffers. Here the forward runs unrecorded and keeps only
    what the backward cannot cheaply recompute; the backward is one reverse loop, in chunks
    of steps, that carries the gradient through everything that read ``h_{t-1}`` with one
    matmul per step and sums each chunk's weight gradients with one matmul per weight.
    Eagerly both passes are :func:`~probnets.nn._hyperlstm_eager.scan_forward` and
    :func:`~probnets.nn._hyperlstm_eager.scan_backward`, which write into preallocated
    buffers; with ``compile_steps=True`` they are the functional chunk functions above,
    compiled.

    That pass is right for first derivatives only. When the backward pass is itself
    recorded (``create_graph=True``: double backward, gradient penalties, REBAR/RELAX's
    variance gradients), :func:`_recorded_backward` recomputes the forward with autograd
    from the saved inputs and differentiates that instead, so second derivatives are exact
    (``gradgradcheck`` in the tests) at the cost of the recorded recomputation.
    """

    @staticmethod
    def forward(ctx: Any, *args: Any) -> tuple[Tensor, ...]:
        *inputs, eps, compiled = args
        (
            x_main,
            x_hyper,
            h,
            c,
            hh,
            hc,
            w_h,
            w_hyper,
            w_z,
            z_bias,
            scale_weight,
            bias,
            gamma,
            beta,
            cell_weight,
            cell_bias,
            hgamma,
            hbeta,
            hcell_weight,
            hcell_bias,
            mask,
            hyper_mask,
        ) = inputs
        norm = (gamma, beta, cell_weight, cell_bias)
        hyper_norm = (hgamma, hbeta, hcell_weight, hcell_bias)
        ctx.eps, ctx.compiled = eps, compiled
        # Every tensor input, so that a backward pass that records a graph can recompute the
        # forward with autograd (see `backward`).
        ctx.save_for_backward(*inputs)
        if not compiled:
            tape = scan_forward(
                x_main,
                x_hyper,
                h,
                c,
                hh,
                hc,
                w_h,
                w_hyper,
                w_z,
                z_bias,
                scale_weight,
                bias,
                norm,
                hyper_norm,
                mask,
                hyper_mask,
                eps,
            )
            ctx.tape = tape
            # Copies: ctx keeps the tape, and an output held by its own ctx is a reference
            # cycle autograd never frees (every training step would leak its saved tensors).
            return (
                tape.h[1:].clone(),
                tape.h[-1].clone(),
                tape.c[-1].clone(),
                tape.hh[-1].clone(),
                tape.hc[-1].clone(),
                tape.hh[1:].clone(),
            )
        T = x_main.shape[0]
        H = h.shape[-1]
        forward_chunk, _ = _chunk_functions(compiled)
        w_h_t, w_hyper_t, w_z_t = (w.t().contiguous() for w in (w_h, w_hyper, w_z))
        bias = None if bias is None else bias.view(4, H)
        states = [(h, c, hh, hc)]
        saved = []
        for start in range(0, T, _CHUNK):
            steps = slice(start, start + _CHUNK)
            chunk_states, chunk_saved = forward_chunk(
                *states[-1],
                x_main[steps],
                x_hyper[steps],
                w_h_t,
                w_hyper_t,
                w_z_t,
                z_bias,
                scale_weight,
                bias,
                norm,
                hyper_norm,
                None if mask is None else mask[steps],
                None if hyper_mask is None else hyper_mask[steps],
                eps,
            )
            states += chunk_states
            saved += chunk_saved
        h, c, hh, hc = states[-1]
        ctx.states, ctx.saved = states, saved
        outputs = torch.stack([s[0] for s in states[1:]])
        hyper_outputs = torch.stack([s[2] for s in states[1:]])
        return outputs, h.clone(), c.clone(), hh.clone(), hc.clone(), hyper_outputs

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():
            # The backward pass is itself being recorded (``create_graph=True``, as in
            # double backward, gradient penalties, REBAR/RELAX's variance gradients): the
            # hand-written pass below reads state the forward computed unrecorded, so its
            # graph would miss every path through those states and give wrong second
            # derivatives. Recompute the forward with autograd instead and differentiate
            # that, recording.
            return _recorded_backward(ctx, grads)
        d_outputs, dh, dc, dhh, dhc, d_hyper_outputs = grads
        (
            x_main,
            _,
            _,
            _,
            _,
            _,
            w_h,
            w_hyper,
            w_z,
            _,
            scale_weight,
            bias,
            *norms,
            mask,
            hyper_mask,
        ) = ctx.saved_tensors
        norm, hyper_norm = tuple(norms[:4]), tuple(norms[4:])
        if not ctx.compiled:
            return (
                *scan_backward(
                    ctx.tape,
                    d_outputs,
                    dh,
                    dc,
                    dhh,
                    dhc,
                    d_hyper_outputs,
                    x_main,
                    w_h,
                    w_hyper,
                    w_z,
                    scale_weight,
                    bias is not None,
                    norm,
                    hyper_norm,
                    mask,
                    hyper_mask,
                ),
                None,
                None,
                None,
                None,
            )
        return _compiled_backward(
            ctx,
            grads,
            x_main,
            w_h,
            w_hyper,
            w_z,
            scale_weight,
            bias,
            norm,
            hyper_norm,
            mask,
            hyper_mask,
        )


def _compiled_backward(
    ctx: Any,
    grads: Sequence[Tensor | None],
    x_main: Tensor,
    w_h: Tensor,
    w_hyper: Tensor,
    w_z: Tensor,
    scale_weight: Tensor,
    bias: Tensor | None,
    norm: NormParameters,
    hyper_norm: NormParameters,
    mask: Tensor | None,
    hyper_mask: Tensor | None,
) -> tuple[Tensor | None, ...]:
    """:class:`_HyperLSTMScan`'s backward pass with ``compile_steps=True``: the compiled
    chunk functions, last chunk first."""
    d_outputs, dh, dc, dhh, dhc, d_hyper_outputs = grads
    states = ctx.states
    _, backward_chunk = _chunk_functions(True)
    T, B = x_main.shape[:2]
    H, Nh = states[0][0].shape[-1], states[0][2].shape[-1]
    zero = x_main.new_zeros(B, H)
    dh = zero if dh is None else dh
    dc = zero if dc is None else dc
    dhh = zero.new_zeros(B, Nh) if dhh is None else dhh
    dhc = zero.new_zeros(B, Nh) if dhc is None else dhc
    d_x_main = torch.empty_like(x_main)
    d_x_hyper = x_main.new_empty(T, B, 4 * Nh)
    d_w_h, d_w_hyper, d_w_z, d_scale = map(torch.zeros_like, (w_h, w_hyper, w_z, scale_weight))
    d_z_bias = w_z.new_zeros(w_z.shape[0])
    d_bias = x_main.new_zeros(4, H)
    # Fresh accumulators per backward pass (a graph kept with ``retain_graph`` may be
    # differentiated more than once).
    norm_grads = tuple(torch.zeros_like(p) for p in norm)
    hyper_norm_grads = tuple(torch.zeros_like(p) for p in hyper_norm)
    for start in reversed(range(0, T, _CHUNK)):
        steps = slice(start, start + _CHUNK)
        K = min(_CHUNK, T - start)
        (
            dh,
            dc,
            dhh,
            dhc,
            d_x_main[steps],
            d_x_hyper[steps],
            chunk_w_h,
            chunk_w_hyper,
            chunk_w_z,
            chunk_scale,
            norm_grads,
            hyper_norm_grads,
            d_bias,
            d_z_bias,
        ) = backward_chunk(
            dh,
            dc,
            dhh,
            dhc,
            None if d_outputs is None else d_outputs[steps],
            None if d_hyper_outputs is None else d_hyper_outputs[steps],
            ctx.saved[start : start + K],
            states[start : start + K + 1],
            x_main[steps],
            w_h,
            w_hyper,
            w_z,
            scale_weight,
            norm,
            hyper_norm,
            norm_grads,
            hyper_norm_grads,
            d_bias,
            d_z_bias,
            None if mask is None else mask[steps],
            None if hyper_mask is None else hyper_mask[steps],
            ctx.eps,
        )
        d_w_h += chunk_w_h
        d_w_hyper += chunk_w_hyper
        d_w_z += chunk_w_z
        d_scale += chunk_scale
    return (
        d_x_main,
        d_x_hyper,
        dh,
        dc,
        dhh,
        dhc,
        d_w_h,
        d_w_hyper,
        d_w_z,
        d_z_bias,
        d_scale,
        None if bias is None else d_bias.view(4 * H),
        *norm_grads,
        *hyper_norm_grads,
        None,
        None,
        None,
        None,
    )


def _recorded_lstm_update(
    pre: Tensor,
    c: Tensor,
    gamma: Tensor,
    beta: Tensor,
    cell_weight: Tensor,
    cell_bias: Tensor,
    mask: Tensor | None,
    eps: float,
) -> tuple[Tensor, Tensor]:
    """The update of :func:`_lstm_forward`, written with ordinary differentiable operations."""
    a = torch.addcmul(beta, F.layer_norm(pre, pre.shape[-1:], eps=eps), gamma)
    i, f, g, o = torch.sigmoid(a).unbind(-2)
    g = 2.0 * g - 1.0
    if mask is not None:
        g = g * mask
    c = f * c + i * g
    h = o * torch.tanh(F.layer_norm(c, c.shape[-1:], cell_weight, cell_bias, eps))
    return h, c


def _recorded_scan(
    x_main: Tensor,
    x_hyper: Tensor,
    h: Tensor,
    c: Tensor,
    hh: Tensor,
    hc: Tensor,
    w_h: Tensor,
    w_hyper: Tensor,
    w_z: Tensor,
    z_bias: Tensor,
    scale_weight: Tensor,
    bias: Tensor | None,
    gamma: Tensor,
    beta: Tensor,
    cell_weight: Tensor,
    cell_bias: Tensor,
    hgamma: Tensor,
    hbeta: Tensor,
    hcell_weight: Tensor,
    hcell_bias: Tensor,
    mask: Tensor | None,
    hyper_mask: Tensor | None,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:class:`_HyperLSTMScan`'s function (same arguments and outputs) step by step with
    autograd recording every operation: what a backward pass that is itself recorded
    differentiates, and a reference for the hand-written pass."""
    T, B = x_main.shape[:2]
    H, Nh, Nz = h.shape[-1], hh.shape[-1], scale_weight.shape[1]
    outputs, hyper_outputs = [], []
    for t in range(T):
        rec_main, rec_hyper = F.linear(h, w_h).split([4 * H, 4 * Nh], dim=-1)
        pre_hyper = x_hyper[t] + rec_hyper + F.linear(hh, w_hyper)
        hh, hc = _recorded_lstm_update(
            pre_hyper.view(B, 4, Nh),
            hc,
            hgamma,
            hbeta,
            hcell_weight,
            hcell_bias,
            None if hyper_mask is None else hyper_mask[t],
            eps,
        )
        z = F.linear(hh, w_z, z_bias).view(B, 12, Nz)
        d_x, d_h, delta = torch.einsum("bgk,gkh->bgh", z, scale_weight).split(4, dim=1)
        pre = d_x * x_main[t].view(B, 4, H) + d_h * rec_main.view(B, 4, H) + delta
        if bias is not None:
            pre = pre + bias.view(4, H)
        h, c = _recorded_lstm_update(
            pre, c, gamma, beta, cell_weight, cell_bias, None if mask is None else mask[t], eps
        )
        outputs.append(h)
        hyper_outputs.append(hh)
    return torch.stack(outputs), h, c, hh, hc, torch.stack(hyper_outputs)


def _recorded_backward(ctx: Any, grads: Sequence[Tensor | None]) -> tuple[Tensor | None, ...]:
    """:class:`_HyperLSTMScan`'s backward pass for a recorded backward (``create_graph``):
    the gradients of :func:`_recorded_scan`, with their own graph, so that they can be
    differentiated again."""
    inputs: tuple[Tensor, ...] = ctx.saved_tensors
    wanted = [i for i, needed in enumerate(ctx.needs_input_grad[: len(inputs)]) if needed]
    with torch.enable_grad():
        # The saved tensors are all of _recorded_scan's arguments but eps (a count mypy cannot
        # see through the star).
        scan = cast(Callable[..., tuple[Tensor, ...]], _recorded_scan)
        outputs = scan(*inputs, ctx.eps)
    pairs = [
        (out, grad) for out, grad in zip(outputs, grads) if grad is not None and out.requires_grad
    ]
    input_grads = torch.autograd.grad(
        [out for out, _ in pairs],
        [inputs[i] for i in wanted],
        [grad for _, grad in pairs],
        create_graph=True,
        allow_unused=True,
    )
    result: list[Tensor | None] = [None] * (len(inputs) + 2)  # and eps, compiled
    for i, grad in zip(wanted, input_grads):
        result[i] = torch.zeros_like(inputs[i]) if grad is None else grad
    return tuple(result)


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
    :param int hyper_size: width :math:`N_h` of the hyper LSTM; default
        ``max(4, hidden_size // 8)``, about the paper's 128 beside 1000 main units.
    :param int hyper_embedding_size: :math:`N_z` (default 4).
    :param bool bias: learn the main bias :math:`b` (initialised at 0).
    :param float recurrent_dropout: dropout probability on the main cell's candidate.
    :param float eps: layer-norm epsilon.
    :param bool compile_steps: run the forward and hand-written backward of each chunk of
        5 steps through ``torch.compile`` (Inductor fuses each step's ~30 small elementwise
        and layer-norm kernels; compiled once per process, input shape and dtype, which
        delays the first step; see ``guides/hypernets.md`` for the speed-up).
    :param float hyper_recurrent_dropout: dropout probability on the hyper cell's candidate,
        also without memory loss (the reference cell's ``hyper_use_recurrent_dropout``,
        off by default as there).
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
        hyper_size: int | None = None,
        hyper_embedding_size: int = 4,
        bias: bool = True,
        recurrent_dropout: float = 0.0,
        eps: float = 1e-5,
        compile_steps: bool = False,
        hyper_recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if hyper_size is None and isinstance(hidden_size, int):
            hyper_size = default_hyper_size(hidden_size)
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("hyper_size", hyper_size),
            ("hyper_embedding_size", hyper_embedding_size),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name, rate in (
            ("recurrent_dropout", recurrent_dropout),
            ("hyper_recurrent_dropout", hyper_recurrent_dropout),
        ):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {rate!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.hyper_size = hyper_size
        self.hyper_embedding_size = hyper_embedding_size
        self.recurrent_dropout = float(recurrent_dropout)
        self.hyper_recurrent_dropout = float(hyper_recurrent_dropout)
        self.eps = eps
        self.compile_steps = bool(compile_steps)
        H, Nz = hidden_size, hyper_embedding_size

        add_layer_norm_lstm_parameters(self, input_size, H, bias)

        self.hyper_cell = LayerNormLSTMCell(input_size + H, hyper_size, eps=eps)
        # Rows: 4 gates x (input scale z_x, recurrent scale z_h, bias z_b), Nz each.
        self.embedding_weight = nn.Parameter(torch.zeros(12 * Nz, hyper_size))
        self.embedding_bias = nn.Parameter(torch.ones(8 * Nz))  # z_b has no bias
        self.scale_weight = nn.Parameter(torch.full((12, Nz, H), _INITIAL_SCALE / Nz))
        with torch.no_grad():
            self.embedding_weight[8 * Nz :].normal_(0.0, 0.01)
            self.scale_weight[8:].zero_()

    def input_projection(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Parts that depend on ``x`` only, for a whole sequence at once: ``W_x x`` for the
        main cell and the hyper cell's ``W x`` (its input is ``[x; h]``)."""
        main = F.linear(x, self.weight_ih)
        hyper = F.linear(x, self.hyper_cell.weight_ih[:, : self.input_size], self.hyper_cell.bias)
        return main, hyper

    def _embedding_bias(self) -> Tensor:
        zeros = self.embedding_bias.new_zeros(4 * self.hyper_embedding_size)
        return torch.cat([self.embedding_bias, zeros])

    def scales(
        self, hyper_h: Tensor, embedding_bias: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(d_x, d_h, delta)``, each of shape ``(..., 4, H)``, from hyper outputs
        ``(..., N_h)``."""
        if embedding_bias is None:
            embedding_bias = self._embedding_bias()
        z = F.linear(hyper_h, self.embedding_weight, embedding_bias)
        z = z.view(*hyper_h.shape[:-1], 12, self.hyper_embedding_size)
        d = torch.einsum("...gk,gkh->...gh", z, self.scale_weight)
        return d[..., 0:4, :], d[..., 4:8, :], d[..., 8:12, :]

    def scan(
        self, x_proj: tuple[Tensor, Tensor], state: Sequence[Tensor]
    ) -> tuple[Tensor, _State, Tensor]:
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
        w_h = torch.cat([self.weight_hh, hyper.weight_ih[:, self.input_size :]])
        mask = self._candidate_mask(x_main, self.recurrent_dropout, self.hidden_size)
        hyper_mask = self._candidate_mask(x_main, self.hyper_recurrent_dropout, self.hyper_size)
        outputs, h, c, hh, hc, hyper_outputs = _HyperLSTMScan.apply(
            x_main,
            x_hyper,
            *state,
            w_h,
            hyper.weight_hh,
            self.embedding_weight,
            self._embedding_bias(),
            self.scale_weight,
            self.bias,
            gamma,
            beta,
            self.cell_norm_weight,
            self.cell_norm_bias,
            hgamma,
            hbeta,
            hyper.cell_norm_weight,
            hyper.cell_norm_bias,
            mask,
            hyper_mask,
            self.eps,
            self.compile_steps,
        )
        return outputs, (h, c, hh, hc), hyper_outputs

    def _candidate_mask(self, x_main: Tensor, p: float, width: int) -> Tensor | None:
        """Inverted-dropout mask ``(T, B, width)`` for a candidate, or None (not training
        or ``p = 0``)."""
        if not self.training or p == 0.0:
            return None
        keep = 1.0 - p
        return x_main.new_empty(*x_main.shape[:2], width).bernoulli_(keep) / keep

    def modulation(self, hyper_outputs: Tensor, initial_hyper_h: Tensor) -> Tensor:
        r"""Per-step size of the change of the recurrent weights, per gate.

        The effective recurrent matrix of gate :math:`k` at step :math:`t` is
        :math:`W^k_t = \mathrm{diag}(d^k_{h,t}) W^k_h`, so
        :math:`\|W^k_t - W^k_{t-1}\|_F = \|(d^k_{h,t} - d^k_{h,t-1}) \odot r^k\|_2` with
        :math:`r^k` the row norms of :math:`W^k_h`; :math:`d_{h,-1}` comes from the initial
        hyper state. This is the quantity of the "weight-changing activity" figures of
        Ha et al. (2016).

        :param hyper_outputs: ``(T, B, N_h)`` from :meth:`scan`.
        :param initial_hyper_h: ``(B, N_h)``, the hyper ``h`` the scan started from.
        :returns: ``(T, B, 4)``, gates ordered ``i, f, g, o``.
        """
        hyper_h = torch.cat([initial_hyper_h.unsqueeze(0), hyper_outputs])
        _, d_h, _ = self.scales(hyper_h)
        row_norms = self.weight_hh.view(4, self.hidden_size, self.hidden_size).norm(dim=-1)
        return ((d_h[1:] - d_h[:-1]) * row_norms).norm(dim=-1)

    def forward(self, x: Tensor, state: Sequence[Tensor] | None = None) -> HyperLSTMState:
        """One step, like ``nn.LSTMCell``: ``x`` of shape ``(B, input_size)``; ``state`` None,
        a pair ``(h, c)`` of shape ``(B, hidden_size)`` (the hyper cell starts from zero), the
        :class:`HyperLSTMState` of the previous step, or ``(h, c, hyper_h, hyper_c)``.
        Returns the new :class:`HyperLSTMState`, which unpacks to ``h, c``."""
        check_tensor("x", x, self.weight_ih)
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"x must have shape (B, {self.input_size}), got shape {tuple(x.shape)}"
            )
        main, hyper = self.input_projection(x)
        state = self._check_state(_flat_state(state), x)
        _, state, _ = self.scan((main.unsqueeze(0), hyper.unsqueeze(0)), state)
        return HyperLSTMState(*state)

    def _check_state(self, state: Sequence[Tensor] | None, x: Tensor) -> tuple[Tensor, ...]:
        B = x.shape[0]
        sizes = (self.hidden_size, self.hidden_size, self.hyper_size, self.hyper_size)
        if state is None:
            return tuple(x.new_zeros(B, size) for size in sizes)
        if not isinstance(state, (tuple, list)) or len(state) not in (2, 4):
            kind = type(state).__name__
            if isinstance(state, (tuple, list)):
                kind += f" of length {len(state)}"
            raise TypeError(f"state must be {HyperLSTM.state_help}, got {kind}")
        state = tuple(state) + tuple(x.new_zeros(B, size) for size in sizes[len(state) :])
        for name, s, size in zip(HyperLSTM.state_names, state, sizes):
            check_tensor(f"state {name}", s, x)
            if tuple(s.shape) != (B, size):
                raise ValueError(f"state {name} must have shape {(B, size)}, got {tuple(s.shape)}")
        return state

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
        # A state dict of other hyper sizes: say which sizes to build (the mismatch errors
        # that follow name only the tensors).
        error_msgs = args[-1]
        hyper_weight = state_dict.get(prefix + "hyper_cell.weight_hh")
        scale_weight = state_dict.get(prefix + "scale_weight")
        if hyper_weight is not None and scale_weight is not None:
            sizes = (hyper_weight.shape[-1], scale_weight.shape[1])
            if sizes != (self.hyper_size, self.hyper_embedding_size):
                error_msgs.append(
                    f"{prefix or 'the cell'}: the state dict has hyper_size={sizes[0]}, "
                    f"hyper_embedding_size={sizes[1]}, this module {self.hyper_size} and "
                    f"{self.hyper_embedding_size}; build it with hyper_size={sizes[0]}, "
                    f"hyper_embedding_size={sizes[1]} (the defaults were 128 and 16 until "
                    f"hyper_size became hidden_size // 8)"
                )
        super()._load_from_state_dict(state_dict, prefix, *args)


class HyperLSTM(StackedRecurrent):
    r"""Stacked :class:`HyperLSTMCell` layers, a drop-in for ``nn.LSTM``.

    ``output, (h_n, c_n) = m(input)`` and ``m(input, (h_0, c_0))`` as with ``nn.LSTM``:
    ``input`` is ``(T, B, input_size)`` (``(B, T, input_size)`` if ``batch_first``) or
    unbatched ``(T, input_size)``; ``output``, ``h_n`` and ``c_n`` have ``nn.LSTM``'s shapes
    (``(num_layers, B, hidden_size)`` for the states). The returned state is a
    :class:`HyperLSTMState`: it unpacks to ``h_n, c_n`` and carries the hyper cells' states
    (``(num_layers, B, hyper_size)``) as ``state.hyper_h`` and ``state.hyper_c``, so passing
    it back in continues the sequence exactly (truncated back-propagation keeps the hyper
    state; ``state.detach()`` detaches all four). A plain pair ``(h_0, c_0)`` starts the
    hyper cells from zero; the flat tuple ``(h_0, c_0, hyper_h_0, hyper_c_0)`` of
    ``state.astuple()`` (for checkpoints) is accepted too. Until this type, the state was
    that flat 4-tuple, which ``nn.LSTM``-style unpacking could not take; parameters and
    state dicts are unchanged.

    With ``return_modulation=True`` a third value is returned: the per-step size of the
    change of each layer's recurrent weights (:meth:`HyperLSTMCell.modulation`), shaped
    ``(T, B, num_layers, 4)`` (``(B, T, num_layers, 4)`` if ``batch_first``).

    Speed (``examples/bench_hyperlstm.py`` prints the ratio to ``nn.LSTM``; measurements in
    ``guides/hypernets.md``): input projections of all steps are computed at once; per step
    the main recurrent matmul is fused with the hyper cell's ``h``-input matmul and one
    ``sigmoid`` covers all gates; the backward pass is hand-written (second derivatives go
    through an autograd recomputation, see :class:`_HyperLSTMScan`); ``compile_steps=True``
    fuses the rest with ``torch.compile``.

    :param int hyper_size: width :math:`N_h` of each hyper cell; default
        ``max(4, hidden_size // 8)`` (the paper's proportion; it was 128 before, pass
        ``hyper_size=128, hyper_embedding_size=16`` to load state dicts of that default).
    :param int hyper_embedding_size: :math:`N_z` (default 4; 16 before).
    :param float dropout: dropout on each layer's output except the last (training only).
    :param float recurrent_dropout: see :class:`HyperLSTMCell`.
    :param bool compile_steps: see :class:`HyperLSTMCell`.
    :param float hyper_recurrent_dropout: see :class:`HyperLSTMCell`.
    """

    state_names = ("h", "c", "hyper_h", "hyper_c")
    state_help = (
        "a pair (h_0, c_0), the HyperLSTMState a call returned, or (h_0, c_0, hyper_h_0, hyper_c_0)"
    )

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        hyper_size: int | None = None,
        hyper_embedding_size: int = 4,
        recurrent_dropout: float = 0.0,
        eps: float = 1e-5,
        compile_steps: bool = False,
        hyper_recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout)
        if hyper_size is None:
            hyper_size = default_hyper_size(hidden_size)
        self.hyper_size = hyper_size
        self.hyper_embedding_size = hyper_embedding_size
        self.cells = nn.ModuleList(
            HyperLSTMCell(
                input_size if layer == 0 else hidden_size,
                hidden_size,
                hyper_size,
                hyper_embedding_size,
                bias,
                recurrent_dropout,
                eps,
                compile_steps,
                hyper_recurrent_dropout,
            )
            for layer in range(num_layers)
        )

    def state_sizes(self) -> tuple[int, int, int, int]:
        H, Nh = self.hidden_size, self.hyper_size
        return (H, H, Nh, Nh)

    @overload
    def forward(
        self,
        input: Tensor,
        state: Sequence[Tensor] | None = None,
        return_modulation: Literal[False] = False,
    ) -> tuple[Tensor, HyperLSTMState]: ...

    @overload
    def forward(
        self, input: Tensor, state: Sequence[Tensor] | None, return_modulation: Literal[True]
    ) -> tuple[Tensor, HyperLSTMState, Tensor]: ...

    @overload
    def forward(
        self,
        input: Tensor,
        state: Sequence[Tensor] | None = None,
        *,
        return_modulation: Literal[True],
    ) -> tuple[Tensor, HyperLSTMState, Tensor]: ...

    @overload
    def forward(
        self, input: Tensor, state: Sequence[Tensor] | None = None, return_modulation: bool = False
    ) -> tuple[Tensor, HyperLSTMState] | tuple[Tensor, HyperLSTMState, Tensor]: ...

    def forward(
        self, input: Tensor, state: Sequence[Tensor] | None = None, return_modulation: bool = False
    ) -> tuple[Tensor, HyperLSTMState] | tuple[Tensor, HyperLSTMState, Tensor]:
        """``output, state = m(input, state)`` as with ``nn.LSTM``, ``state`` a
        :class:`HyperLSTMState`; with ``return_modulation=True`` also the per-step weight
        modulation (see the class docstring for shapes)."""
        x, states, unbatched = self._prepare(input, _flat_state(state))
        x, finals, hyper_outputs = self._run_layers(x, states)
        output, state = self._finish(x, finals, unbatched)
        state = HyperLSTMState(*state)
        if not return_modulation:
            return output, state
        modulation = torch.stack(
            [
                cast(HyperLSTMCell, cell).modulation(outputs, initial[2])
                for cell, outputs, initial in zip(self.cells, hyper_outputs, states)
            ],
            dim=2,
        )  # (T, B, L, 4)
        if unbatched:
            modulation = modulation.squeeze(1)
        elif self.batch_first:
            modulation = modulation.transpose(0, 1)
        return output, state, modulation
