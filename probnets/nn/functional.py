"""Per-example ("dynamic") linear and convolution layers.

A hypernetwork that emits a different weight tensor for every example in a batch needs
layers that take a batch of weights. Mathematically nothing changes: for example ``b``

.. math::

    y_b = W_b x_b + c_b, \\qquad
    Y_b = \\mathrm{conv2d}(X_b, K_b) + c_b,

so a per-example layer costs the same FLOPs as a shared one; the only question is how to
hand the batch to the BLAS / oneDNN kernels efficiently. :func:`dynamic_conv2d` offers
several mathematically identical strategies and picks one by a rule derived from
``examples/bench_dynamic_layers.py`` on a 2-core x86 CPU (see ``guides/hypernets.md``):

``"grouped"``
    Fold the batch into channels, ``(1, B*C, H, W)``, and run one convolution with
    ``groups=B`` (the trick of Ha et al. 2016 and of the reactive query network).
``"grouped_channels_last"``
    The same grouped convolution in channels-last memory format. oneDNN's channels-last
    grouped kernels are much faster when each group has few channels (e.g. 1->6->6
    channels: faster than an ordinary static NCHW convolution of the same shapes), and
    slower when groups have many channels.
``"unfold"``
    ``im2col`` with :func:`torch.nn.functional.unfold` and one ``bmm``.
``"loop"``
    One :func:`torch.nn.functional.conv2d` per example (the reference semantics).

The ``"auto"`` rule: a plain convolution for ``B == 1``; ``"grouped_channels_last"`` when
``C_in * C_out <= 64`` and the output has at least ``12 * 12`` positions; ``"grouped"``
otherwise. ``"unfold"`` only wins on tiny problems (a few examples of 8x8 maps), by a
negligible margin, and the loop never wins, so ``"auto"`` picks neither.
"""

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.nn.modules.utils import _pair

from probnets.data.validation import check_tensor

__all__ = [
    "DYNAMIC_CONV2D_METHODS",
    "DYNAMIC_LINEAR_METHODS",
    "DynamicConv2dMethod",
    "DynamicLinearMethod",
    "choose_conv2d_method",
    "dynamic_conv2d",
    "dynamic_linear",
]

DYNAMIC_LINEAR_METHODS = ("auto", "bmm", "mulsum", "loop")
DYNAMIC_CONV2D_METHODS = ("auto", "grouped", "grouped_channels_last", "unfold", "loop")
# The same sets as types, for annotations.
DynamicLinearMethod = Literal["auto", "bmm", "mulsum", "loop"]
DynamicConv2dMethod = Literal["auto", "grouped", "grouped_channels_last", "unfold", "loop"]

# Thresholds of the "auto" rule; measured, see the module docstring.
_SMALL_CHANNEL_PRODUCT = 64
_MIN_CHANNELS_LAST_POSITIONS = 12 * 12
_TINY_LINEAR = 4096


def _check_tensor(name: str, value: Any, like: Tensor | None = None) -> None:
    """``value`` is a tensor (and, given ``like``, of the dtype and device of ``x``)."""
    if like is not None:
        check_tensor(name, value, like, like_name="x")
    elif not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def conv_pair(name: str, value: int | Sequence[int], minimum: int) -> tuple[int, int]:
    """``stride``/``padding``/``dilation`` as a pair of ints ``>= minimum`` (as
    :func:`torch.nn.functional.conv2d` takes them)."""
    pair = _pair(value)
    if len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in pair
    ):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return pair


def _check_linear_arguments(x: Tensor, weight: Tensor, bias: Tensor | None, method: str) -> None:
    _check_tensor("x", x)
    _check_tensor("weight", weight, like=x)
    if weight.dim() != 3:
        raise ValueError(f"weight must have shape (B, out, in), got shape {tuple(weight.shape)}")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (B, in) or (B, ..., in), got shape {tuple(x.shape)}")
    B, out_features, in_features = weight.shape
    if x.shape[0] != B or x.shape[-1] != in_features:
        raise ValueError(
            f"x must have shape ({B}, ..., {in_features}) to match weight of shape "
            f"{tuple(weight.shape)}, got shape {tuple(x.shape)}"
        )
    if bias is not None:
        _check_tensor("bias", bias, like=x)
        if bias.shape != (B, out_features):
            raise ValueError(
                f"bias must have shape ({B}, {out_features}), got shape {tuple(bias.shape)}"
            )
    if method not in DYNAMIC_LINEAR_METHODS:
        raise ValueError(f"method must be one of {DYNAMIC_LINEAR_METHODS}, got {method!r}")


def dynamic_linear(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, method: DynamicLinearMethod = "auto"
) -> Tensor:
    """Affine map with a separate weight matrix for every example.

    :param torch.Tensor x: inputs of shape ``(B, in)`` or ``(B, ..., in)``.
    :param torch.Tensor weight: per-example weights of shape ``(B, out, in)``.
    :param torch.Tensor bias: optional per-example bias of shape ``(B, out)``, or None.
    :param str method: ``"auto"``, ``"bmm"``, ``"mulsum"`` or ``"loop"``; all give the
        same result.
    :returns: ``y`` of shape ``(B, out)`` or ``(B, ..., out)`` with
        ``y[b, ..., :] = weight[b] @ x[b, ..., :] + bias[b]``.

    Implemented as one ``baddbmm`` with the weight untransposed (``W_b X_b^T``), which
    measured fastest at most shapes; for one input vector per example and small matrices
    (``in * out <= 4096``, e.g. 64x64) a broadcast multiply-and-sum measured faster, so
    that case uses it (``examples/bench_dynamic_layers.py``).
    """
    _check_linear_arguments(x, weight, bias, method)
    B, out_features, in_features = weight.shape
    middle = x.shape[1:-1]
    x3 = x.reshape(B, -1, in_features)  # (B, N, in)
    if method == "auto":
        tiny = x3.shape[1] == 1 and in_features * out_features <= _TINY_LINEAR
        method = "mulsum" if tiny else "bmm"
    if method == "loop":
        y = torch.stack(
            [F.linear(x3[b], weight[b], None if bias is None else bias[b]) for b in range(B)]
        )
        return y.reshape(B, *middle, out_features)
    if method == "mulsum":
        y = (weight.unsqueeze(1) * x3.unsqueeze(2)).sum(-1)
        if bias is not None:
            y = y + bias.unsqueeze(1)
        return y.reshape(B, *middle, out_features)
    if bias is None:
        y = torch.bmm(weight, x3.transpose(1, 2))
    else:
        y = torch.baddbmm(bias.unsqueeze(-1), weight, x3.transpose(1, 2))
    return y.transpose(1, 2).reshape(B, *middle, out_features)


def choose_conv2d_method(
    batch_size: int, in_channels: int, out_channels: int, out_height: int, out_width: int
) -> Literal["grouped", "grouped_channels_last"]:
    """The ``"auto"`` rule of :func:`dynamic_conv2d` (see the module docstring)."""
    if batch_size == 1:
        return "grouped"  # groups=1: an ordinary convolution
    if (
        in_channels * out_channels <= _SMALL_CHANNEL_PRODUCT
        and out_height * out_width >= _MIN_CHANNELS_LAST_POSITIONS
    ):
        return "grouped_channels_last"
    return "grouped"


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _conv_grouped(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    channels_last: bool,
) -> Tensor:
    B, C, H, W = x.shape
    out_channels = weight.shape[1]
    xg = x.reshape(1, B * C, H, W)
    wg = weight.reshape(B * out_channels, C, *weight.shape[3:])
    if channels_last:
        xg = xg.contiguous(memory_format=torch.channels_last)
        wg = wg.contiguous(memory_format=torch.channels_last)
    bg = None if bias is None else bias.reshape(B * out_channels)
    y = F.conv2d(xg, wg, bg, stride=stride, padding=padding, dilation=dilation, groups=B)
    # A view in either layout: a channels-last output stays channels-last per example,
    # so the next dynamic layer needs no copy.
    return y.reshape(B, out_channels, *y.shape[2:])


def _conv_unfold(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, ...],
) -> Tensor:
    B = x.shape[0]
    out_channels = weight.shape[1]
    cols = F.unfold(x, weight.shape[3:], dilation=dilation, padding=padding, stride=stride)
    w2 = weight.reshape(B, out_channels, -1)
    if bias is None:
        y = torch.bmm(w2, cols)
    else:
        y = torch.baddbmm(bias.unsqueeze(-1), w2, cols)
    return y.view(B, out_channels, *out_hw)


def _conv_loop(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    return torch.cat(
        [
            F.conv2d(
                x[b : b + 1],
                weight[b],
                None if bias is None else bias[b],
                stride=stride,
                padding=padding,
                dilation=dilation,
            )
            for b in range(x.shape[0])
        ]
    )


def dynamic_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    method: DynamicConv2dMethod = "auto",
) -> Tensor:
    """2-d convolution with a separate kernel for every example.

    :param torch.Tensor x: images of shape ``(B, C_in, H, W)``.
    :param torch.Tensor weight: per-example kernels of shape ``(B, C_out, C_in, kH, kW)``.
    :param torch.Tensor bias: optional per-example bias of shape ``(B, C_out)``, or None.
    :param stride, padding, dilation: ints or pairs, as in :func:`torch.nn.functional.conv2d`
        (stride and dilation >= 1, padding >= 0).
    :param str method: one of ``"auto"``, ``"grouped"``, ``"grouped_channels_last"``,
        ``"unfold"``, ``"loop"`` (see the module docstring); all give the same result.
    :returns: ``(B, C_out, H_out, W_out)``, equal to stacking
        ``F.conv2d(x[b:b+1], weight[b], bias[b], stride, padding, dilation)`` over ``b``.
    """
    _check_tensor("x", x)
    _check_tensor("weight", weight, like=x)
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C_in, H, W), got shape {tuple(x.shape)}")
    if weight.dim() != 5:
        raise ValueError(
            f"weight must have shape (B, C_out, C_in, kH, kW), got shape {tuple(weight.shape)}"
        )
    B, C, H, W = x.shape
    if weight.shape[0] != B or weight.shape[2] != C:
        raise ValueError(
            f"weight must have shape ({B}, C_out, {C}, kH, kW) for x of shape {tuple(x.shape)}, "
            f"got shape {tuple(weight.shape)}"
        )
    out_channels = weight.shape[1]
    if bias is not None:
        _check_tensor("bias", bias, like=x)
        if bias.shape != (B, out_channels):
            raise ValueError(
                f"bias must have shape ({B}, {out_channels}), got shape {tuple(bias.shape)}"
            )
    if method not in DYNAMIC_CONV2D_METHODS:
        raise ValueError(f"method must be one of {DYNAMIC_CONV2D_METHODS}, got {method!r}")
    stride = conv_pair("stride", stride, 1)
    padding = conv_pair("padding", padding, 0)
    dilation = conv_pair("dilation", dilation, 1)
    out_hw = tuple(
        _out_size(s, k, st, p, d)
        for s, k, st, p, d in zip((H, W), weight.shape[3:], stride, padding, dilation)
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"kernel {tuple(weight.shape[3:])} with padding {padding} and dilation {dilation} "
            f"does not fit x of spatial size {(H, W)}"
        )
    if method == "auto":
        method = choose_conv2d_method(B, C, out_channels, *out_hw)
    if method == "grouped":
        return _conv_grouped(x, weight, bias, stride, padding, dilation, channels_last=False)
    if method == "grouped_channels_last":
        return _conv_grouped(x, weight, bias, stride, padding, dilation, channels_last=True)
    if method == "unfold":
        return _conv_unfold(x, weight, bias, stride, padding, dilation, out_hw)
    return _conv_loop(x, weight, bias, stride, padding, dilation)
