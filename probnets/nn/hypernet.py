"""Static hypernetworks (Ha, Dai, Le 2016, "HyperNetworks", arXiv:1609.09106, section 3.1):
convolution kernels generated from small per-layer embeddings by a shared generator."""

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from probnets.data.validation import check_size, check_tensor
from probnets.loading import Loadable

from .functional import conv_pair

__all__ = ["StaticHyperNetwork", "HyperConv2d", "HyperCNN"]


class StaticHyperNetwork(nn.Module):
    r"""Two-layer linear generator of convolution-kernel slices (Ha et al. 2016, eqs. 2-3).

    From an embedding :math:`z \in \mathbb R^{N_z}` it produces a kernel slice
    :math:`K \in \mathbb R^{N_{out} \times N_{in} \times f \times f}`:

    .. math::

        a_i = W_i z + B_i \quad (i = 1..N_{in}), \qquad
        K_i = W_{out} a_i + B_{out},

    with :math:`W_i \in \mathbb R^{d \times N_z}`, :math:`W_{out} \in \mathbb R^{N_{out} f^2
    \times d}` shared by every slice of every layer that uses this generator (each layer
    owns only its embeddings, see :class:`HyperConv2d`). Parameter count:

    .. math::

        N_{in} d (N_z + 1) + N_{out} f^2 (d + 1);

    Ha et al.'s MNIST generator (:math:`N_z = d = 4`, :math:`N_{in} = N_{out} = 16`,
    :math:`f = 7`) has 4,240. The generator is linear, as in the paper: the
    nonlinearity lives in the network that uses the kernels.

    Initialisation: :math:`W_{out}` is scaled so that, for embeddings with unit-variance
    entries, generated kernels have the variance of Kaiming-uniform kernels with fan-in
    :math:`N_{in} f^2` (the paper's recipe); biases start at 0.

    :param int embedding_dim: :math:`N_z`.
    :param int in_channels: :math:`N_{in}`, input channels of one slice.
    :param int out_channels: :math:`N_{out}`, output channels of one slice.
    :param kernel_size: :math:`f` (int or pair).
    :param int hidden_dim: :math:`d` (default :math:`N_z`).
    """

    def __init__(
        self,
        embedding_dim: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        hidden_dim: int | None = None,
    ) -> None:
        super().__init__()
        hidden_dim = embedding_dim if hidden_dim is None else hidden_dim
        for name, value in (
            ("embedding_dim", embedding_dim),
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("hidden_dim", hidden_dim),
        ):
            check_size(name, value)
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = conv_pair("kernel_size", kernel_size, 1)
        kh, kw = self.kernel_size
        self.weight_in = nn.Parameter(torch.empty(in_channels * hidden_dim, embedding_dim))
        self.bias_in = nn.Parameter(torch.zeros(in_channels * hidden_dim))
        self.weight_out = nn.Parameter(torch.empty(out_channels * kh * kw, hidden_dim))
        self.bias_out = nn.Parameter(torch.zeros(out_channels * kh * kw))
        # a_i has variance ~1 for unit-variance z; K then has variance 1/(3 * fan_in) like
        # nn.Conv2d's default (Kaiming uniform with a = sqrt(5)).
        nn.init.normal_(self.weight_in, 0.0, 1.0 / math.sqrt(embedding_dim))
        fan_in = in_channels * kh * kw
        nn.init.normal_(self.weight_out, 0.0, 1.0 / math.sqrt(3.0 * fan_in * hidden_dim))

    def forward(self, z: Tensor) -> Tensor:
        """Kernel slices ``(..., N_out, N_in, f, f)`` from embeddings ``z`` of shape
        ``(..., N_z)``."""
        check_tensor("z", z, self.weight_in)
        if z.dim() < 1 or z.shape[-1] != self.embedding_dim:
            raise ValueError(
                f"z must have shape (..., {self.embedding_dim}), got shape {tuple(z.shape)}"
            )
        batch = z.shape[:-1]
        a = F.linear(z, self.weight_in, self.bias_in)
        a = a.view(*batch, self.in_channels, self.hidden_dim)
        k = F.linear(a, self.weight_out, self.bias_out)  # (..., N_in, N_out * f * f)
        k = k.view(*batch, self.in_channels, self.out_channels, *self.kernel_size)
        return k.transpose(-4, -3)

    def extra_repr(self) -> str:
        return (
            f"embedding_dim={self.embedding_dim}, hidden_dim={self.hidden_dim}, "
            f"slice=({self.out_channels}, {self.in_channels}, {self.kernel_size[0]}, "
            f"{self.kernel_size[1]})"
        )


class HyperConv2d(nn.Module):
    r"""A 2-d convolution whose kernel a :class:`StaticHyperNetwork` generates.

    A kernel with :math:`C_{out} = m N_{out}` output and :math:`C_{in} = n N_{in}` input
    channels is tiled from :math:`m \times n` slices, slice :math:`(j, k)` generated from
    its own learned embedding :math:`z_{jk}` (Ha et al. 2016, section 3.1). The layer owns
    only the :math:`m n N_z` embedding entries and an optional bias; pass the same generator
    instance to every layer that shares it.

    :param StaticHyperNetwork hypernet: the shared generator.
    :param int in_channels: a multiple of ``hypernet.in_channels``.
    :param int out_channels: a multiple of ``hypernet.out_channels``.
    :param stride, padding, dilation: as in :class:`torch.nn.Conv2d`.
    :param bool bias: learn a per-channel bias (not generated).
    """

    def __init__(
        self,
        hypernet: StaticHyperNetwork,
        in_channels: int,
        out_channels: int,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(hypernet, StaticHyperNetwork):
            raise TypeError(f"hypernet must be a StaticHyperNetwork, got {type(hypernet).__name__}")
        check_size("in_channels", in_channels)
        check_size("out_channels", out_channels)
        if in_channels % hypernet.in_channels or out_channels % hypernet.out_channels:
            raise ValueError(
                f"in_channels and out_channels must be multiples of the hypernet's slice "
                f"({hypernet.in_channels} in, {hypernet.out_channels} out), got "
                f"in_channels={in_channels}, out_channels={out_channels}"
            )
        # Registered in every layer that shares it; Module.parameters() de-duplicates, so
        # the generator is still counted and optimised once.
        self.hypernet = hypernet
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = conv_pair("stride", stride, 1)
        self.padding = conv_pair("padding", padding, 0)
        self.dilation = conv_pair("dilation", dilation, 1)
        self.tiles = (out_channels // hypernet.out_channels, in_channels // hypernet.in_channels)
        self.embeddings = nn.Parameter(torch.randn(*self.tiles, hypernet.embedding_dim))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def kernel(self) -> Tensor:
        """The tiled kernel ``(C_out, C_in, f, f)``."""
        slices = self.hypernet(self.embeddings)  # (m, n, N_out, N_in, f, f)
        m, n, n_out, n_in, kh, kw = slices.shape
        return slices.permute(0, 2, 1, 3, 4, 5).reshape(m * n_out, n * n_in, kh, kw)

    def forward(self, x: Tensor) -> Tensor:
        """``conv2d(x, kernel)`` for ``x`` of shape ``(B, C_in, H, W)`` (or ``(C_in, H, W)``)."""
        check_tensor("x", x, self.embeddings)
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}"
            )
        return F.conv2d(x, self.kernel(), self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, tiles={self.tiles}"


class HyperCNN(Loadable, nn.Module):
    """Ha et al.'s MNIST network (section 4.1), ordinary or with a hypernet-generated kernel.

    ``conv(1->16, 7x7) - ReLU - maxpool 2 - conv(16->16, 7x7) - ReLU - maxpool 2 - linear``
    on 28x28 digits. With ``hyper=True`` the second kernel (12,544 weights) is generated by a
    :class:`StaticHyperNetwork` from one ``embedding_dim``-d embedding (paper: 4-d, a
    4,240-parameter generator, about as accurate as the ordinary network).

    :param bool hyper: generate the second kernel.
    :param int embedding_dim: :math:`N_z` (and the generator's :math:`d`).
    :param int channels: channels of both convolutions.
    :param int kernel_size: kernel size of both convolutions (odd).
    :param int num_classes: classifier outputs.
    """

    def __init__(
        self,
        hyper: bool = True,
        embedding_dim: int = 4,
        channels: int = 16,
        kernel_size: int = 7,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        for name, value in (
            ("embedding_dim", embedding_dim),
            ("channels", channels),
            ("kernel_size", kernel_size),
            ("num_classes", num_classes),
        ):
            check_size(name, value)
        if kernel_size % 2 != 1:  # 'same' padding keeps 28x28 (the classifier expects 7x7)
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self._config = dict(
            hyper=hyper,
            embedding_dim=embedding_dim,
            channels=channels,
            kernel_size=kernel_size,
            num_classes=num_classes,
        )
        pad = kernel_size // 2
        self.hyper = hyper
        self.conv1 = nn.Conv2d(1, channels, kernel_size, padding=pad)
        self.conv2: HyperConv2d | nn.Conv2d
        if hyper:
            self.hypernet = StaticHyperNetwork(embedding_dim, channels, channels, kernel_size)
            self.conv2 = HyperConv2d(self.hypernet, channels, channels, padding=pad)
        else:
            self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.fc = nn.Linear(channels * 7 * 7, num_classes)

    def model_config(self) -> dict[str, Any]:
        return dict(self._config)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for digits ``(B, 28, 28)`` or ``(B, 1, 28, 28)``."""
        check_tensor("x", x, self.fc.weight)
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(
                f"x must have shape (B, 1, 28, 28) or (B, 28, 28), got {tuple(x.shape)}"
            )
        h = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        h = F.max_pool2d(torch.relu(self.conv2(h)), 2)
        return self.fc(h.flatten(1))
