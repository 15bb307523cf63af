import pyro
import pytest
import torch
from torch import nn

from probnets.models.gated import BernoulliPrior, CostPenalty, LayerDAG


def _blocks():
    return [
        nn.Sequential(nn.LazyConv2d(4, 3, padding=1), nn.ReLU()),
        nn.MaxPool2d(2),
        nn.Sequential(nn.LazyConv2d(6, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Flatten(), nn.LazyLinear(3)),
    ]


@pytest.mark.parametrize("merge", ["concat", "sum", "max", "squeeze"])
@pytest.mark.parametrize("gate_per", ["layer", "feature_map"])
def test_shapes_of_every_merge_mode(merge, gate_per):
    pyro.set_rng_seed(0)
    m = LayerDAG(_blocks(), (2, 8, 8), merge=merge, gate_per=gate_per)
    widths = [s[0] for s in m.node_shapes]
    # Block 2 (pool) keeps its input's width: the merged width of x, L1.
    merged = {"concat": 2 + 4, "sum": 4, "max": 4, "squeeze": 4}[merge]
    assert m.node_shapes == [(2, 8, 8), (4, 8, 8), (merged, 4, 4), (6, 4, 4), (3, 1, 1)]
    assert m.target_sizes == [(8, 8), (8, 8), (4, 4), (4, 4)]
    expected_gates = 10 if gate_per == "layer" else sum(sum(widths[:k]) for k in range(1, 5))
    assert m.num_gates == expected_gates
    x = torch.randn(5, 2, 8, 8)
    assert m(x, torch.ones(m.num_gates)).shape == (5, 3)
    assert m(x, torch.ones(4, 1, m.num_gates)).shape == (4, 5, 3)
    assert m.edge_probs().shape == (5, 5)
    assert not torch.triu(m.edge_probs()).any()


def _gate_index(m, source, target):
    a, b = m.gate_slices[target - 1][source]
    return slice(a, b)


@pytest.mark.parametrize("merge", ["concat", "sum", "max", "squeeze"])
def test_closed_gates_remove_a_source(merge):
    # Close every connection out of the input: the output must not depend on x, although
    # it is the only source of signal.
    pyro.set_rng_seed(0)
    blocks = [nn.LazyConv2d(3, 3, padding=1), nn.LazyConv2d(3, 3, padding=1), nn.Flatten()]
    m = LayerDAG(blocks, (3, 4, 4), merge=merge)
    x1, x2 = torch.randn(2, 3, 3, 4, 4)
    gates = torch.ones(m.num_gates)
    assert not torch.allclose(m(x1, gates), m(x2, gates))
    for target in range(1, 4):
        gates[_gate_index(m, 0, target)] = 0
    assert torch.allclose(m(x1, gates), m(x2, gates))


def test_max_merge_removes_closed_inputs_instead_of_offering_zeros():
    blocks = [nn.Identity(), nn.Identity()]
    m = LayerDAG(blocks, (1, 1, 2), merge="max")
    x = -torch.ones(1, 1, 1, 2)  # all negative: a zero from a closed gate would win the max
    gates = torch.ones(m.num_gates)
    gates[_gate_index(m, 1, 2)] = 0
    assert torch.equal(m(x, gates), -torch.ones(1, 2))
    gates[:] = 0  # all inputs of every block closed: the block receives zeros
    assert torch.equal(m(x, gates), torch.zeros(1, 2))


def test_feature_map_gates_mask_single_channels():
    pyro.set_rng_seed(0)
    blocks = [nn.LazyConv2d(2, 1), nn.Flatten()]
    m = LayerDAG(blocks, (2, 3, 3), gate_per="feature_map")
    x1 = torch.randn(4, 2, 3, 3)
    x2 = x1.clone()
    x2[:, 0] = torch.randn(4, 3, 3)  # change channel 0 only
    gates = torch.ones(m.num_gates)
    assert not torch.allclose(m(x1, gates), m(x2, gates))
    for target in (1, 2):
        gates[_gate_index(m, 0, target).start] = 0  # channel 0 of x, into both blocks
    assert torch.allclose(m(x1, gates), m(x2, gates))


@pytest.mark.parametrize("resize", ["pool", "interpolate"])
def test_inputs_are_resized_to_the_smallest_map(resize):
    blocks = [nn.MaxPool2d(2), nn.MaxPool2d(2), nn.Identity()]
    m = LayerDAG(blocks, (1, 8, 8), merge="sum", resize=resize)
    assert m.target_sizes == [(8, 8), (4, 4), (2, 2)]
    x = torch.arange(64.0).view(1, 1, 8, 8)
    gates = torch.zeros(m.num_gates)
    gates[_gate_index(m, 0, 3)] = 1  # only x -> L3 open: L3 sees x resized to 2x2
    out = m(x, gates).view(2, 2)
    if resize == "pool":
        assert torch.allclose(out, torch.nn.functional.avg_pool2d(x, 4).view(2, 2))
    else:
        assert out.shape == (2, 2) and torch.all(out[1] > out[0])


def test_float64_and_training_end_to_end():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    m = LayerDAG(_blocks(), (2, 8, 8), merge="squeeze", cost=CostPenalty(1e-3, "flops")).double()
    x = torch.randn(6, 2, 8, 8, dtype=torch.float64)
    y = torch.randint(3, (6,))
    m.fit(x, y, num_steps=3, record_every=1)
    history = m.history
    assert history["gate_probs"].dtype == torch.float64
    probs = m.predict(x, num_samples=3)
    assert probs.dtype == torch.float64 and probs.shape == (6, 3)
    assert m.gate_costs("flops").dtype == torch.float64
    net = m.export_architecture(0.5)
    assert net.predict(x).dtype == torch.float64
    losses = [row["loss"] for row in net.fit(x, y, num_steps=2).history]
    assert len(losses) == 2


def test_hard_concrete_layer_gates_train():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    m = LayerDAG(_blocks(), (2, 8, 8), merge="sum", gate="hard_concrete")
    x = torch.randn(6, 2, 8, 8)
    y = torch.randint(3, (6,))
    before = m.gate_logits.detach().clone()
    m.fit(x, y, num_steps=2)
    assert not torch.equal(before, m.gate_logits.detach())


def test_gate_costs():
    m = LayerDAG(_blocks(), (2, 8, 8))
    assert torch.equal(m.gate_costs("edges"), torch.ones(m.num_gates))
    flops = m.gate_costs("flops")
    # x (2 channels) -> L1 at 8x8 carries 128 elements; L3 (6 x 4 x 4) -> head carries 96.
    assert flops[_gate_index(m, 0, 1)].item() == 128
    assert flops[_gate_index(m, 3, 4)].item() == 96


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match="merge: expected one of"):
        LayerDAG(_blocks(), (2, 8, 8), merge="mean")
    with pytest.raises(ValueError, match="gate_per: expected one of"):
        LayerDAG(_blocks(), (2, 8, 8), gate_per="neuron")
    with pytest.raises(ValueError, match="resize: expected one of"):
        LayerDAG(_blocks(), (2, 8, 8), resize="crop")
    with pytest.raises(ValueError, match="input_shape: expected"):
        LayerDAG(_blocks(), (8, 8))
    with pytest.raises(TypeError, match="blocks: expected a non-empty sequence"):
        LayerDAG([], (2, 8, 8))
    with pytest.raises(ValueError, match="squeeze_channels: only meaningful"):
        LayerDAG(_blocks(), (2, 8, 8), squeeze_channels=4)
    with pytest.raises(ValueError, match=r"blocks\[0\]: expected an output of shape"):
        LayerDAG([nn.Flatten(0)], (2, 8, 8))
    m = LayerDAG(_blocks(), (2, 8, 8))
    with pytest.raises(ValueError, match=r"x: expected shape \(batch,\) \+ \(2, 8, 8\)"):
        m(torch.randn(3, 1, 8, 8), torch.ones(m.num_gates))
    with pytest.raises(TypeError, match=r"y: expected int64 class labels.*y.long\(\)"):
        m.fit(torch.randn(3, 2, 8, 8), torch.randn(3, 3), num_steps=1)


def test_flops_cost_prunes_feature_map_gates():
    """A FLOPs cost switches off the feature maps whose activation traffic the likelihood
    does not pay for; under a neutral prior and no cost the same run keeps them all."""
    torch.set_num_threads(1)
    x = torch.randn(64, 2, 8, 8)
    y = (x[:, 0].mean((1, 2)) > 0).long()  # one channel's mean decides the class
    carried = {}
    for weight in (0.0, 0.2):
        pyro.clear_param_store()
        pyro.set_rng_seed(3)
        m = LayerDAG(
            _blocks(),
            (2, 8, 8),
            merge="concat",
            gate_per="feature_map",
            gate="hard_concrete",
            init_logit=2.0,
            prior=BernoulliPrior(0.5),
            cost=CostPenalty(weight, "flops") if weight else None,
        )
        m.fit(x, y, num_steps=150, lr=0.01, gate_lr=0.1, gate_betas=(0.9, 0.9))
        costs = m.gate_costs("flops")
        carried[weight] = float((costs * (m.gate_probs() > 0.5)).sum() / costs.sum())
    assert carried[0.0] == 1.0
    assert carried[0.2] < 0.3
