import copy
import gc
import pickle

import pyro
import pytest
import torch
from torch import nn

from probnets.nn import HyperLSTM, HyperLSTMCell, HyperLSTMState, LayerNormLSTM, LayerNormLSTMCell

I, H, NH, NZ = 5, 7, 6, 3


def make(cls, **kw):
    if cls is HyperLSTM:
        kw = dict(hyper_size=NH, hyper_embedding_size=NZ, **kw)
    return cls(I, H, **kw)


@pytest.mark.parametrize("cls", [HyperLSTM, LayerNormLSTM])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
def test_shapes_match_nn_lstm(cls, num_layers, batch_first):
    pyro.set_rng_seed(0)
    x = torch.randn(4, 9, I) if batch_first else torch.randn(9, 4, I)
    ref_out, (ref_h, ref_c) = nn.LSTM(I, H, num_layers, batch_first=batch_first)(x)
    out, state = make(cls, num_layers=num_layers, batch_first=batch_first)(x)
    assert out.shape == ref_out.shape
    h_n, c_n = state
    assert h_n.shape == ref_h.shape and c_n.shape == ref_c.shape
    if cls is HyperLSTM:
        assert isinstance(state, HyperLSTMState)
        assert state.hyper_h.shape == state.hyper_c.shape == (num_layers, 4, NH)
    # The last layer's final h is the output at the last step.
    last = out[:, -1] if batch_first else out[-1]
    torch.testing.assert_close(state[0][-1], last)
    # Unbatched input, as nn.LSTM accepts it.
    out1, state1 = make(cls, num_layers=num_layers, batch_first=batch_first)(torch.randn(9, I))
    assert out1.shape == (9, H) and state1[0].shape == (num_layers, H)


@pytest.mark.parametrize("cls", [HyperLSTM, LayerNormLSTM])
@pytest.mark.parametrize("batch_first", [False, True])
def test_state_carried_across_halves_equals_whole(cls, batch_first):
    pyro.set_rng_seed(1)
    m = make(cls, num_layers=2, batch_first=batch_first).double()
    x = torch.randn(3, 10, I, dtype=torch.float64)
    if not batch_first:
        x = x.transpose(0, 1)
    dim = 1 if batch_first else 0
    first, second = x.split([4, 6], dim=dim)
    out, state = m(x)
    out_a, state_a = m(first)
    out_b, state_b = m(second, state_a)
    torch.testing.assert_close(torch.cat([out_a, out_b], dim=dim), out, rtol=0, atol=1e-12)
    if cls is HyperLSTM:
        state_b, state = state_b.astuple(), state.astuple()
    for a, b in zip(state_b, state):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert out.dtype == torch.float64 and all(s.dtype == torch.float64 for s in state)


def test_hyper_state_matters_and_h_c_pair_starts_hyper_at_zero():
    pyro.set_rng_seed(2)
    m = make(HyperLSTM).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))  # move off the init, where d ignores the hyper cell
    x = torch.randn(6, 2, I, dtype=torch.float64)
    _, state = m(x)
    out_full, _ = m(x, state)
    out_pair, _ = m(x, tuple(state))
    h, c = state
    out_zero_hyper, _ = m(
        x, (h, c, torch.zeros_like(state.hyper_h), torch.zeros_like(state.hyper_c))
    )
    torch.testing.assert_close(out_pair, out_zero_hyper)
    assert (out_full - out_pair).abs().max() > 1e-6


def test_initialisation_equals_layer_norm_lstm():
    """At init d_x = d_h = 0.1 and the bias correction is 0 whatever the hyper cell says, so
    gates are LN(0.1 a) = LN(a) up to eps: the HyperLSTM is a LayerNormLSTM with the same
    W_x, W_h at every step (the hyper cell's own weights are randomised to show it does not
    matter)."""
    pyro.set_rng_seed(3)
    hyper = make(HyperLSTM, num_layers=2, eps=1e-12).double()
    ln = make(LayerNormLSTM, num_layers=2, eps=1e-12).double()
    with torch.no_grad():
        for hc, lc in zip(hyper.cells, ln.cells):
            for name in (
                "weight_ih",
                "weight_hh",
                "gate_norm_weight",
                "gate_norm_bias",
                "cell_norm_weight",
                "cell_norm_bias",
            ):
                getattr(lc, name).copy_(
                    getattr(hc, name) + 0.1 * torch.randn_like(getattr(hc, name))
                )
                getattr(hc, name).copy_(getattr(lc, name))
            for p in hc.hyper_cell.parameters():
                p.normal_()
            d_x, d_h, delta = hc.scales(torch.randn(5, NH, dtype=torch.float64))
            torch.testing.assert_close(d_x, torch.full_like(d_x, 0.1))
            torch.testing.assert_close(d_h, torch.full_like(d_h, 0.1))
            assert delta.abs().max() == 0
    x = torch.randn(20, 3, I, dtype=torch.float64)
    out_h, state_h, modulation = hyper(x, return_modulation=True)
    out_l, state_l = ln(x)
    torch.testing.assert_close(out_h, out_l, rtol=0, atol=1e-7)
    torch.testing.assert_close(state_h[1], state_l[1], rtol=0, atol=1e-7)
    assert modulation.shape == (20, 3, 2, 4) and modulation.abs().max() == 0


def test_modulation_measures_weight_change():
    pyro.set_rng_seed(4)
    m = make(HyperLSTM, batch_first=True).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, 5, I, dtype=torch.float64)
    _, _, modulation = m(x, return_modulation=True)
    assert modulation.shape == (2, 5, 1, 4)
    # Recompute ||diag(d_t) W - diag(d_{t-1}) W||_F for gate f at step 3 of example 1.
    cell = m.cells[0]
    hyper_h = []
    state = None
    for t in range(5):
        state = cell(x[:, t], state)
        hyper_h.append(state.hyper_h)
    _, d_prev, _ = cell.scales(hyper_h[2])
    _, d_now, _ = cell.scales(hyper_h[3])
    w_f = cell.weight_hh.view(4, H, H)[1]
    expected = (d_now[1, 1].unsqueeze(-1) * w_f - d_prev[1, 1].unsqueeze(-1) * w_f).norm()
    torch.testing.assert_close(modulation[1, 3, 0, 1], expected)


@pytest.mark.parametrize("cls", [HyperLSTMCell, LayerNormLSTMCell])
def test_cell_step_matches_sequence(cls):
    pyro.set_rng_seed(5)
    kw = dict(hyper_size=NH, hyper_embedding_size=NZ) if cls is HyperLSTMCell else {}
    cell = cls(I, H, **kw).double()
    seq = (HyperLSTM if cls is HyperLSTMCell else LayerNormLSTM)(I, H, **kw).double()
    seq.cells[0] = cell
    x = torch.randn(4, 3, I, dtype=torch.float64)
    out, _ = seq(x)
    state = None
    for t in range(4):
        state = cell(x[t], state)
        torch.testing.assert_close(state[0], out[t])


@pytest.mark.parametrize("cls", [HyperLSTM, LayerNormLSTM])
def test_dropout_only_in_training(cls):
    pyro.set_rng_seed(6)
    m = make(cls, num_layers=2, dropout=0.5, recurrent_dropout=0.5).double()
    x = torch.randn(5, 3, I, dtype=torch.float64)
    m.eval()
    a, b = m(x)[0], m(x)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    m.train()
    c, d = m(x)[0], m(x)[0]
    assert (c - d).abs().max() > 1e-6
    assert (c - a).abs().max() > 1e-6


def test_hyper_recurrent_dropout_only_in_training():
    """Dropout on the hyper cell's candidate reaches the main output through the weight
    scalings (once the embeddings depend on the hyper state) and only in training."""
    pyro.set_rng_seed(13)
    m = make(HyperLSTM, hyper_recurrent_dropout=0.5).double()
    with torch.no_grad():
        m.cells[0].embedding_weight.normal_(0.0, 0.5)
    x = torch.randn(5, 3, I, dtype=torch.float64)
    m.eval()
    a, b = m(x), m(x)
    for u, v in zip((a[0], *a[1].astuple()), (b[0], *b[1].astuple())):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    m.train()
    c, d = m(x), m(x)
    assert (c[0] - d[0]).abs().max() > 1e-6
    assert (c[1].hyper_c - d[1].hyper_c).abs().max() > 1e-6  # the hyper cell's memory
    assert (c[0] - a[0]).abs().max() > 1e-6


def test_recurrent_dropout_keeps_memory():
    """Dropping every candidate unit leaves c_t = sigma(f) c_{t-1}: memory decays but is
    never erased (Semeniuta et al. 2016)."""
    pyro.set_rng_seed(7)
    cell = LayerNormLSTMCell(I, H, recurrent_dropout=0.999999).double().train()
    c0 = torch.randn(2, H, dtype=torch.float64)
    h, c = cell(torch.randn(2, I, dtype=torch.float64), (torch.zeros_like(c0), c0))
    ratio = c / c0
    assert ((ratio > 0) & (ratio < 1)).all()


def test_gradients_float64():
    pyro.set_rng_seed(8)
    m = make(HyperLSTM, num_layers=2).double()
    x = torch.randn(4, 2, I, dtype=torch.float64, requires_grad=True)
    small = torch.randn(2, 1, I, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: m(x)[0].pow(2).sum(), (small,))
    m(x)[0].pow(2).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float64, name


def test_errors():
    m = make(HyperLSTM, num_layers=2)
    with pytest.raises(
        ValueError, match=r"input must have last dimension input_size=5, got shape \(3, 2, 4\)"
    ):
        m(torch.randn(3, 2, 4))
    with pytest.raises(ValueError, match="input must have shape"):
        m(torch.randn(3, 2, 1, I))
    with pytest.raises(ValueError, match=r"state h must have shape \(2, 2, 7\), got \(1, 2, 7\)"):
        m(torch.randn(3, 2, I), (torch.zeros(1, 2, H), torch.zeros(1, 2, H)))
    with pytest.raises(
        ValueError, match=r"state hyper_h must have shape \(2, 2, 6\), got \(2, 2, 7\)"
    ):
        m(torch.randn(3, 2, I), (torch.zeros(2, 2, H),) * 4)
    with pytest.raises(TypeError, match="state must be a pair .h_0, c_0., the HyperLSTMState"):
        m(torch.randn(3, 2, I), torch.zeros(2, 2, H))
    with pytest.raises(TypeError, match="PackedSequence"):
        m(nn.utils.rnn.pack_sequence([torch.randn(3, I)]))
    with pytest.raises(ValueError, match="hidden_size must be a positive int, got 0"):
        HyperLSTM(I, 0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        LayerNormLSTM(I, H, dropout=1.5)
    with pytest.raises(ValueError, match=r"hyper_recurrent_dropout must be in \[0, 1\), got 1.0"):
        HyperLSTM(I, H, hyper_recurrent_dropout=1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 5\), got shape \(5,\)"):
        m.cells[0](torch.randn(I))


@pytest.mark.parametrize(
    "recurrent_dropout, hyper_recurrent_dropout", [(0.0, 0.0), (0.4, 0.0), (0.4, 0.3)]
)
@pytest.mark.parametrize("bias", [True, False])
def test_hand_written_backward_matches_numerical_jacobian(
    monkeypatch, recurrent_dropout, hyper_recurrent_dropout, bias
):
    """The scan's backward against finite differences, for every input, parameter and
    output (sequence, final state and hyper outputs), with and without dropout masks on the
    main and the hyper cell's candidates.
    gradcheck differentiates one graph several times, so this also checks that repeated
    backward passes do not accumulate into each other."""
    from probnets.nn.hyperlstm import _HyperLSTMScan

    pyro.set_rng_seed(9)
    cell = (
        HyperLSTMCell(
            2,
            3,
            hyper_size=4,
            hyper_embedding_size=2,
            bias=bias,
            recurrent_dropout=recurrent_dropout,
            hyper_recurrent_dropout=hyper_recurrent_dropout,
        )
        .double()
        .train()
    )
    calls = []
    original = _HyperLSTMScan.apply
    monkeypatch.setattr(
        _HyperLSTMScan, "apply", lambda *args: calls.append(args) or original(*args)
    )
    x = torch.randn(3, 2, 2, dtype=torch.float64)
    state = tuple(0.5 * torch.randn(2, n, dtype=torch.float64) for n in (3, 3, 4, 4))
    cell.scan(cell.input_projection(x), state)
    (args,) = calls
    mask_index, hyper_mask_index = 20, 21
    assert (args[mask_index] is None) == (recurrent_dropout == 0.0)
    assert (args[hyper_mask_index] is None) == (hyper_recurrent_dropout == 0.0)
    if hyper_recurrent_dropout:
        assert args[hyper_mask_index].shape == (3, 2, 4)
        assert (args[hyper_mask_index] == 0).any()
    inputs = tuple(
        a.detach().clone().requires_grad_(i not in (mask_index, hyper_mask_index))
        if torch.is_tensor(a)
        else a
        for i, a in enumerate(args)
    )
    assert torch.autograd.gradcheck(original, inputs, atol=1e-6)


def test_training_steps_do_not_accumulate_tensors():
    """Truncated back-propagation keeps the number of live tensors constant: the scan's
    autograd context must not hold its own outputs (that cycle is never freed and leaked
    every step's saved tensors, ~10 MB per step for a character model)."""

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))

    pyro.set_rng_seed(10)
    m = make(HyperLSTM)
    state = None

    def step():
        nonlocal state
        out, state = m(torch.randn(6, 3, I), state)
        (out.sum() + state[1].sum()).backward()
        state = state.detach()

    for _ in range(2):
        step()
    before = live_tensors()
    for _ in range(5):
        step()
    assert live_tensors() == before


def test_compiled_steps_equal_eager():
    """``compile_steps=True`` runs the same per-step functions through ``torch.compile``:
    outputs, final states and every gradient equal the eager scan's (float64, two layers,
    recurrent dropout on both cells, a state carried in)."""
    pyro.set_rng_seed(11)
    dropouts = dict(recurrent_dropout=0.3, hyper_recurrent_dropout=0.2)
    eager = make(HyperLSTM, num_layers=2, **dropouts).double().train()
    compiled = make(HyperLSTM, num_layers=2, compile_steps=True, **dropouts)
    compiled.double().train().load_state_dict(eager.state_dict())
    x = torch.randn(6, 3, I, dtype=torch.float64)
    state = tuple(0.5 * torch.randn(2, 3, n, dtype=torch.float64) for n in (H, H, NH, NH))
    results = []
    for m in (eager, compiled):
        pyro.set_rng_seed(12)  # the same dropout masks
        xi = x.clone().requires_grad_()
        out, final = m(xi, state)
        (out.pow(2).sum() + final[1].sum() + final.hyper_h.sum()).backward()
        results.append((out, *final.astuple(), xi.grad, *(p.grad for p in m.parameters())))
    assert len(results[0]) == len(results[1]) == 6 + len(list(eager.parameters()))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("steps", [13, 3])  # several chunks of the eager backward, and one
@pytest.mark.parametrize("bias", [True, False])
def test_eager_scan_equals_the_functional_chunk_functions(monkeypatch, steps, bias):
    """The eager pass (buffers written in place, chunked backward) against the functional
    chunk functions that ``compile_steps=True`` compiles, run uncompiled: outputs, final
    states and every gradient agree (float64, two layers, dropout on both cells' candidates,
    a state carried in, a loss on every output)."""
    from probnets.nn import hyperlstm

    monkeypatch.setattr(
        hyperlstm,
        "_chunk_functions",
        lambda compiled: (hyperlstm._scan_forward_chunk, hyperlstm._scan_backward_chunk),
    )
    pyro.set_rng_seed(13)
    m = (
        make(HyperLSTM, num_layers=2, bias=bias, recurrent_dropout=0.3, hyper_recurrent_dropout=0.2)
        .double()
        .train()
    )
    x = torch.randn(steps, 3, I, dtype=torch.float64)
    state = tuple(0.5 * torch.randn(2, 3, n, dtype=torch.float64) for n in (H, H, NH, NH))
    results = []
    for functional in (False, True):
        for cell in m.cells:
            cell.compile_steps = functional
        m.zero_grad()
        pyro.set_rng_seed(14)  # the same dropout masks
        xi = x.clone().requires_grad_()
        out, final = m(xi, state)
        loss = out.pow(2).sum() + final[1].sum() + final.hyper_h.sum() + final.hyper_c.pow(2).sum()
        loss.backward()
        results.append((out, *final.astuple(), xi.grad, *(p.grad for p in m.parameters())))
    assert all(r is not None for r in results[0])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [nn.LSTM, HyperLSTM, LayerNormLSTM])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("unbatched", [False, True])
def test_drop_in_for_nn_lstm(cls, batch_first, unbatched):
    """The same lines of code run with nn.LSTM and the HyperLSTM: `out, (h_n, c_n) = m(x)`,
    then `m(x, (h_n, c_n))` with the state passed back, at nn.LSTM's shapes."""
    pyro.set_rng_seed(14)
    kw = {"hyper_size": NH, "hyper_embedding_size": NZ} if cls is HyperLSTM else {}
    m = cls(I, H, num_layers=2, batch_first=batch_first, **kw)
    x = torch.randn(9, I) if unbatched else torch.randn(4, 9, I)  # 4 is B or T
    out, (h_n, c_n) = m(x)
    state_shape = (2, H) if unbatched else (2, 4 if batch_first else 9, H)
    assert out.shape == x.shape[:-1] + (H,)
    assert h_n.shape == c_n.shape == state_shape
    out2, (h2, c2) = m(x, (h_n, c_n))
    assert out2.shape == out.shape and h2.shape == c2.shape == state_shape
    out3, _ = m(x, (torch.zeros(state_shape), torch.zeros(state_shape)))
    torch.testing.assert_close(out3, out)


def test_state_object_carries_the_hyper_state():
    pyro.set_rng_seed(15)
    m = make(HyperLSTM, num_layers=2).double()
    x = torch.randn(6, 3, I, dtype=torch.float64, requires_grad=True)
    _, state = m(x)
    assert len(state) == 2 and isinstance(state, tuple)
    h, _, hyper_h, hyper_c = state.astuple()
    assert h is state[0] and hyper_c is state.hyper_c and hyper_h.shape == (2, 3, NH)
    # The flat tuple of a weights-only checkpoint continues exactly as the state object.
    torch.testing.assert_close(m(x, state.astuple())[0], m(x, state)[0], rtol=0, atol=0)
    detached = state.detach()
    assert isinstance(detached, HyperLSTMState)
    assert not any(s.requires_grad for s in detached.astuple())
    assert all(s.requires_grad for s in state.astuple())
    for copied in (copy.deepcopy(detached), pickle.loads(pickle.dumps(detached))):
        assert isinstance(copied, HyperLSTMState)
        for a, b in zip(copied.astuple(), detached.astuple()):
            assert torch.equal(a, b)
    assert "hyper_h=" in repr(detached)
    # The cell returns the same kind of state, like nn.LSTMCell's pair.
    cell = m.cells[0]
    step = cell(x[0].detach())
    assert isinstance(step, HyperLSTMState) and step.hyper_h.shape == (3, NH)
    step_h, _ = cell(x[1].detach(), step)
    zeros = tuple(torch.zeros(3, n, dtype=torch.float64) for n in (H, H, NH, NH))
    outputs = cell.scan(cell.input_projection(x[:2].detach()), zeros)[0]
    torch.testing.assert_close(step_h, outputs[1])


def test_default_hyper_size_follows_hidden_size():
    m = HyperLSTM(256, 256)
    assert m.hyper_size == 32 and m.hyper_embedding_size == 4
    assert m.cells[0].hyper_cell.hidden_size == 32 and m.cells[0].scale_weight.shape == (12, 4, 256)
    assert HyperLSTM(3, 20).hyper_size == 4 and HyperLSTMCell(3, 1000).hyper_size == 125
    assert HyperLSTM(3, 20, hyper_size=7).cells[0].hyper_size == 7


def test_state_dict_of_other_hyper_sizes_loads_into_those_sizes_and_says_so():
    old = HyperLSTM(I, H, num_layers=2, hyper_size=128, hyper_embedding_size=16)
    again = HyperLSTM(I, H, num_layers=2, hyper_size=128, hyper_embedding_size=16)
    again.load_state_dict(old.state_dict())
    for a, b in zip(old.parameters(), again.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(
        RuntimeError,
        match="cells.0.: the state dict has hyper_size=128, "
        "hyper_embedding_size=16, this module 4 and 4",
    ):
        HyperLSTM(I, H, num_layers=2).load_state_dict(old.state_dict())


def _scan_inputs(bias=True, dropout=0.0, T=3, differentiable=range(20)):
    """The arguments of one `_HyperLSTMScan.apply` call of a small float64 cell, detached,
    with those at the indices ``differentiable`` requiring grad."""
    from probnets.nn import hyperlstm as module

    pyro.set_rng_seed(16)
    cell = HyperLSTMCell(
        2,
        3,
        hyper_size=4,
        hyper_embedding_size=2,
        bias=bias,
        recurrent_dropout=dropout,
        hyper_recurrent_dropout=dropout,
    )
    cell = cell.double().train()
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))  # off the init, where d ignores the hyper cell
    calls = []
    original = module._HyperLSTMScan.apply
    module._HyperLSTMScan.apply = lambda *args: calls.append(args) or original(*args)
    try:
        x = torch.randn(T, 2, 2, dtype=torch.float64)
        state = tuple(0.5 * torch.randn(2, n, dtype=torch.float64) for n in (3, 3, 4, 4))
        cell.scan(cell.input_projection(x), state)
    finally:
        module._HyperLSTMScan.apply = original
    (args,) = calls
    return tuple(
        a.detach().clone().requires_grad_(i in differentiable) if torch.is_tensor(a) else a
        for i, a in enumerate(args)
    )


# Of _HyperLSTMScan's inputs: the main input, the four states, the recurrent weights, the
# modulation, the main gate gains and the hyper cell's cell gain.
_SOME_INPUTS = (0, 2, 3, 4, 5, 6, 10, 12, 18)


@pytest.mark.parametrize(
    "bias, dropout, differentiable",
    [
        (True, 0.4, _SOME_INPUTS),
        pytest.param(True, 0.0, range(20), marks=pytest.mark.slow),
        pytest.param(False, 0.4, range(20), marks=pytest.mark.slow),
    ],
)
def test_second_order_gradients_are_right(bias, dropout, differentiable):
    """gradgradcheck of the whole scan: a backward pass that records a graph differentiates
    an autograd recomputation, so second derivatives (in inputs, states and parameters,
    dropout masks held fixed; all of them in the slow cases) match finite differences of
    the first."""
    from probnets.nn.hyperlstm import _HyperLSTMScan

    inputs = _scan_inputs(bias, dropout, T=2, differentiable=differentiable)
    assert torch.autograd.gradgradcheck(_HyperLSTMScan.apply, inputs, atol=1e-5)


def test_recorded_backward_gives_the_hand_written_gradients():
    """First derivatives with `create_graph=True` (the recorded path) equal those of the
    hand-written pass, and both equal plain autograd through the step-by-step reference."""
    from probnets.nn.hyperlstm import _HyperLSTMScan, _recorded_scan

    inputs = _scan_inputs(T=4)
    differentiable = [a for a in inputs if torch.is_tensor(a) and a.requires_grad]
    weights = [torch.randn(o.shape, dtype=torch.float64) for o in _HyperLSTMScan.apply(*inputs)]

    def grads(function, create_graph):
        outputs = function(*inputs)
        loss = sum((w * o).sum() for w, o in zip(weights, outputs))
        return torch.autograd.grad(loss, differentiable, create_graph=create_graph)

    hand = grads(_HyperLSTMScan.apply, False)
    recorded = grads(_HyperLSTMScan.apply, True)
    reference = grads(lambda *args: _recorded_scan(*args[:-1]), False)
    assert all(g.requires_grad for g in recorded) and not any(g.requires_grad for g in hand)
    for a, b, c in zip(hand, recorded, reference):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(b, c, rtol=1e-9, atol=1e-12)


def test_rebar_step_through_a_hyperlstm_matches_plain_autograd(monkeypatch):
    """REBAR differentiates its control variate with `create_graph=True` and then takes
    the gradient of the estimator's variance in the temperature and eta: second-order
    autograd through the HyperLSTM in the model. Every gradient of a REBAR step equals the
    one with the HyperLSTM's scan replaced by plain autograd through the same steps."""
    import pyro.distributions as dist

    from probnets.infer import REBAR_ELBO
    from probnets.nn import hyperlstm as module

    pyro.set_rng_seed(17)
    rnn = HyperLSTM(2, 3, hyper_size=4, hyper_embedding_size=2).double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    on, off = torch.randn(2, 4, 2, dtype=torch.float64).unbind(0)  # input sequences (T=4)

    def model():
        b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.4, dtype=torch.float64)))
        flat = b.reshape(-1, 1, 1)  # (particles, 1, 1)
        x = flat * on + (1 - flat) * off  # (particles, T, 2)
        out, _ = rnn(x.transpose(0, 1))
        mean = out[-1].sum(-1).reshape(b.shape)
        pyro.sample("y", dist.Normal(mean, 0.5), obs=torch.tensor(0.8, dtype=torch.float64))

    def guide():
        theta = pyro.param("theta", torch.tensor(0.3, dtype=torch.float64))
        pyro.sample("b", dist.Bernoulli(logits=theta))

    def rebar_step():
        pyro.clear_param_store()
        pyro.set_rng_seed(18)
        elbo = REBAR_ELBO(num_particles=3)
        pyro.infer.SVI(model, guide, pyro.optim.SGD({"lr": 0.0}), loss=elbo).step()
        store = pyro.get_param_store()
        for name in store:
            store[name].unconstrained().grad = None
        loss = elbo.loss_and_grads(model, guide)
        return loss, {name: store[name].unconstrained().grad.clone() for name in store}

    loss, grads = rebar_step()
    assert set(grads) == {"theta", "cv.rebar.eta.theta", "cv.rebar.log_temperature.b"}
    assert grads["cv.rebar.log_temperature.b"].abs() > 1e-8  # the second-order path counts
    monkeypatch.setattr(
        module._HyperLSTMScan, "apply", lambda *args: module._recorded_scan(*args[:-1])
    )
    reference_loss, reference = rebar_step()
    assert loss == pytest.approx(reference_loss, rel=1e-12)
    for name in grads:
        torch.testing.assert_close(grads[name], reference[name], rtol=1e-8, atol=1e-12)


def test_bad_input_names_the_argument():
    m = make(HyperLSTM, num_layers=2)
    x = torch.randn(3, 2, I)
    with pytest.raises(
        TypeError,
        match=r"input must be a torch.Tensor, got numpy.ndarray; "
        r"convert it with torch.as_tensor",
    ):
        m(x.numpy())
    with pytest.raises(
        TypeError,
        match=r"input must have dtype torch.float32 .* got "
        r"torch.float64; convert it with .float\(\)",
    ):
        m(x.double())
    with pytest.raises(TypeError, match=r"input must have dtype torch.float32 .* got torch.int64"):
        m(torch.ones(3, 2, I, dtype=torch.long))
    with pytest.raises(TypeError, match=r"input must have dtype torch.float64 .* \.double\(\)"):
        make(HyperLSTM).double()(x)
    with pytest.raises(
        ValueError,
        match=r"input must have at least one time step, got shape "
        r"\(0, 2, 5\)",
    ):
        m(torch.randn(0, 2, I))
    zeros = torch.zeros(2, 2, H)
    with pytest.raises(TypeError, match="state c must be a torch.Tensor, got numpy.ndarray"):
        m(x, (zeros, zeros.numpy()))
    with pytest.raises(TypeError, match="state h must have dtype torch.float32"):
        m(x, (zeros.double(), zeros))
    with pytest.raises(
        TypeError, match=r"state must be a pair \(h_0, c_0\).*got tuple of length 3"
    ):
        m(x, (zeros, zeros, zeros))
    with pytest.raises(ValueError, match=r"state hyper_c must have shape \(2, 2, 6\)"):
        m(x, (zeros, zeros, torch.zeros(2, 2, NH), torch.zeros(2, 1, NH)))
    with pytest.raises(ValueError, match=r"state c must have shape \(2, 2, 7\), got \(2, 7\)"):
        m(x, (zeros, torch.zeros(2, H)))
    cell = m.cells[0]
    with pytest.raises(TypeError, match="x must have dtype torch.float32"):
        cell(torch.randn(2, I, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"state hyper_h must have shape \(2, 6\), got \(2, 7\)"):
        cell(x[0], (torch.zeros(2, H),) * 4)
    with pytest.raises(TypeError, match="state must be a pair"):
        cell(x[0], torch.zeros(2, H))
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        LayerNormLSTMCell(I, H)([0.0] * I)
    # NaN and inf are computed with, as nn.LSTM does.
    bad = x.clone()
    bad[1, 0, 0] = float("nan")
    out, _ = m(bad)
    assert out[1:, 0].isnan().all() and not out[:, 1].isnan().any()
