"""The eager forward and hand-written backward pass of the HyperLSTM recurrence
(:class:`probnets.nn.hyperlstm._HyperLSTMScan`), written for few kernel launches per step.

The recurrence is sequential, so at ``B = 32``, ``H = 256`` each step's work is ~30 small
kernels and their launch overhead, not arithmetic. This pass keeps that number down:

* every per-step tensor the backward pass reads (states, gate values, layer-norm statistics,
  pre-activations) is written with ``out=`` into one buffer per kind that spans the whole
  sequence, so no step allocates for it, no list is stacked at the end, and the states
  ``h_{-1} .. h_{T-1}`` are one ``(T B, H)`` matrix for the weight gradients;
* the backward pass writes each step's gradients into sequence buffers the same way, and
  forms the weight gradients after the loop, each with one matmul over all ``T B`` rows
  (the layer-norm gains and shifts with one reduction);
* the scalings ``d = W_{.z} z`` are recomputed in the backward pass with one batched matmul
  per chunk of steps instead of one per step, and the gradients of the scale matrices and
  of the embeddings are kept gate-major, so the per-gate matmuls need no transposed copies.

The compiled path (``compile_steps=True``) does not use this: Inductor would have to
functionalise every ``out=`` write into a slice; it runs the functional chunk functions of
:mod:`probnets.nn.hyperlstm` instead. Both compute the same numbers (a test compares them).

Gates are ``i, f, g, o`` with the ``g`` row of the layer-norm affine doubled, so that one
``sigmoid`` gives all four (``tanh(a) = 2 sigmoid(2a) - 1``, see
:func:`~probnets.nn._recurrent.fused_gate_affine`).
"""

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._recurrent import NormParameters

_layer_norm_backward = torch.ops.aten.native_layer_norm_backward
_sigmoid_backward_into = torch.ops.aten.sigmoid_backward.grad_input

# Steps whose scalings are recomputed, and whose scale-matrix gradient is summed, by one
# batched matmul in the backward pass: longer chunks mean fewer calls and a larger buffer
# (12 x chunk x B x H).
_CHUNK = 10


class _CellTape:
    """What the forward pass of one layer-norm LSTM cell keeps for its backward pass, for
    all ``T`` steps: pre-activations ``(T, B, 4, W)``, their layer norm and its statistics,
    the gate values (sigmoids, with the candidate's ``2 s - 1`` kept apart, masked), and
    ``tanh`` of the normalised cell with the cell norm's statistics. States live in the
    scan's ``(T + 1, B, W)`` buffers."""

    def __init__(self, like: Tensor, T: int, B: int, W: int) -> None:
        self.pre = like.new_empty(T, B, 4, W)
        self.pre_steps = self.pre.unbind(0)
        # Filled in step by step.
        self.n: list[Any] = [None] * T
        self.stats: list[Any] = [None] * T
        self.s: list[Any] = [None] * T
        self.g: list[Any] = [None] * T
        self.th: list[Any] = [None] * T

    def forward_step(
        self,
        t: int,
        c: Tensor,
        c_out: Tensor,
        h_out: Tensor,
        norm: NormParameters,
        mask: Tensor | None,
        eps: float,
    ) -> None:
        """Step ``t`` from the pre-activations in ``self.pre[t]``: writes ``c_t`` to
        ``c_out`` and ``h_t`` to ``h_out``."""
        gamma, beta, cell_weight, cell_bias = norm
        W = c.shape[-1]
        n, mean, rstd = torch.native_layer_norm(self.pre_steps[t], (W,), None, None, eps)
        s = torch.addcmul(beta, n, gamma).sigmoid_()
        i, f, g, o = s.unbind(1)
        g = torch.mul(g, 2.0).sub_(1.0)
        if mask is not None:
            g.mul_(mask)
        c_new = torch.mul(f, c, out=c_out).addcmul_(i, g)
        th, c_mean, c_rstd = torch.native_layer_norm(c_new, (W,), cell_weight, cell_bias, eps)
        torch.mul(o, th.tanh_(), out=h_out)
        self.n[t], self.stats[t], self.s[t], self.g[t], self.th[t] = (
            n,
            (mean, rstd, c_mean, c_rstd),
            s,
            g,
            th,
        )

    def backward_step(
        self,
        t: int,
        dh: Tensor,
        dc: Tensor,
        c: Tensor,
        c_new: Tensor,
        norm: NormParameters,
        mask: Tensor | None,
        grads: "_NormGradients",
    ) -> tuple[Tensor, Tensor]:
        """Gradients of step ``t``: from ``dh, dc`` (of ``h_t, c_t``; ``dc`` is updated in
        place) to those of the pre-activations (returned) and of ``c_{t-1}`` (returned);
        the norm parameters' are added to ``grads`` (a :class:`_NormGradients`)."""
        gamma, _, cell_weight, cell_bias = norm
        da = grads.da
        W = c.shape[-1]
        s, g, th = self.s[t], self.g[t], self.th[t]
        mean, rstd, c_mean, c_rstd = self.stats[t]
        i, f, _, o = s.unbind(1)
        dy = torch.ops.aten.tanh_backward(dh * o, th)
        d_c, d_weight, d_bias = _layer_norm_backward(
            dy, c_new, (W,), c_mean, c_rstd, cell_weight, cell_bias, [True, True, True]
        )
        grads.cell.append((d_weight, d_bias))
        dc.add_(d_c)
        torch.mul(dc, g, out=da[:, 0])
        torch.mul(dc, c, out=da[:, 1])
        dg = torch.mul(dc, i, out=da[:, 2]).mul_(2.0)
        if mask is not None:
            dg.mul_(mask)
        torch.mul(dh, th, out=da[:, 3])
        _sigmoid_backward_into(da, s, grad_input=da)
        grads.gamma.addcmul_(da, self.n[t])
        grads.beta.add_(da)
        dpre = _layer_norm_backward(
            da * gamma, self.pre_steps[t], (W,), mean, rstd, None, None, [True, False, False]
        )[0]
        return dpre, dc.mul_(f)


class _NormGradients:
    """The gradients of one cell's norm parameters during a backward pass: the gate affine's
    gain and shift summed over steps row by row (``(B, 4, W)`` accumulators that stay in
    cache; the rows are summed once at the end), the cell norm's weight and bias per step,
    and ``da``, the scratch buffer of the gate affine's output gradient."""

    def __init__(self, like: Tensor, B: int, W: int) -> None:
        self.da = like.new_empty(B, 4, W)
        self.gamma, self.beta = like.new_zeros(B, 4, W), like.new_zeros(B, 4, W)
        self.cell: list[tuple[Tensor, Tensor]] = []

    def totals(self) -> NormParameters:
        """Gradients of the fused gate gain and shift and of the cell norm's weight and
        bias."""
        d_weight, d_bias = (torch.stack(parts).sum(0) for parts in zip(*self.cell))
        return self.gamma.sum(0), self.beta.sum(0), d_weight, d_bias


class _ScanTape:
    """Everything the eager forward pass writes: the states of both cells for steps
    ``-1 .. T-1`` (``(T + 1, B, width)``), the recurrent products ``[W_h; W_{hat x, h}]
    h_{t-1}`` ``(T, B, 4H + 4N_h)``, the embeddings ``z_t`` ``(T, B, 12 N_z)`` and each
    cell's :class:`_CellTape`."""

    def __init__(
        self, x_main: Tensor, h: Tensor, c: Tensor, hh: Tensor, hc: Tensor, z_width: int
    ) -> None:
        T, B = x_main.shape[:2]
        H, Nh = h.shape[-1], hh.shape[-1]
        self.h, self.c = x_main.new_empty(T + 1, B, H), x_main.new_empty(T + 1, B, H)
        self.hh, self.hc = x_main.new_empty(T + 1, B, Nh), x_main.new_empty(T + 1, B, Nh)
        for buffer, initial in ((self.h, h), (self.c, c), (self.hh, hh), (self.hc, hc)):
            buffer[0].copy_(initial)
        self.rec = x_main.new_empty(T, B, 4 * H + 4 * Nh)
        self.z = x_main.new_empty(T, B, z_width)
        self.main = _CellTape(x_main, T, B, H)
        self.hyper = _CellTape(x_main, T, B, Nh)


def scan_forward(
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
    norm: NormParameters,
    hyper_norm: NormParameters,
    mask: Tensor | None,
    hyper_mask: Tensor | None,
    eps: float,
) -> _ScanTape:
    """The whole recurrence, unrecorded: returns the :class:`_ScanTape` (its ``h, c, hh, hc``
    buffers hold the outputs and final states)."""
    T, B = x_main.shape[:2]
    H, Nh, Nz = h.shape[-1], hh.shape[-1], scale_weight.shape[1]
    tape = _ScanTape(x_main, h, c, hh, hc, w_z.shape[0])
    # Row-major right operands: MKL multiplies a (B, K) state by a contiguous (K, N) matrix
    # faster than by the transposed view of an (N, K) one at these sizes.
    w_h_t, w_hyper_t, w_z_t = (w.t().contiguous() for w in (w_h, w_hyper, w_z))
    bias = None if bias is None else bias.view(4, H)
    main, hyper = tape.main, tape.hyper
    hs, cs, hhs, hcs = (x.unbind(0) for x in (tape.h, tape.c, tape.hh, tape.hc))
    recs, zs = tape.rec.unbind(0), tape.z.unbind(0)
    rec_mains = tape.rec[..., : 4 * H].unflatten(-1, (4, H)).unbind(0)
    rec_hypers = tape.rec[..., 4 * H :].unbind(0)
    hyper_pres = hyper.pre.view(T, B, 4 * Nh).unbind(0)
    x_mains, x_hypers = x_main.reshape(T, B, 4, H).unbind(0), x_hyper.unbind(0)
    masks: Sequence[Tensor | None] = [None] * T if mask is None else mask.unbind(0)
    hyper_masks: Sequence[Tensor | None] = (
        [None] * T if hyper_mask is None else hyper_mask.unbind(0)
    )
    for t in range(T):
        torch.mm(hs[t], w_h_t, out=recs[t])
        torch.addmm(torch.add(x_hypers[t], rec_hypers[t]), hhs[t], w_hyper_t, out=hyper_pres[t])
        hyper.forward_step(t, hcs[t], hcs[t + 1], hhs[t + 1], hyper_norm, hyper_masks[t], eps)
        z = torch.addmm(z_bias, hhs[t + 1], w_z_t, out=zs[t])
        # (12, B, H) gate-major; read batch-major through the transposed view.
        d = torch.bmm(z.view(B, 12, Nz).transpose(0, 1), scale_weight).transpose(0, 1)
        delta = d[:, 8:12] if bias is None else d[:, 8:12] + bias
        pre = torch.addcmul(delta, d[:, 0:4], x_mains[t], out=main.pre_steps[t])
        pre.addcmul_(d[:, 4:8], rec_mains[t])
        main.forward_step(t, cs[t], cs[t + 1], hs[t + 1], norm, masks[t], eps)
    return tape


def scan_backward(
    tape: _ScanTape,
    d_outputs: Tensor | None,
    dh: Tensor | None,
    dc: Tensor | None,
    dhh: Tensor | None,
    dhc: Tensor | None,
    d_hyper_outputs: Tensor | None,
    x_main: Tensor,
    w_h: Tensor,
    w_hyper: Tensor,
    w_z: Tensor,
    scale_weight: Tensor,
    has_bias: bool,
    norm: NormParameters,
    hyper_norm: NormParameters,
    mask: Tensor | None,
    hyper_mask: Tensor | None,
) -> tuple[Tensor | None, ...]:
    """The backward pass of :func:`scan_forward`, last step first. Gradients of outputs that
    did not reach the loss are None. Returns the gradients of ``x_main, x_hyper, h, c, hh,
    hc, w_h, w_hyper, w_z, z_bias, scale_weight, bias`` (None without a bias) and of the
    two cells' norm parameters."""
    T, B = x_main.shape[:2]
    H, Nh, Nz = tape.h.shape[-1], tape.hh.shape[-1], scale_weight.shape[1]
    main, hyper = tape.main, tape.hyper
    # Running gradients, updated in place: fresh tensors, never the caller's.
    dh = x_main.new_zeros(B, H) if dh is None else dh.clone()
    dc = x_main.new_zeros(B, H) if dc is None else dc.clone()
    dhh = x_main.new_zeros(B, Nh) if dhh is None else dhh.clone()
    dhc = x_main.new_zeros(B, Nh) if dhc is None else dhc.clone()
    d_x_main, d_x_hyper = x_main.new_empty(T, B, 4 * H), x_main.new_empty(T, B, 4 * Nh)
    grads, hyper_grads = _NormGradients(x_main, B, H), _NormGradients(x_main, B, Nh)
    dzs: list[Any] = [None] * T
    # Per chunk of K steps, reused: the gradients of the recurrent products (K, B, 4H + 4Nh)
    # and, gate-major (gates first, then the chunk's K B rows), those of d = (d_x, d_h,
    # delta), the last four rows being the pre-activations' own, and the factors
    # (W_x x, W_h h) that d_x, d_h multiply.
    Kmax = min(_CHUNK, T)
    d_rec = x_main.new_empty(Kmax, B, 4 * H + 4 * Nh)
    dd_chunk = x_main.new_empty(12, Kmax * B, H)
    factors_chunk = x_main.new_empty(2, 4, Kmax * B, H)
    d_w_h, d_w_hyper = torch.zeros_like(w_h), torch.zeros_like(w_hyper)
    d_scale = torch.zeros_like(scale_weight)
    scales_t = scale_weight.transpose(1, 2)
    d_bias = x_main.new_zeros(4, H)
    cs, hcs = tape.c.unbind(0), tape.hc.unbind(0)
    d_output_steps: Sequence[Tensor | None] = (
        [None] * T if d_outputs is None else d_outputs.unbind(0)
    )
    d_hyper_output_steps: Sequence[Tensor | None] = (
        [None] * T if d_hyper_outputs is None else d_hyper_outputs.unbind(0)
    )
    d_rec_mains = d_rec[..., : 4 * H].unflatten(-1, (4, H)).transpose(1, 2).unbind(0)
    d_rec_hypers, d_recs = d_rec[..., 4 * H :].unbind(0), d_rec.unbind(0)
    masks: Sequence[Tensor | None] = [None] * T if mask is None else mask.unbind(0)
    hyper_masks: Sequence[Tensor | None] = (
        [None] * T if hyper_mask is None else hyper_mask.unbind(0)
    )
    for start in reversed(range(0, T, _CHUNK)):
        K = min(_CHUNK, T - start)
        chunk = slice(start, start + K)
        z = tape.z[chunk].view(K * B, 12, Nz).transpose(0, 1)  # (12, K B, Nz)
        d = torch.bmm(z, scale_weight)  # the chunk's scalings (12, K B, H)
        dd, factors = dd_chunk[:, : K * B], factors_chunk[:, :, : K * B]
        factors[0].copy_(x_main[chunk].reshape(K * B, 4, H).transpose(0, 1))
        factors[1].copy_(tape.rec[chunk, :, : 4 * H].reshape(K * B, 4, H).transpose(0, 1))
        # Per step of the chunk: d_h (4, B, H), the factors (2, 4, B, H), and where the
        # gradients of d go: (d_x, d_h) as (2, 4, B, H), delta (4, B, H), all of d
        # (12, B, H).
        d_hs = d[4:8].view(4, K, B, H).unbind(1)
        step_factors = factors.view(2, 4, K, B, H).unbind(2)
        dd_steps = dd.view(12, K, B, H).unbind(1)
        dd_scales = dd[0:8].view(2, 4, K, B, H).unbind(2)
        dd_deltas = dd[8:12].view(4, K, B, H).unbind(1)
        for k in reversed(range(K)):
            t = start + k
            d_output, d_hyper_output = d_output_steps[t], d_hyper_output_steps[t]
            if d_output is not None:
                dh.add_(d_output)
            if d_hyper_output is not None:
                dhh.add_(d_hyper_output)
            dpre, dc = main.backward_step(t, dh, dc, cs[t], cs[t + 1], norm, masks[t], grads)
            # a = d_x * (W_x x) + d_h * (W_h h) + delta, gate-major.
            dpre = dd_deltas[k].copy_(dpre.transpose(0, 1))
            torch.mul(dpre, d_hs[k], out=d_rec_mains[k])
            torch.mul(dpre, step_factors[k], out=dd_scales[k])
            # dz = dd W_{.z}^T per gate (12, B, N_z), then batch-major (B, 12 N_z).
            dzs[t] = torch.bmm(dd_steps[k], scales_t).transpose(0, 1).reshape(B, 12 * Nz)
            dhh.addmm_(dzs[t], w_z)
            dph, dhc = hyper.backward_step(
                t, dhh, dhc, hcs[t], hcs[t + 1], hyper_norm, hyper_masks[t], hyper_grads
            )
            d_rec_hypers[k].copy_(dph.view(B, 4 * Nh))
            dh = torch.mm(d_recs[k], w_h)
            dhh = torch.mm(dph.view(B, 4 * Nh), w_hyper)
        # The chunk's input gradients (d_x * dpre, and the hyper part of the recurrent
        # products' gradients), and sums over its rows: the recurrent weights' gradients,
        # z^T dd per gate ((12, N_z, K B) @ (12, K B, H)) and the bias gradient.
        torch.mul(dd[8:12], d[0:4], out=d_x_main[chunk].view(K * B, 4, H).transpose(0, 1))
        rows = d_rec[:K].view(K * B, -1)
        d_x_hyper[chunk].view(K * B, 4 * Nh).copy_(rows[:, 4 * H :])
        d_w_h.addmm_(rows.t(), tape.h[chunk].view(K * B, H))
        d_w_hyper.addmm_(rows[:, 4 * H :].t(), tape.hh[chunk].view(K * B, Nh))
        d_scale.baddbmm_(z.transpose(1, 2), dd)
        d_bias += dd[8:12].sum(1)
    dz = torch.cat(dzs)  # (T B, 12 N_z)
    d_w_z = torch.mm(dz.t(), tape.hh[1:].reshape(T * B, Nh))
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
        dz.sum(0),
        d_scale,
        d_bias.view(4 * H) if has_bias else None,
        *grads.totals(),
        *hyper_grads.totals(),
    )
