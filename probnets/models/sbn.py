"""Sigmoid belief networks (Neal 1992) with a factorized Bernoulli recognition network."""

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn as nn

import pyro
import pyro.distributions as dist
from pyro.nn import PyroModule, pyro_method

from probnets.loading import Loadable

__all__ = ["SigmoidBeliefNet", "binarize"]

# PyroModule[cls] subclasses cls; pyro's stubs type it as a bare PyroModule
_PyroLinear = cast(type[nn.Linear], PyroModule[nn.Linear])
_PyroModuleList = cast(type[nn.ModuleList], PyroModule[nn.ModuleList])


def binarize(
    images: torch.Tensor, seed: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Dynamic binarization: each pixel ~ Bernoulli(intensity), with a seeded generator.

    :param images: float tensor of intensities in [0, 1], any shape.
    :param int seed: seeds a fresh ``torch.Generator`` (ignored if ``generator`` is given).
    :returns: a {0, 1} tensor of the same shape, dtype and device.
    """
    if not torch.is_tensor(images) or not images.is_floating_point():
        raise TypeError(
            f"images must be a floating-point tensor, got {type(images).__name__}"
            + (f" of dtype {images.dtype}" if torch.is_tensor(images) else "")
        )
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"images must hold intensities in [0, 1], got range "
            f"[{float(images.min()):.3g}, {float(images.max()):.3g}]"
        )
    if generator is None:
        generator = torch.Generator(device=images.device)
        generator.manual_seed(0 if seed is None else int(seed))
    u = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (u < images).to(images.dtype)


class SigmoidBeliefNet(Loadable, PyroModule):
    r"""A sigmoid belief net with ``L`` stochastic layers of Bernoulli units and linear
    (affine) connections, the benchmark of NVIL (Mnih & Gregor 2014), MuProp, REBAR
    (Tucker et al. 2017, Sec. 6.2) and RELAX (Grathwohl et al. 2018, Table 1).

    Generative model, for ``layers = (D, H_1, ..., H_L)``:

    .. math::

        h_L \sim \mathrm{Bern}(\sigma(a)),\quad
        h_{l-1} \mid h_l \sim \mathrm{Bern}(\sigma(W_l h_l + c_l)),\quad
        x \mid h_1 \sim \mathrm{Bern}(\sigma(W_1 h_1 + c_1)),

    with :math:`h_0 = x`. Recognition network (the guide), in the opposite direction:
    :math:`q(h_1 \mid x) = \mathrm{Bern}(\sigma(V_1 (x - \bar x) + d_1))`,
    :math:`q(h_l \mid h_{l-1}) = \mathrm{Bern}(\sigma(V_l h_{l-1} + d_l))`. The input is
    centred by the training mean :math:`\bar x` (as in the NVIL and REBAR experiments), and
    the output bias is initialised to :math:`\mathrm{logit}(\bar x)`.

    Sample sites: ``"h1"`` (next to the data) ... ``"hL"``, each a batch of
    ``H_l``-dimensional Bernoulli vectors (``.to_event(1)``) inside ``plate("data")``, and
    the observed ``"x"``. The sites carry no estimator-specific ``infer`` settings, so the
    model trains under any ELBO in :mod:`probnets.infer` unchanged.

    :param layers: ``(D, H_1, ..., H_L)``, e.g. ``(784, 200)`` or ``(784, 200, 200)``.
    :param data_mean: optional ``(D,)`` tensor of training pixel means in [0, 1].

    ``model(x)`` / ``guide(x)`` take ``x`` of shape ``(B, D)`` with values in {0, 1} and the
    module's dtype (use ``.double()`` for float64).
    """

    def __init__(
        self, layers: Sequence[int] = (784, 200), data_mean: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        layers = tuple(layers)
        if len(layers) < 2 or not all(isinstance(n, int) and n > 0 for n in layers):
            raise ValueError(
                f"layers must be (input_dim, hidden_1, ..., hidden_L) with L >= 1 positive "
                f"ints, got {layers!r}"
            )
        self.layers = layers
        self.num_latent_layers = len(layers) - 1
        # decoders[l] maps h_{l+1} -> logits of h_l (h_0 = x); encoders[l] maps h_l -> h_{l+1}.
        self.decoders = _PyroModuleList(
            [_PyroLinear(layers[l + 1], layers[l]) for l in range(len(layers) - 1)]
        )
        self.encoders = _PyroModuleList(
            [_PyroLinear(layers[l], layers[l + 1]) for l in range(len(layers) - 1)]
        )
        self.prior_logits = nn.Parameter(torch.zeros(layers[-1]))
        if data_mean is None:
            data_mean = torch.full((layers[0],), 0.5)
        data_mean = torch.as_tensor(data_mean, dtype=torch.get_default_dtype()).reshape(-1)
        if data_mean.shape != (layers[0],):
            raise ValueError(
                f"data_mean must have shape ({layers[0]},), got {tuple(data_mean.shape)}"
            )
        if not ((data_mean >= 0) & (data_mean <= 1)).all():  # NaN fails both
            raise ValueError(
                f"data_mean must lie in [0, 1], got range "
                f"[{float(data_mean.min()):.3g}, {float(data_mean.max()):.3g}]"
                + (" and NaN" if data_mean.isnan().any() else "")
            )
        self.register_buffer("data_mean", data_mean.clone())
        with torch.no_grad():
            eps = 1e-3
            clamped = data_mean.clamp(eps, 1 - eps)
            cast(nn.Linear, self.decoders[0]).bias.copy_(torch.log(clamped) - torch.log1p(-clamped))

    def model_config(self) -> dict[str, Any]:
        # data_mean only initialises the output biases and is a buffer: the state dict
        # restores it
        return {"layers": list(self.layers)}

    @classmethod
    def legacy_record(
        cls, extra: Mapping[str, Any], path: str | os.PathLike[str]
    ) -> dict[str, Any] | None:
        """``probnets train sbn`` checkpoints written before the model record kept the layer
        widths in ``extra["config"]``."""
        layers = (extra.get("config") or {}).get("layers")
        if extra.get("task") != "sbn" or layers is None:
            return None
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "config": {"layers": layers}}

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x):
            raise TypeError(f"x must be a tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[-1] != self.layers[0]:
            raise ValueError(f"x must have shape (batch, {self.layers[0]}), got {tuple(x.shape)}")
        dtype = self.data_mean.dtype
        if x.dtype != dtype:
            raise TypeError(
                f"x must have the module's dtype {dtype} (use .to(dtype) on x or "
                f".double() / .float() on the module), got {x.dtype}"
            )
        if not ((x == 0) | (x == 1)).all():
            raise ValueError(
                "x must be binary (values in {0, 1}); binarize intensities first, e.g. "
                "with probnets.models.sbn.binarize"
            )
        return x

    @pyro_method
    def model(self, x: torch.Tensor) -> None:
        """``p(x, h)`` for binary ``x`` (B, D)."""
        x = self._check(x)
        batch = x.shape[0]
        top = self.num_latent_layers
        # pyro's stub types plate's device as str; a torch.device is what it takes
        with pyro.plate("data", batch, device=x.device):  # type: ignore[arg-type]
            h = pyro.sample(
                f"h{top}",
                dist.Bernoulli(logits=self.prior_logits.expand(batch, self.layers[-1])).to_event(1),
            )
            for l in range(top - 1, 0, -1):
                h = pyro.sample(f"h{l}", dist.Bernoulli(logits=self.decoders[l](h)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoders[0](h)).to_event(1), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor) -> None:
        """``q(h | x)``, the recognition network, for binary ``x`` (B, D)."""
        x = self._check(x)
        h = x - self.data_mean
        # pyro's stub types plate's device as str; a torch.device is what it takes
        with pyro.plate("data", x.shape[0], device=x.device):  # type: ignore[arg-type]
            for l in range(1, self.num_latent_layers + 1):
                h = pyro.sample(f"h{l}", dist.Bernoulli(logits=self.encoders[l - 1](h)).to_event(1))

    def log_weights(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """Importance log-weights :math:`\\log p(x, h^k) - \\log q(h^k \\mid x)` for ``k = 1..K``
        samples from the recognition network; shape ``(K, B)``. Plain torch (no Pyro
        effects), vectorized over samples."""
        x = self._check(x)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        inp = (x - self.data_mean).expand(num_samples, *x.shape)
        log_q = x.new_zeros(num_samples, x.shape[0])
        hs = []
        for encoder in self.encoders:
            q = dist.Bernoulli(logits=encoder(inp))
            h = q.sample()
            log_q = log_q + q.log_prob(h).sum(-1)
            hs.append(h)
            inp = h
        top = hs[-1]
        log_p = dist.Bernoulli(logits=self.prior_logits).log_prob(top).sum(-1)
        targets = [x.expand(num_samples, *x.shape)] + hs[:-1]
        for decoder, h, target in zip(self.decoders, hs, targets):
            log_p = log_p + dist.Bernoulli(logits=decoder(h)).log_prob(target).sum(-1)
        return log_p - log_q

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """Per-datapoint ELBO estimate (mean of ``num_samples`` log-weights), shape ``(B,)``."""
        return self.log_weights(x, num_samples).mean(0)

    @torch.no_grad()
    def log_likelihood(
        self, x: torch.Tensor, num_samples: int = 1000, chunk_size: int = 100
    ) -> torch.Tensor:
        """Importance-sampled estimate of :math:`\\log p(x)` per datapoint, shape ``(B,)``:
        :math:`\\log \\frac1K \\sum_k p(x, h^k) / q(h^k \\mid x)` with ``K = num_samples``
        draws from the recognition network (a stochastic lower bound that tightens as ``K``
        grows; Burda et al. 2016). Computed in chunks of ``chunk_size`` samples."""
        x = self._check(x)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        chunks = []
        remaining = num_samples
        while remaining > 0:
            k = min(chunk_size, remaining)
            chunks.append(torch.logsumexp(self.log_weights(x, k), dim=0))
            remaining -= k
        return torch.logsumexp(torch.stack(chunks), dim=0) - math.log(num_samples)
