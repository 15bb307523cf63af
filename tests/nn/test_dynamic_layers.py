import pyro
import pytest
import torch
from torch.nn import functional as F

from probnets.nn.functional import (
    DYNAMIC_CONV2D_METHODS,
    DYNAMIC_LINEAR_METHODS,
    choose_conv2d_method,
    dynamic_conv2d,
    dynamic_linear,
)

CONV_CASES = [
    # B, C_in, C_out, H, W, kernel, stride, padding, dilation, bias
    (4, 1, 6, 12, 12, (3, 3), 1, 1, 1, True),
    (3, 6, 6, 14, 14, (3, 3), 1, 1, 1, False),
    (5, 3, 4, 9, 8, (3, 2), 2, (1, 2), (2, 1), True),
    (2, 8, 16, 7, 7, (5, 5), 1, 2, 1, True),
    (1, 2, 3, 6, 6, (3, 3), 1, 0, 1, True),
    (6, 16, 16, 10, 10, (1, 1), 3, 0, 1, True),
]


def reference_conv(x, w, b, stride, padding, dilation):
    return torch.cat(
        [
            F.conv2d(x[i : i + 1], w[i], None if b is None else b[i], stride, padding, dilation)
            for i in range(x.shape[0])
        ]
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_dynamic_conv2d_matches_per_example_conv(case, dtype):
    pyro.set_rng_seed(0)
    B, C, O, H, W, k, stride, padding, dilation, has_bias = case
    x = torch.randn(B, C, H, W, dtype=dtype, requires_grad=True)
    w = torch.randn(B, O, C, *k, dtype=dtype, requires_grad=True)
    b = torch.randn(B, O, dtype=dtype, requires_grad=True) if has_bias else None
    inputs = [x, w] + ([b] if has_bias else [])
    expected = reference_conv(x, w, b, stride, padding, dilation)
    upstream = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, inputs, upstream)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for method in DYNAMIC_CONV2D_METHODS:
        y = dynamic_conv2d(
            x, w, b, stride=stride, padding=padding, dilation=dilation, method=method
        )
        assert y.dtype == dtype
        assert y.shape == expected.shape
        torch.testing.assert_close(y, expected, **tol, msg=method)
        grads = torch.autograd.grad(y, inputs, upstream)
        for g, e in zip(grads, expected_grads):
            torch.testing.assert_close(g, e, **tol, msg=method)


def test_dynamic_conv2d_gradcheck_float64():
    pyro.set_rng_seed(1)
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    for method in ("grouped_channels_last",):
        assert torch.autograd.gradcheck(
            lambda x, w, b: dynamic_conv2d(
                x, w, b, stride=2, padding=1, dilation=(1, 2), method=method
            ),
            (x, w, b),
        )


def test_dynamic_conv2d_chains_channels_last_outputs():
    # The channels-last path returns a strided view; feeding it to the next layer must work.
    pyro.set_rng_seed(2)
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    w1 = torch.randn(4, 6, 1, 3, 3, dtype=torch.float64)
    w2 = torch.randn(4, 6, 6, 3, 3, dtype=torch.float64)
    first = dynamic_conv2d(x, w1, padding=1, method="grouped_channels_last")
    h = dynamic_conv2d(first, w2, padding=1)
    expected = reference_conv(reference_conv(x, w1, None, 1, 1, 1), w2, None, 1, 1, 1)
    torch.testing.assert_close(h, expected)


def test_auto_rule():
    assert choose_conv2d_method(64, 1, 6, 28, 28) == "grouped_channels_last"
    assert choose_conv2d_method(64, 6, 6, 28, 28) == "grouped_channels_last"
    assert choose_conv2d_method(64, 16, 16, 28, 28) == "grouped"
    assert choose_conv2d_method(64, 6, 6, 8, 8) == "grouped"


@pytest.mark.parametrize("x_shape", [(5, 7), (5, 3, 7), (5, 2, 3, 7)])
@pytest.mark.parametrize("out_features", [4, 40])
def test_dynamic_linear_matches_loop(x_shape, out_features):
    pyro.set_rng_seed(3)
    x = torch.randn(*x_shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, out_features, 7, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, out_features, dtype=torch.float64, requires_grad=True)
    expected = torch.stack([x[i] @ w[i].t() + b[i] for i in range(5)])
    upstream = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, (x, w, b), upstream)
    for method in DYNAMIC_LINEAR_METHODS:
        for bias in (b, None):
            y = dynamic_linear(x, w, bias, method=method)
            assert y.dtype == torch.float64 and y.shape == expected.shape
            torch.testing.assert_close(
                y, expected if bias is not None else expected - b.view(5, *[1] * (x.dim() - 2), -1)
            )
        grads = torch.autograd.grad(dynamic_linear(x, w, b, method=method), (x, w, b), upstream)
        for g, e in zip(grads, expected_grads):
            torch.testing.assert_close(g, e)


def test_dynamic_linear_errors():
    x, w = torch.randn(4, 3), torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match=r"weight must have shape \(B, out, in\)"):
        dynamic_linear(x, w[0])
    with pytest.raises(ValueError, match=r"x must have shape \(4, \.\.\., 3\).*got shape \(4, 5\)"):
        dynamic_linear(torch.randn(4, 5), w)
    with pytest.raises(ValueError, match=r"x must have shape \(4, \.\.\., 3\).*got shape \(3, 3\)"):
        dynamic_linear(torch.randn(3, 3), w)
    with pytest.raises(ValueError, match=r"bias must have shape \(4, 2\), got shape \(2,\)"):
        dynamic_linear(x, w, torch.randn(2))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        dynamic_linear([1.0], w)
    with pytest.raises(ValueError, match="method must be one of"):
        dynamic_linear(x, w, method="magic")


def test_dynamic_conv2d_errors():
    x, w = torch.randn(2, 3, 8, 8), torch.randn(2, 4, 3, 3, 3)
    with pytest.raises(
        ValueError, match=r"x must have shape \(B, C_in, H, W\), got shape \(3, 8, 8\)"
    ):
        dynamic_conv2d(x[0], w)
    with pytest.raises(ValueError, match=r"weight must have shape \(B, C_out, C_in, kH, kW\)"):
        dynamic_conv2d(x, w[0])
    with pytest.raises(
        ValueError,
        match=r"weight must have shape \(2, C_out, 3, kH, kW\)"
        r".*got shape \(2, 4, 5, 3, 3\)",
    ):
        dynamic_conv2d(x, torch.randn(2, 4, 5, 3, 3))
    with pytest.raises(
        ValueError,
        match=r"weight must have shape \(2, C_out, 3, kH, kW\)"
        r".*got shape \(3, 4, 3, 3, 3\)",
    ):
        dynamic_conv2d(x, torch.randn(3, 4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"bias must have shape \(2, 4\), got shape \(4,\)"):
        dynamic_conv2d(x, w, torch.randn(4))
    with pytest.raises(ValueError, match="does not fit x of spatial size"):
        dynamic_conv2d(torch.randn(2, 3, 2, 2), w)
    with pytest.raises(ValueError, match="method must be one of"):
        dynamic_conv2d(x, w, method="fft")
