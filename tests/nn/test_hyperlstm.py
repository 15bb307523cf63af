import gc

import pyro
import pytest
import torch
from torch import nn

from probnets.nn import HyperLSTM, HyperLSTMCell, LayerNormLSTM, LayerNormLSTMCell

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
    assert state[0].shape == ref_h.shape and state[1].shape == ref_c.shape
    if cls is HyperLSTM:
        assert len(state) == 4
        assert state[2].shape == state[3].shape == (num_layers, 4, NH)
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
    out_pair, _ = m(x, state[:2])
    out_zero_hyper, _ = m(x, (state[0], state[1], torch.zeros_like(state[2]),
                              torch.zeros_like(state[3])))
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
            for name in ("weight_ih", "weight_hh", "gate_norm_weight", "gate_norm_bias",
                         "cell_norm_weight", "cell_norm_bias"):
                getattr(lc, name).copy_(getattr(hc, name)
                                        + 0.1 * torch.randn_like(getattr(hc, name)))
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
        hyper_h.append(state[2])
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
    for u, v in zip((a[0], *a[1]), (b[0], *b[1])):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    m.train()
    c, d = m(x), m(x)
    assert (c[0] - d[0]).abs().max() > 1e-6
    assert (c[1][3] - d[1][3]).abs().max() > 1e-6  # the hyper cell's memory
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
    with pytest.raises(ValueError,
                       match=r"input must have last dimension input_size=5, got shape \(3, 2, 4\)"):
        m(torch.randn(3, 2, 4))
    with pytest.raises(ValueError, match="input must have shape"):
        m(torch.randn(3, 2, 1, I))
    with pytest.raises(ValueError, match=r"state h must have shape \(2, 2, 7\), got \(1, 2, 7\)"):
        m(torch.randn(3, 2, I), (torch.zeros(1, 2, H), torch.zeros(1, 2, H)))
    with pytest.raises(ValueError,
                       match=r"state hyper_h must have shape \(2, 2, 6\), got \(2, 2, 7\)"):
        m(torch.randn(3, 2, I), (torch.zeros(2, 2, H),) * 4)
    with pytest.raises(ValueError, match="state must be a tuple"):
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


@pytest.mark.parametrize("recurrent_dropout, hyper_recurrent_dropout",
                         [(0.0, 0.0), (0.4, 0.0), (0.4, 0.3)])
@pytest.mark.parametrize("bias", [True, False])
def test_hand_written_backward_matches_numerical_jacobian(monkeypatch, recurrent_dropout,
                                                          hyper_recurrent_dropout, bias):
    """The scan's backward against finite differences, for every input, parameter and
    output (sequence, final state and hyper outputs), with and without dropout masks on the
    main and the hyper cell's candidates.
    gradcheck differentiates one graph several times, so this also checks that repeated
    backward passes do not accumulate into each other."""
    from probnets.nn.hyperlstm import _HyperLSTMScan

    pyro.set_rng_seed(9)
    cell = HyperLSTMCell(2, 3, hyper_size=4, hyper_embedding_size=2, bias=bias,
                         recurrent_dropout=recurrent_dropout,
                         hyper_recurrent_dropout=hyper_recurrent_dropout).double().train()
    calls = []
    original = _HyperLSTMScan.apply
    monkeypatch.setattr(_HyperLSTMScan, "apply",
                        lambda *args: calls.append(args) or original(*args))
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
    inputs = tuple(a.detach().clone().requires_grad_(i not in (mask_index, hyper_mask_index))
                   if torch.is_tensor(a) else a for i, a in enumerate(args))
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
        state = tuple(s.detach() for s in state)

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
        (out.pow(2).sum() + final[1].sum() + final[2].sum()).backward()
        results.append((out, *final, xi.grad, *(p.grad for p in m.parameters())))
    assert len(results[0]) == len(results[1]) == 6 + len(list(eager.parameters()))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)
