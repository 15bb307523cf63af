"""The documented one-liners with nothing but sizes learn sparse wiring on sparse teachers they
were not tuned on: exactly the true input->output dependencies, unused inputs cut."""

import pyro
import pytest
import torch
from torch import nn

from probnets.data.dag_toy import sparse_linear_teacher
from probnets.infer import Relaxed_ELBO
from probnets.models.gated import BernoulliPrior, LayerDAG, NeuronDAG


def _recovered(net, teacher):
    """Dependencies of the edges above 0.5 equal the teacher's, and no kept edge leaves an
    input the teacher does not use."""
    kept = net.edge_probs() > 0.5
    unused = ~teacher.dependencies.any(0)
    leaves_unused = kept[:, : net.num_inputs][:, unused].any()
    return torch.equal(net.dependencies(), teacher.dependencies) and not leaves_unused


def test_defaults_are_the_documented_sparse_setting():
    net = NeuronDAG(2, 1, 1)
    assert isinstance(net.prior, BernoulliPrior) and net.prior.p == 0.01
    torch.testing.assert_close(net.gate_probs(), torch.full((net.num_gates,), 0.5))
    assert net.noise_scale_mode == "auto"
    elbo = net.default_estimator()
    assert isinstance(elbo, Relaxed_ELBO) and elbo.temperature == 0.5
    assert isinstance(
        NeuronDAG(2, 1, 1, gate="hard_concrete").default_estimator(), pyro.infer.Trace_ELBO
    )
    # The likelihood's scale is each output's standard deviation in the training targets.
    pyro.clear_param_store()
    x = torch.randn(64, 2)
    y = torch.stack([3.0 * x[:, 0], torch.full((64,), 2.0)], -1)  # the second is constant
    wide = NeuronDAG(2, 1, 2)
    wide.fit(x, y, num_steps=1)
    torch.testing.assert_close(wide._obs_scale(x), torch.stack([y[:, 0].std(), torch.tensor(1.0)]))
    # The old estimator and the learned noise scale are one argument away.
    pyro.clear_param_store()
    old = NeuronDAG(2, 1, 1, noise_scale=None, prior=BernoulliPrior(0.1), init_logit=2.0)
    result = old.fit(
        torch.randn(8, 2), torch.randn(8, 1), num_steps=2, estimator=pyro.infer.TraceGraph_ELBO()
    )
    assert len(old.history["loss"]) == 2 and result.step == 2 and old.noise_scale_mode == "learned"


@pytest.mark.parametrize("seed", [7001])
def test_one_liner_recovers_a_small_unseen_teacher(seed):
    torch.set_num_threads(1)
    teacher = sparse_linear_teacher(4, 2, 3, 500, noise_scale=0.05, seed=seed)
    assert (~teacher.dependencies.any(0)).any()  # some input is unused and must be cut
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    net = NeuronDAG(4, 3, 2)
    net.fit(teacher.x, teacher.y, num_steps=500)
    assert _recovered(net, teacher)


def test_one_liner_in_float64_from_numpy():
    torch.set_num_threads(1)
    teacher = sparse_linear_teacher(3, 1, 2, 300, noise_scale=0.05, seed=7002, dtype=torch.float64)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    net = NeuronDAG(3, 2, 1).double()
    net.fit(teacher.x.numpy(), teacher.y.numpy(), num_steps=400)
    history = net.history
    assert history["loss"][-1] < history["loss"][0]
    assert net.gate_logits.dtype == torch.float64 and net.edge_probs().dtype == torch.float64
    assert _recovered(net, teacher)
    assert net.predict(teacher.x[:4]).dtype == torch.float64


def test_layer_dag_one_liner_cuts_unused_input_channels():
    torch.set_num_threads(1)
    teacher = sparse_linear_teacher(6, 3, 6, 1000, noise_scale=0.05, seed=7003)
    used = teacher.dependencies.any(0)
    assert not used.all()
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    blocks = [
        nn.Sequential(nn.Flatten(), nn.LazyLinear(8), nn.Tanh()),
        nn.Sequential(nn.Flatten(), nn.LazyLinear(3)),
    ]
    net = LayerDAG(blocks, (6, 1, 1), gate_per="feature_map", likelihood="normal")
    net.fit(teacher.x.view(-1, 6, 1, 1), teacher.y, num_steps=500)
    assert torch.equal(net.dependencies(), used)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1000, 1001, 1002])
def test_one_liner_recovers_unseen_6_16_3_teachers(seed):
    """The issue's case: 6 inputs, 16 hidden, 3 outputs, 6 true dependencies, 2,000 points,
    noise 0.05, 3,000 steps (``examples/gated_defaults.py`` prints the times)."""
    torch.set_num_threads(1)
    teacher = sparse_linear_teacher(6, 3, 6, 2000, noise_scale=0.05, seed=seed)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    net = NeuronDAG(6, 16, 3)
    net.fit(teacher.x, teacher.y, num_steps=3000)
    assert _recovered(net, teacher)
