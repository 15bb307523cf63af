import pyro
import pytest
import torch
from torch.nn import functional as F

from probnets.nn import HyperCNN, HyperConv2d, StaticHyperNetwork


def test_generator_parameter_count_matches_formula_and_paper():
    # N_in d (N_z + 1) + N_out f^2 (d + 1); Ha et al.'s MNIST generator has 4,240.
    net = StaticHyperNetwork(embedding_dim=4, in_channels=16, out_channels=16, kernel_size=7)
    assert sum(p.numel() for p in net.parameters()) == 16 * 4 * 5 + 16 * 49 * 5 == 4240
    net = StaticHyperNetwork(64, 16, 16, 3, hidden_dim=32)
    assert sum(p.numel() for p in net.parameters()) == 16 * 32 * 65 + 16 * 9 * 33


def test_slice_is_the_papers_two_layer_map():
    pyro.set_rng_seed(0)
    net = StaticHyperNetwork(3, 2, 4, (3, 2), hidden_dim=5).double()
    z = torch.randn(3, dtype=torch.float64)
    k = net(z)
    assert k.shape == (4, 2, 3, 2)
    for i in range(2):  # a_i = W_i z + B_i;  K_i = W_out a_i + B_out
        a_i = net.weight_in[i * 5 : (i + 1) * 5] @ z + net.bias_in[i * 5 : (i + 1) * 5]
        k_i = (net.weight_out @ a_i + net.bias_out).view(4, 3, 2)
        torch.testing.assert_close(k[:, i], k_i)


def test_hyperconv_tiles_slices_and_shares_generator():
    pyro.set_rng_seed(1)
    net = StaticHyperNetwork(4, 2, 3, 3).double()
    conv_a = HyperConv2d(net, 4, 6, padding=1).double()
    conv_b = HyperConv2d(net, 2, 9).double()
    kernel = conv_a.kernel()
    assert kernel.shape == (6, 4, 3, 3) and conv_a.tiles == (2, 2)
    for j in range(2):
        for i in range(2):
            torch.testing.assert_close(
                kernel[3 * j : 3 * j + 3, 2 * i : 2 * i + 2], net(conv_a.embeddings[j, i])
            )
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    y = conv_a(x)
    torch.testing.assert_close(y, F.conv2d(x, kernel, conv_a.bias, padding=1))
    assert y.dtype == torch.float64
    # Layer parameters: its embeddings and bias, plus the shared generator counted once.
    model = torch.nn.ModuleList([conv_a, conv_b])
    n_gen = sum(p.numel() for p in net.parameters())
    assert sum(p.numel() for p in model.parameters()) == n_gen + (2 * 2 * 4 + 6) + (3 * 1 * 4 + 9)
    y.sum().backward()
    assert net.weight_out.grad is not None and conv_a.embeddings.grad is not None


def test_hypercnn_parameter_counts_and_float64():
    ordinary, hyper = HyperCNN(hyper=False), HyperCNN(hyper=True)
    conv_weights = 16 * 16 * 7 * 7
    assert conv_weights == 12544
    n_ord = sum(p.numel() for p in ordinary.parameters())
    n_hyp = sum(p.numel() for p in hyper.parameters())
    # kernel replaced by generator + one 4-d embedding
    assert n_ord - n_hyp == conv_weights - 4240 - 4
    out = hyper.double()(torch.rand(3, 28, 28, dtype=torch.float64))
    assert out.shape == (3, 10) and out.dtype == torch.float64


def test_errors():
    net = StaticHyperNetwork(4, 2, 3, 3)
    with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 4\), got shape \(5,\)"):
        net(torch.randn(5))
    with pytest.raises(ValueError, match="multiples of the hypernet's slice"):
        HyperConv2d(net, 3, 6)
    with pytest.raises(TypeError, match="hypernet must be a StaticHyperNetwork"):
        HyperConv2d(torch.nn.Linear(2, 2), 2, 3)
    with pytest.raises(ValueError, match="embedding_dim must be a positive int"):
        StaticHyperNetwork(0, 2, 3, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 28, 28\)"):
        HyperCNN()(torch.rand(2, 3, 28, 28))
