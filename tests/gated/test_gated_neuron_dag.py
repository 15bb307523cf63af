import pyro
import pytest
import torch

from probnets.data.dag_toy import Teacher, teacher_forward
from probnets.infer import DisARM_ELBO
from probnets.models.gated import BernoulliPrior, BetaBernoulliPrior, CostPenalty, NeuronDAG
from probnets.models.gated.structure import (
    auroc,
    match_hidden_units,
    neuron_dag_edges,
    path_strength,
    permute_hidden,
    reachability,
    structural_hamming_distance,
    topological_levels,
)


def test_candidate_edges_form_a_constrained_dag():
    m = NeuronDAG(5, 16, 4)
    n = 25
    assert m.num_gates == 16 * 5 + 16 * 15 // 2 + 4 * 21 == 284
    cand = m.candidate_mask()
    assert cand.shape == (n, n)
    assert not torch.triu(cand).any()  # strictly lower-triangular: no cycles, no self-loops
    assert not cand[:5].any()  # nothing feeds an input
    assert not cand[:, 21:].any()  # outputs feed nothing (no output->output)
    assert cand[21:, :21].all()  # every input and hidden node may feed every output
    assert cand[5:21, :5].all()  # inputs may feed every hidden node
    probs = m.edge_probs()
    assert probs.shape == (n, n) and (probs[~cand] == 0).all() and (probs[cand] > 0).all()


def test_topological_levels_and_reachability():
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[1, 0] = mask[2, 1] = mask[4, 0] = mask[4, 2] = True
    assert topological_levels(mask).tolist() == [0, 1, 2, 0, 3]
    reach = reachability(mask)
    assert reach[4, 0] and reach[4, 1] and reach[2, 0] and not reach[3].any()
    with pytest.raises(ValueError, match="strictly lower-triangular"):
        topological_levels(mask.T)


def _reference_teacher(m, gates):
    """The same network as an independent neuron-by-neuron teacher."""
    adj = m.to_matrix(m.weight.detach() * gates)
    bias = torch.cat([adj.new_zeros(m.num_inputs), m.bias.detach()])
    return Teacher(adj != 0, adj, bias, m.num_inputs, m.num_hidden, m.num_outputs)


@pytest.mark.parametrize("method", ["auto", "levels", "dense", "sequential"])
def test_parallel_evaluation_equals_neuron_by_neuron_reference(method):
    pyro.set_rng_seed(0)
    m = NeuronDAG(4, 12, 3, method=method).double()
    x = torch.randn(9, 4, dtype=torch.float64)
    for density in (0.2, 0.6, 1.0):
        gates = torch.bernoulli(torch.full((m.num_gates,), density, dtype=torch.float64))
        expected = teacher_forward(_reference_teacher(m, gates), x)
        out = m(x, gates)
        assert out.dtype == torch.float64 and out.shape == (9, 3)
        assert torch.allclose(out, expected, atol=1e-12)


def test_batched_gate_draws_match_one_at_a_time():
    pyro.set_rng_seed(1)
    m = NeuronDAG(3, 6, 2)
    x = torch.randn(7, 3)
    gates = torch.bernoulli(torch.full((4, 1, m.num_gates), 0.5))
    out = m(x, gates)
    assert out.shape == (4, 7, 2)
    for s in range(4):
        assert torch.allclose(out[s], m(x, gates[s, 0]), atol=1e-6)
    # Levels come from the union of the draws, which is valid for every draw.
    assert torch.allclose(out, m(x, gates, method="sequential"), atol=1e-6)


@pytest.mark.parametrize("gate", ["bernoulli", "hard_concrete"])
@pytest.mark.parametrize("prior", ["bernoulli", "beta"])
def test_float64_end_to_end(gate, prior):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    p = BernoulliPrior(0.2) if prior == "bernoulli" else BetaBernoulliPrior(1.0, 3.0)
    m = NeuronDAG(3, 4, 2, gate=gate, prior=p, cost=CostPenalty(0.1)).double()
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randn(16, 2, dtype=torch.float64)
    m.fit(x, y, num_steps=3, record_every=1)
    history = m.history
    assert len(history["loss"]) == 3 and history["gate_probs"].dtype == torch.float64
    assert m.edge_probs().dtype == torch.float64
    mean, draws = m.predict(x, num_samples=5, return_samples=True)
    assert mean.dtype == torch.float64 and mean.shape == (16, 2) and draws.shape == (5, 16, 2)
    trace = pyro.poutine.trace(m.guide).get_trace(x, y)
    assert trace.nodes["gates"]["value"].dtype == torch.float64
    if prior == "beta":
        assert trace.nodes["gate_p"]["value"].dtype == torch.float64


def test_categorical_likelihood_predicts_probabilities():
    pyro.clear_param_store()
    m = NeuronDAG(4, 3, 3, likelihood="categorical")
    x = torch.randn(10, 4)
    y = torch.randint(3, (10,))
    m.fit(x, y, num_steps=2)
    probs = m.predict(x, num_samples=4)
    assert probs.shape == (10, 3) and torch.allclose(probs.sum(-1), torch.ones(10))


def test_sparsity_prior_switches_off_unused_edges():
    # y depends on x0 only; x1, x2 are noise. Direct input->output edges only (H = 0).
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x = torch.randn(200, 3)
    y = 2.0 * x[:, :1] + 0.1 * torch.randn(200, 1)
    m = NeuronDAG(3, 0, 1, gate="hard_concrete", prior=BernoulliPrior(0.05), noise_scale=0.1)
    m.fit(x, y, num_steps=300, lr=0.05, gate_lr=0.1, gate_betas=(0.9, 0.9))
    probs = m.gate_probs()
    assert probs[0] > 0.9
    assert (probs[1:] < 0.1).all()


def test_sparsity_prior_with_discrete_gates_and_a_probnets_estimator():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x = torch.randn(200, 3)
    y = 2.0 * x[:, :1] + 0.1 * torch.randn(200, 1)
    m = NeuronDAG(3, 0, 1, prior=BernoulliPrior(0.05), noise_scale=0.1, init_logit=0.0)
    m.fit(
        x,
        y,
        num_steps=300,
        lr=0.05,
        gate_lr=0.1,
        gate_betas=(0.9, 0.9),
        estimator=DisARM_ELBO(num_particles=4, vectorize_particles=True),
    )
    probs = m.gate_probs()
    assert probs[0] > 0.9
    assert (probs[1:] < 0.15).all()  # from 0.5 at the start


def test_recovers_known_dependencies_of_a_small_problem():
    # y0 = x0 + x1, y1 = x1 - x2; x3 irrelevant; 3 hidden neurons available.
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x = torch.randn(400, 4)
    y = torch.stack([x[:, 0] + x[:, 1], x[:, 1] - x[:, 2]], -1)
    m = NeuronDAG(
        4, 3, 2, gate="hard_concrete", prior=BernoulliPrior(0.01), noise_scale=1.0, init_logit=0.0
    )
    m.fit(x, y, num_steps=800, lr=0.02, gate_lr=0.05, gate_betas=(0.9, 0.9), batch_size=100)
    truth = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0]], dtype=torch.bool)
    assert torch.equal(m.dependencies(), truth)


def test_export_architecture_retrains_a_masked_network():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    m = NeuronDAG(3, 2, 1)
    with torch.no_grad():
        m.gate_logits.copy_(torch.linspace(-3, 3, m.num_gates))
    net = m.export_architecture(threshold=0.5)
    assert torch.equal(net.mask.bool(), m.gate_probs() > 0.5)
    assert net.num_active == int((m.gate_probs() > 0.5).sum())
    assert not torch.equal(net.network.weight, m.weight)  # re-initialized, not copied
    x = torch.randn(64, 3)
    y = x[:, :1] - x[:, 2:]
    losses = [row["loss"] for row in net.fit(x, y, num_steps=100, lr=0.05).history]
    assert losses[-1] < losses[0]
    closed = (~net.mask.bool()).nonzero().squeeze(-1)
    assert torch.equal(net(x), net.network(x, net.mask))
    # A closed edge's weight has no effect on the exported network.
    with torch.no_grad():
        net.network.weight[closed] += 10.0
    assert torch.allclose(net(x), net.network(x, net.mask))


def test_structure_metrics():
    truth = torch.tensor([[0, 1], [1, 0]], dtype=torch.bool)
    assert structural_hamming_distance(torch.zeros(2, 2, dtype=torch.bool), truth) == 2
    assert auroc(torch.tensor([0.9, 0.1, 0.8, 0.2]), torch.tensor([1, 0, 1, 0])) == 1.0
    assert auroc(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == 0.5
    rows, cols = neuron_dag_edges(2, 1, 1)
    assert list(zip(rows.tolist(), cols.tolist())) == [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]


def test_hidden_units_matched_across_a_relabelled_sign_flipped_copy():
    pyro.set_rng_seed(3)
    net = NeuronDAG(3, 5, 2, init_logit=0.0)
    x = torch.randn(200, 3)
    gates = torch.ones(net.num_gates)
    hidden = net.hidden_activations(x, gates)
    assert hidden.shape == (200, 5)
    shuffle = torch.tensor([3, 0, 4, 1, 2])
    flips = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])
    perm, corr = match_hidden_units(hidden, hidden[:, shuffle] * flips)
    # other[:, perm[k]] is reference unit k: shuffle[perm[k]] == k
    assert shuffle[perm].tolist() == list(range(5))
    torch.testing.assert_close(corr, torch.ones(5))
    with pytest.raises(ValueError, match="reference, other"):
        match_hidden_units(hidden, hidden[:, :4])


def test_permute_hidden_relabels_rows_and_columns():
    adj = torch.zeros(5, 5)
    adj[2, 0] = 1.0  # input 0 -> hidden 2 (old hidden index 0)
    adj[3, 2] = 2.0  # hidden 2 -> hidden 3
    adj[4, 3] = 3.0  # hidden 3 -> output 4
    swapped = permute_hidden(adj, 2, torch.tensor([1, 0]))
    assert swapped[3, 0] == 1.0 and swapped[2, 3] == 2.0 and swapped[4, 2] == 3.0
    assert swapped.sum() == adj.sum()


def test_path_strength_is_the_strongest_path_product():
    probs = torch.zeros(5, 5)  # inputs 0, 1; hidden 2, 3; output 4
    probs[2, 0], probs[4, 2] = 0.9, 0.5  # 0 -> 2 -> 4: 0.45
    probs[3, 0], probs[4, 3] = 0.6, 0.8  # 0 -> 3 -> 4: 0.48
    probs[4, 1] = 0.3  # 1 -> 4 directly
    torch.testing.assert_close(path_strength(probs, 2, 1), torch.tensor([[0.48, 0.3]]))


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match="num_inputs: expected an int >= 1, got 0"):
        NeuronDAG(0, 2, 1)
    with pytest.raises(ValueError, match="gate: expected one of"):
        NeuronDAG(2, 2, 1, gate="gumbel")
    with pytest.raises(ValueError, match="likelihood: expected one of"):
        NeuronDAG(2, 2, 1, likelihood="poisson")
    with pytest.raises(ValueError, match="method: expected one of"):
        NeuronDAG(2, 2, 1, method="magic")
    with pytest.raises(TypeError, match="prior: expected a BernoulliPrior"):
        NeuronDAG(2, 2, 1, prior=0.1)
    with pytest.raises(ValueError, match="p: expected a probability strictly inside"):
        BernoulliPrior(1.0)
    with pytest.raises(ValueError, match="noise_scale: expected None"):
        NeuronDAG(2, 2, 1, noise_scale=-1.0)
    m = NeuronDAG(2, 2, 1)
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, 2\), got \(4, 3\)"):
        m(torch.randn(4, 3), torch.ones(m.num_gates))
    with pytest.raises(ValueError, match=r"gates: expected shape \(\.\.\., 9\)"):
        m(torch.randn(4, 2), torch.ones(7))
    with pytest.raises(ValueError, match="dim -2 must be 1"):
        m(torch.randn(4, 2), torch.ones(3, 9))
    with pytest.raises(ValueError, match="y: expected floating targets of shape"):
        m.fit(torch.randn(4, 2), torch.randn(4), num_steps=1)
    with pytest.raises(ValueError, match="num_steps: expected a positive int"):
        m.fit(torch.randn(4, 2), torch.randn(4, 1), num_steps=0)
    with pytest.raises(ValueError, match=r"threshold: expected a number in \[0, 1\)"):
        m.export_architecture(threshold=1.5)
