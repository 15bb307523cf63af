"""Reactive query network (Marcus Lewis, code ``mrcslws/subsequent``): a context
vector repeatedly generates a small per-example CNN, runs it on the image and folds what it
read back into the context."""

import math
from collections.abc import Sequence
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from probnets.data.validation import check_size, check_tensor
from probnets.loading import Loadable

from .functional import DYNAMIC_CONV2D_METHODS, DynamicConv2dMethod, dynamic_conv2d

__all__ = ["ReactiveQueryNet", "StaticQueryCNN", "conv2d_flops"]


def conv2d_flops(
    in_channels: int, out_channels: int, kernel_size: int, out_height: int, out_width: int
) -> int:
    """FLOPs (2 per multiply-add) of one 2-d convolution, bias and activation excluded."""
    return 2 * in_channels * out_channels * kernel_size * kernel_size * out_height * out_width


def _check_layout(
    in_channels: int,
    image_size: int,
    num_classes: int,
    channels: Sequence[int],
    kernel_size: int,
    pool_size: int,
) -> None:
    """The constructor arguments both query networks share: positive sizes, an odd kernel,
    and an image large enough for the 2x2 pools between ``len(channels)`` layers."""
    for name, value in (
        ("in_channels", in_channels),
        ("image_size", image_size),
        ("num_classes", num_classes),
        ("kernel_size", kernel_size),
        ("pool_size", pool_size),
    ):
        check_size(name, value)
    channels = tuple(channels)
    if not channels or not all(
        isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels
    ):
        raise ValueError(
            f"channels must be a non-empty sequence of positive ints, got {channels!r}"
        )
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    if image_size // 2 ** (len(channels) - 1) < 1:
        raise ValueError(f"image_size {image_size} is too small for {len(channels)} layers")


class ReactiveQueryNet(Loadable, nn.Module):
    r"""Classify an image with ``iterations`` queries, each a CNN generated for this image.

    Starting from a learned context :math:`c_0 \in \mathbb R^D`, for
    :math:`t = 1..\text{iterations}`:

    .. math::

        \theta_t &= G c_{t-1} + g \qquad
               \text{(hypernetwork: kernels and biases of the query CNN)} \\
        r_t &= \mathrm{pool}(\mathrm{CNN}_{\theta_t}(x)) \qquad \text{(per-example CNN, run with
               :func:`~probnets.nn.functional.dynamic_conv2d`)} \\
        c_t &= \mathrm{LN}(c_{t-1} + U_2\, \mathrm{ReLU}(U_1 [c_{t-1}; r_t]))
               \quad \text{(``update="residual"``)} \quad \text{or} \quad
               c_t = \mathrm{GRU}(r_t, c_{t-1}) \quad \text{(``update="gru"``)}

    and the logits are :math:`W c_T + w`. The query CNN has one 'same'-padded convolution +
    ReLU per entry of ``channels``, a 2x2 max pool between layers, and an adaptive average
    pool to ``pool_size x pool_size`` at the end, so :math:`r_t` has
    ``channels[-1] * pool_size**2`` entries. The generator's bias :math:`g` is initialised
    as an ordinary Kaiming-uniform CNN and :math:`G` small (``generator_init_scale``), so the
    first query is close to a static CNN and later queries are perturbations the context
    learns to steer.

    Each query costs the FLOPs of a static CNN of the same shape (per-example weights need no
    more arithmetic); :meth:`conv_flops_per_image` counts them over all iterations, and
    :meth:`hypernet_flops_per_image` the generator's.

    :param int in_channels: image channels.
    :param int image_size: image height = width (for FLOP counting and shape checks).
    :param int num_classes: classifier outputs.
    :param int context_size: :math:`D`.
    :param channels: output channels of each query-CNN layer (a sequence of ints).
    :param int kernel_size: odd kernel size of every layer.
    :param int iterations: number of queries.
    :param int pool_size: side of the final adaptive average pool.
    :param str update: ``"residual"`` or ``"gru"``.
    :param str conv_method: passed to :func:`~probnets.nn.functional.dynamic_conv2d`.
    :param float generator_init_scale: at initialisation, the typical size of the generated
        part of a kernel entry relative to the static part (for contexts of unit scale).
        Small values keep the first queries close to the static CNN, which made training
        more reliable across seeds than larger ones (``guides/hypernets.md``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        context_size: int = 64,
        channels: Sequence[int] = (6, 6, 6),
        kernel_size: int = 3,
        iterations: int = 4,
        pool_size: int = 2,
        update: Literal["residual", "gru"] = "residual",
        conv_method: DynamicConv2dMethod = "auto",
        generator_init_scale: float = 0.1,
    ) -> None:
        super().__init__()
        if update not in ("residual", "gru"):
            raise ValueError(f"update must be 'residual' or 'gru', got {update!r}")
        if conv_method not in DYNAMIC_CONV2D_METHODS:
            raise ValueError(
                f"conv_method must be one of {DYNAMIC_CONV2D_METHODS}, got {conv_method!r}"
            )
        if not 0 <= generator_init_scale < math.inf:
            raise ValueError(
                f"generator_init_scale must be >= 0 and finite, got {generator_init_scale!r}"
            )
        _check_layout(in_channels, image_size, num_classes, channels, kernel_size, pool_size)
        check_size("context_size", context_size)
        check_size("iterations", iterations)
        self._config = dict(
            in_channels=in_channels,
            image_size=image_size,
            num_classes=num_classes,
            context_size=context_size,
            channels=list(channels),
            kernel_size=kernel_size,
            iterations=iterations,
            pool_size=pool_size,
            update=update,
            conv_method=conv_method,
            generator_init_scale=generator_init_scale,
        )
        self.in_channels = in_channels
        self.image_size = image_size
        self.channels = tuple(channels)
        self.kernel_size = kernel_size
        self.iterations = iterations
        self.pool_size = pool_size
        self.update = update
        self.conv_method = conv_method
        self.context_size = context_size

        self._shapes: list[tuple[int, int]] = []  # (C_out, C_in) of each query layer
        c_in = in_channels
        for c_out in self.channels:
            self._shapes.append((c_out, c_in))
            c_in = c_out
        n_params = sum(o * i * kernel_size**2 + o for o, i in self._shapes)
        self.initial_context = nn.Parameter(torch.zeros(context_size))
        self.generator = nn.Linear(context_size, n_params)
        read_size = self.channels[-1] * pool_size**2
        if update == "residual":
            self.update_in = nn.Linear(context_size + read_size, context_size)
            self.update_out = nn.Linear(context_size, context_size)
            self.norm = nn.LayerNorm(context_size)
        else:
            self.gru = nn.GRUCell(read_size, context_size)
        self.classifier = nn.Linear(context_size, num_classes)
        self._init_generator(generator_init_scale)

    def model_config(self) -> dict[str, Any]:
        return dict(self._config)

    def _init_generator(self, scale: float) -> None:
        with torch.no_grad():
            chunks = []
            for c_out, c_in in self._shapes:
                kernel = torch.empty(c_out, c_in, self.kernel_size, self.kernel_size)
                nn.init.kaiming_uniform_(kernel, a=math.sqrt(5))
                bound = 1.0 / math.sqrt(c_in * self.kernel_size**2)
                chunks += [kernel.flatten(), torch.empty(c_out).uniform_(-bound, bound)]
            self.generator.bias.copy_(torch.cat(chunks))
            # Context entries are O(1) (layer norm, or a GRU state in (-1, 1)); this makes the
            # generated part of each kernel entry `scale` times the size of the static part.
            kernel_std = torch.cat(chunks).std()
            self.generator.weight.normal_(
                0.0, scale * kernel_std.item() / math.sqrt(self.context_size)
            )

    def _split(self, theta: Tensor) -> list[tuple[Tensor, Tensor]]:
        params, start = [], 0
        k = self.kernel_size
        for c_out, c_in in self._shapes:
            n = c_out * c_in * k * k
            weight = theta[:, start : start + n].view(-1, c_out, c_in, k, k)
            bias = theta[:, start + n : start + n + c_out]
            params.append((weight, bias))
            start += n + c_out
        return params

    def query(self, x: Tensor, context: Tensor) -> Tensor:
        """Run the CNN generated from ``context`` (B, D) on ``x``; returns the read (B, R)."""
        h = x
        layers = self._split(self.generator(context))
        for layer, (weight, bias) in enumerate(layers):
            h = torch.relu(
                dynamic_conv2d(
                    h, weight, bias, padding=self.kernel_size // 2, method=self.conv_method
                )
            )
            if layer + 1 < len(layers):
                h = F.max_pool2d(h, 2)
        return F.adaptive_avg_pool2d(h, self.pool_size).flatten(1)

    def contexts(self, x: Tensor) -> Tensor:
        """All contexts ``[c_1, ..., c_T]`` as a tensor (iterations, B, D)."""
        check_tensor("x", x, self.initial_context)
        if x.dim() == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x must have shape (B, {', '.join(map(str, expected))}), "
                f"got shape {tuple(x.shape)}"
            )
        context = self.initial_context.expand(x.shape[0], -1)
        out = []
        for _ in range(self.iterations):
            read = self.query(x, context)
            if self.update == "residual":
                delta = self.update_out(torch.relu(self.update_in(torch.cat([context, read], -1))))
                context = self.norm(context + delta)
            else:
                context = self.gru(read, context)
            out.append(context)
        return torch.stack(out)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)`` (or ``(B, H, W)``)."""
        return self.classifier(self.contexts(x)[-1])

    def conv_flops_per_image(self) -> int:
        """Convolution FLOPs of all queries for one image."""
        flops, size = 0, self.image_size
        for layer, (c_out, c_in) in enumerate(self._shapes):
            flops += conv2d_flops(c_in, c_out, self.kernel_size, size, size)
            if layer + 1 < len(self._shapes):
                size //= 2
        return self.iterations * flops

    def hypernet_flops_per_image(self) -> int:
        """FLOPs of generating the query CNNs for one image."""
        return self.iterations * 2 * self.generator.in_features * self.generator.out_features


class StaticQueryCNN(nn.Module):
    """The static counterpart of :class:`ReactiveQueryNet`: one ordinary CNN of the same
    layout (same-padded convolutions + ReLU, 2x2 max pool between layers, adaptive average
    pool to ``pool_size``) and a linear classifier, for accuracy-per-FLOP comparisons."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32, 32),
        kernel_size: int = 3,
        pool_size: int = 2,
    ) -> None:
        super().__init__()
        _check_layout(in_channels, image_size, num_classes, channels, kernel_size, pool_size)
        self.in_channels, self.image_size = in_channels, image_size
        self.kernel_size, self.pool_size = kernel_size, pool_size
        self.convs = nn.ModuleList()
        c_in = in_channels
        for c_out in channels:
            self.convs.append(nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2))
            c_in = c_out
        self.classifier = nn.Linear(c_in * pool_size**2, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)`` (or ``(B, H, W)``)."""
        check_tensor("x", x, self.classifier.weight)
        if x.dim() == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x must have shape (B, {', '.join(map(str, expected))}), "
                f"got shape {tuple(x.shape)}"
            )
        h = x
        for layer, conv in enumerate(self.convs):
            h = torch.relu(conv(h))
            if layer + 1 < len(self.convs):
                h = F.max_pool2d(h, 2)
        return self.classifier(F.adaptive_avg_pool2d(h, self.pool_size).flatten(1))

    def conv_flops_per_image(self) -> int:
        """Convolution FLOPs of the network for one image."""
        flops, size = 0, self.image_size
        for layer, conv in enumerate(cast(Sequence[nn.Conv2d], self.convs)):
            flops += conv2d_flops(conv.in_channels, conv.out_channels, self.kernel_size, size, size)
            if layer + 1 < len(self.convs):
                size //= 2
        return flops
