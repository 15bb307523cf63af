import pyro
import pytest
import torch
from torch.nn import functional as F

from probnets.nn import ReactiveQueryNet, StaticQueryCNN, accuracy, cross_entropy_objective
from probnets.nn.reactive import conv2d_flops


@pytest.mark.parametrize("update", ["residual", "gru"])
def test_shapes_float64_and_gradients(update):
    pyro.set_rng_seed(0)
    net = ReactiveQueryNet(
        image_size=16, context_size=8, channels=(3, 4), iterations=3, update=update
    ).double()
    x = torch.rand(5, 16, 16, dtype=torch.float64)
    logits = net(x)
    assert logits.shape == (5, 10) and logits.dtype == torch.float64
    assert net.contexts(x).shape == (3, 5, 8)
    loss = cross_entropy_objective(net)(x, torch.arange(5))
    loss.backward()
    assert net.generator.weight.grad.abs().sum() > 0
    assert net.initial_context.grad is not None


def test_query_runs_each_examples_own_cnn():
    """The batched query equals running the CNN generated for each example alone."""
    pyro.set_rng_seed(1)
    net = ReactiveQueryNet(image_size=12, context_size=6, channels=(2, 3), kernel_size=3).double()
    x = torch.rand(4, 1, 12, 12, dtype=torch.float64)
    context = torch.randn(4, 6, dtype=torch.float64)
    read = net.query(x, context)
    for b in range(4):
        (w1, b1), (w2, b2) = net._split(net.generator(context[b : b + 1]))
        h = F.max_pool2d(torch.relu(F.conv2d(x[b : b + 1], w1[0], b1[0], padding=1)), 2)
        h = torch.relu(F.conv2d(h, w2[0], b2[0], padding=1))
        torch.testing.assert_close(read[b], F.adaptive_avg_pool2d(h, 2).flatten())


def test_context_changes_the_query():
    pyro.set_rng_seed(2)
    net = ReactiveQueryNet(image_size=12, context_size=6, channels=(2, 3)).double()
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64).expand(2, -1, -1, -1)
    read = net.query(x, torch.randn(2, 6, dtype=torch.float64))
    assert (read[0] - read[1]).abs().max() > 1e-6


def test_flop_counts():
    net = ReactiveQueryNet(image_size=28, channels=(6, 6, 6), iterations=4)
    per_query = (
        conv2d_flops(1, 6, 3, 28, 28) + conv2d_flops(6, 6, 3, 14, 14) + conv2d_flops(6, 6, 3, 7, 7)
    )
    assert per_query == 2 * (54 * 784 + 324 * 196 + 324 * 49)
    assert net.conv_flops_per_image() == 4 * per_query
    assert net.hypernet_flops_per_image() == 4 * 2 * 64 * (60 + 330 + 330)
    static = StaticQueryCNN(channels=(6, 6, 6))
    assert static.conv_flops_per_image() == per_query


def test_accuracy_and_errors():
    pyro.set_rng_seed(3)
    net = StaticQueryCNN(image_size=8, channels=(2,))
    x, y = torch.rand(6, 8, 8), torch.randint(0, 10, (6,))
    expected = (net(x).argmax(-1) == y).float().mean().item()
    assert accuracy(net, x, y, batch_size=4) == pytest.approx(expected)
    with pytest.raises(ValueError, match="same length"):
        accuracy(net, x, y[:3])
    with pytest.raises(
        ValueError, match=r"x must have shape \(B, 1, 28, 28\), got shape \(2, 1, 20, 20\)"
    ):
        ReactiveQueryNet()(torch.rand(2, 1, 20, 20))
    with pytest.raises(ValueError, match="update must be 'residual' or 'gru'"):
        ReactiveQueryNet(update="lstm")


def test_generator_init_scale_sets_the_generated_share_of_the_kernels():
    """The generated part of the first query's kernels, relative to the static part, is about
    ``generator_init_scale`` for unit-scale contexts; 0 gives a static CNN."""
    pyro.set_rng_seed(4)
    context = torch.randn(256, 64)
    for scale in (0.1, 0.5):
        net = ReactiveQueryNet(generator_init_scale=scale)
        with torch.no_grad():
            ratio = (net.generator(context) - net.generator.bias).std() / net.generator.bias.std()
        assert ratio.item() == pytest.approx(scale, rel=0.1)
    static = ReactiveQueryNet(generator_init_scale=0.0)
    assert torch.equal(static.generator(context)[0], static.generator(context)[1])
    with pytest.raises(ValueError, match="generator_init_scale must be >= 0"):
        ReactiveQueryNet(generator_init_scale=-1.0)
