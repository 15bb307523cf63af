"""Attend, Infer, Repeat (AIR) and its difference variant DAIR (Eslami et al. 2016).

**Model.** A scene holds at most ``T`` objects (``num_steps``). For ``t = 0 .. T-1``

.. math::

    z^{\\rm pres}_t &\\sim \\mathrm{Bernoulli}(\\rho_t\\, z^{\\rm pres}_{t-1}), \\quad
        z^{\\rm pres}_{-1} = 1, \\\\
    z^{\\rm where}_t &\\sim \\mathcal N\\big((\\mu_s, \\mu_{xy}, \\mu_{xy}),
        \\mathrm{diag}(\\sigma_s^2, \\sigma_{xy}^2, \\sigma_{xy}^2)\\big), \\qquad
    z^{\\rm what}_t \\sim \\mathcal N(0, I_{50}), \\\\
    x &\\sim \\mathcal N\\Big(\\textstyle\\sum_t z^{\\rm pres}_t\\,
        \\mathrm{ST}\\big(\\sigma(f_\\theta(z^{\\rm what}_t) + b),\\, z^{\\rm where}_t\\big),\\;
        0.3^2 I\\Big),

so the count ``Σ_t z^pres_t`` is truncated-geometric: once an object is absent every later one is.
``ST`` writes a 28×28 window onto the 50×50 canvas (:mod:`probnets.nn.spatial`), ``f_θ`` is an
MLP 50→200→784 and ``b = −2`` keeps empty windows dark. The log-densities of ``z_where_t`` and
``z_what_t`` are multiplied by ``z_pres_t`` (``poutine.scale``): for a hard ``z_pres_t = 0`` they
vanish (masking), for a relaxed ``z_pres_t ∈ (0, 1)`` they are weighted, which is what the
Concrete/REBAR/RELAX estimators of :mod:`probnets.infer` need.

The per-step presence probabilities ``ρ_t`` come from ``z_pres_prior = k``: the count ``n``
has prior ``p(n) ∝ k^n`` on ``0..T``. The class default ``k = 0.01`` is the reference's;
``probnets train air`` defaults to ``k = 1e-4``, which with its larger learning rate learns the
count early instead of sitting at chance (``guides/air.md``); the paper annealed ``k`` towards
``1e-5 … 1e-10``. ``z_pres_prior`` is a plain float attribute, so the trainer's
:class:`~probnets.train.Anneal` can change it every step.

**Guide.** An LSTM (256 units) reads the image (AIR) or the difference between the image and
the reconstruction of the objects found so far (DAIR) together with the previous step's
latents. An MLP head (256→200→7) gives the presence probability and ``z_where``'s location and
scale as offsets of the prior (``loc = μ + Δ``, ``scale = σ · softplus(·)``); the glimpse at
``z_where`` is encoded by an MLP 784→200→(50, 50) into the location and scale of ``z_what``.
``q(z^pres_t) = Bernoulli(π_t z^pres_{t-1})``.

**Baseline.** A second LSTM of the same size reads the same inputs *detached* and predicts the
per-image cost downstream of ``z_pres_t``. It is passed to the estimator as
``infer={"baseline": {"baseline_value": b_t}}`` in per-datapoint, unscaled units
(:mod:`probnets.infer.baselines`; Pyro's AIR regresses the subsample-scaled cost, Pyro issue
#555). The network predicts a residual over ``log N(x | 0, 0.3² I)``, the log-likelihood of an
empty canvas, which depends on the data only; so it regresses values of order 10²
instead of 10³. Its modules are named ``baseline_*`` so ``param_groups={"*baseline*": ...}``
gives them their own learning rate.

**Speed.** For AIR (not DAIR) the image enters every step's LSTM gates through the same
``W_x x``; it is computed once per batch instead of once per step, the larger part of a step's
arithmetic. The architecture (an ``nn.LSTMCell`` over ``[x, z^where, z^what, z^pres]``) and
its parameters are those of the reference.

**References**

[1] *Attend, Infer, Repeat: Fast Scene Understanding with Generative Models*,
    S. M. A. Eslami, N. Heess, T. Weber, Y. Tassa, D. Szepesvari, K. Kavukcuoglu,
    G. E. Hinton (NeurIPS 2016), arXiv:1603.08575

[2] Pyro's ``examples/air`` and its tutorial (the hyper-parameters used as defaults here).
"""

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Union, cast

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule, pyro_method
from torch import nn

from probnets.data.validation import check_images, check_tensor
from probnets.loading import Loadable
from probnets.nn.spatial import MIN_SCALE, extract_window, place_window, window_box

#: Counts of objects, one per image: a 1-d tensor, NumPy array or sequence of ints.
Counts = Union[torch.Tensor, np.ndarray, Sequence[int]]
#: One guide step: ``(z_pres, presence probability, z_where, z_what)``.
GuideStep = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class AIRInference(NamedTuple):
    """What :meth:`AIR.infer` returns for ``N`` images and ``T`` steps.

    counts: int64 (N,); z_pres: (N, T) 0/1; z_pres_probs: (N, T) the guide's presence
    probability at each step (given the thresholded earlier steps); z_where: (N, T, 3) guide
    means (s, x, y); z_what: (N, T, D) guide means; boxes: (N, T, 4) pixel boxes (x_min, y_min,
    x_max, y_max). Entries of absent steps are kept (they are what the guide proposed) but
    ``z_pres`` is 0.
    """

    counts: torch.Tensor
    z_pres: torch.Tensor
    z_pres_probs: torch.Tensor
    z_where: torch.Tensor
    z_what: torch.Tensor
    boxes: torch.Tensor


def geometric_presence_probs(k: float, num_steps: int) -> list[float]:
    """Per-step success probabilities ``ρ_t = P(n > t | n ≥ t)`` of the count prior
    ``p(n) ∝ k^n`` on ``0..num_steps``."""
    if not (isinstance(k, (int, float)) and k > 0):
        raise ValueError(f"z_pres_prior must be a positive number, got {k!r}")
    tail = [sum(k**n for n in range(t, num_steps + 1)) for t in range(num_steps + 1)]
    return [tail[t + 1] / tail[t] for t in range(num_steps)]


def _lstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class _Recurrence:
    """Steps an ``nn.LSTMCell`` whose input is ``[image, latents]`` with the image part of the
    gates computed once (``fixed``) or per step; the weights are read once per call."""

    def __init__(self, cell: nn.LSTMCell, num_pixels: int) -> None:
        # split, not two slices: the backward of a slice zero-fills a gradient the size of
        # the whole (4H, 2554) matrix and adds the two; split's backward is one cat
        self.w_image, self.w_latent = cell.weight_ih.split(
            [num_pixels, cell.weight_ih.shape[1] - num_pixels], dim=1
        )
        self.w_hidden = cell.weight_hh
        self.bias = cell.bias_ih + cell.bias_hh

    def image_gates(self, image_flat: torch.Tensor) -> torch.Tensor:
        # (W x^T)^T rather than F.linear: the backward then forms the (4H, pixels) weight
        # gradient row-major (grad^T x) instead of as a transposed (pixels, 4H) product that
        # must be gathered column by column into the weight's gradient (measured slower)
        return torch.matmul(self.w_image, image_flat.mT).mT + self.bias

    def step(
        self, image_gates: torch.Tensor, latents: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gates = image_gates + F.linear(latents, self.w_latent) + F.linear(h, self.w_hidden)
        return _lstm_update(gates, c)


@contextmanager
def _presence_weight(z_pres: torch.Tensor) -> Iterator[None]:
    """Weights the log-densities of an object's ``z_where``/``z_what`` by its presence: masked
    out where ``z_pres == 0`` (Pyro's scale must be positive), scaled by a relaxed
    ``z_pres ∈ (0, 1)`` elsewhere (a factor 1 for a hard ``z_pres``)."""
    present = z_pres > 0
    with (
        # pyro's stub names the legacy BoolTensor class; a bool tensor is what mask takes
        poutine.mask(mask=present),  # type: ignore[call-overload]
        poutine.scale(scale=torch.where(present, z_pres, torch.ones_like(z_pres))),
    ):
        yield


def _stack(tensors: Sequence[torch.Tensor], lead: torch.Size) -> torch.Tensor:
    """Stack per-step tensors of shape (..., E) on a new dim 0, broadcasting ``...`` to
    ``lead``."""
    return torch.stack([t.expand(lead + t.shape[-1:]) for t in tensors])


def _mlp(sizes: Sequence[int], final_bias: float | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if final_bias is not None:
        nn.init.constant_(cast(nn.Linear, layers[-1]).bias, final_bias)
    return nn.Sequential(*layers)


def count_accuracy(pred: Counts, true: Counts) -> float:
    """Fraction of images whose predicted count equals the true count."""
    pred, true = torch.as_tensor(pred), torch.as_tensor(true)
    if pred.shape != true.shape or pred.dim() != 1:
        raise ValueError(
            f"pred and true must be 1-d of equal length, got shapes "
            f"{tuple(pred.shape)} and {tuple(true.shape)}"
        )
    if pred.numel() == 0:
        raise ValueError("count_accuracy needs at least one image")
    return (pred.long() == true.long()).double().mean().item()


def count_confusion(
    pred: Counts, true: Counts, num_true: int | None = None, num_pred: int | None = None
) -> torch.Tensor:
    """Count confusion matrix: entry ``[i, j]`` is the number of images with ``i`` objects that
    were counted as ``j``. Sizes default to ``max + 1`` of the respective counts."""
    pred, true = torch.as_tensor(pred).long().cpu(), torch.as_tensor(true).long().cpu()
    if pred.shape != true.shape or pred.dim() != 1:
        raise ValueError(
            f"pred and true must be 1-d of equal length, got shapes "
            f"{tuple(pred.shape)} and {tuple(true.shape)}"
        )
    if (pred < 0).any() or (true < 0).any():
        raise ValueError("counts must be non-negative")
    num_true = num_true or int(true.max()) + 1
    num_pred = num_pred or int(pred.max()) + 1
    if int(true.max()) >= num_true or int(pred.max()) >= num_pred:
        raise ValueError(f"counts exceed the matrix size {num_true}x{num_pred}")
    matrix = torch.zeros(num_true * num_pred, dtype=torch.long)
    matrix.index_add_(0, true * num_pred + pred, torch.ones_like(true))
    return matrix.reshape(num_true, num_pred)


class AIR(Loadable, PyroModule):
    """Attend, Infer, Repeat (``dair=True``: DAIR) for square grey images; see the module
    docstring for the model, guide and baseline.

    :param int image_size: canvas side (50).
    :param int num_steps: maximum number of objects ``T`` (3).
    :param int window_size: side of an object window (28).
    :param int z_what_size: dimension of ``z_what`` (50).
    :param int rnn_hidden_size: units of the guide's and the baseline's LSTM (256).
    :param int encoder_hidden: hidden units of the glimpse encoder (200).
    :param int decoder_hidden: hidden units of the window decoder (200).
    :param int predict_hidden: hidden units of the guide's and the baseline's heads (200).
    :param float decoder_output_bias: added before the decoder's sigmoid (−2).
    :param float likelihood_sd: pixel noise of the Normal likelihood (0.3).
    :param float scale_prior_mean: prior mean of ``s`` (3).
    :param float scale_prior_sd: prior sd of ``s`` (0.2, the published run; the paper's 0.1).
    :param float pos_prior_mean: prior mean of ``x`` and ``y`` (0).
    :param float pos_prior_sd: prior sd of ``x`` and ``y`` (1).
    :param float z_pres_prior: ``k`` of the count prior ``p(n) ∝ k^n`` (0.01); annealable.
    :param bool dair: feed the guide ``x − reconstruction so far`` (DAIR) instead of ``x``.
    :param bool use_baseline: build the baseline LSTM and pass its value to the estimator.
    :param bool align_corners: convention of the spatial transformer.
    """

    def __init__(
        self,
        image_size: int = 50,
        num_steps: int = 3,
        window_size: int = 28,
        z_what_size: int = 50,
        rnn_hidden_size: int = 256,
        encoder_hidden: int = 200,
        decoder_hidden: int = 200,
        predict_hidden: int = 200,
        decoder_output_bias: float = -2.0,
        likelihood_sd: float = 0.3,
        scale_prior_mean: float = 3.0,
        scale_prior_sd: float = 0.2,
        pos_prior_mean: float = 0.0,
        pos_prior_sd: float = 1.0,
        z_pres_prior: float = 0.01,
        dair: bool = False,
        use_baseline: bool = True,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("image_size", image_size),
            ("num_steps", num_steps),
            ("window_size", window_size),
            ("z_what_size", z_what_size),
            ("rnn_hidden_size", rnn_hidden_size),
            ("encoder_hidden", encoder_hidden),
            ("decoder_hidden", decoder_hidden),
            ("predict_hidden", predict_hidden),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, sd in (
            ("likelihood_sd", likelihood_sd),
            ("scale_prior_sd", scale_prior_sd),
            ("pos_prior_sd", pos_prior_sd),
        ):
            if not (isinstance(sd, (int, float)) and sd > 0):
                raise ValueError(f"{name} must be a positive number, got {sd!r}")
        geometric_presence_probs(z_pres_prior, num_steps)  # validates k
        self._config = dict(
            image_size=image_size,
            num_steps=num_steps,
            window_size=window_size,
            z_what_size=z_what_size,
            rnn_hidden_size=rnn_hidden_size,
            encoder_hidden=encoder_hidden,
            decoder_hidden=decoder_hidden,
            predict_hidden=predict_hidden,
            decoder_output_bias=float(decoder_output_bias),
            likelihood_sd=float(likelihood_sd),
            scale_prior_mean=float(scale_prior_mean),
            scale_prior_sd=float(scale_prior_sd),
            pos_prior_mean=float(pos_prior_mean),
            pos_prior_sd=float(pos_prior_sd),
            z_pres_prior=float(z_pres_prior),
            dair=bool(dair),
            use_baseline=bool(use_baseline),
            align_corners=bool(align_corners),
        )
        self.image_size, self.num_steps, self.window_size = image_size, num_steps, window_size
        self.z_what_size, self.rnn_hidden_size = z_what_size, rnn_hidden_size
        self.likelihood_sd = float(likelihood_sd)
        self.z_pres_prior = float(z_pres_prior)
        self.dair, self.use_baseline, self.align_corners = dair, use_baseline, align_corners
        self.register_buffer(
            "z_where_prior_loc", torch.tensor([scale_prior_mean, pos_prior_mean, pos_prior_mean])
        )
        self.register_buffer(
            "z_where_prior_scale", torch.tensor([scale_prior_sd, pos_prior_sd, pos_prior_sd])
        )

        pixels, window_pixels = image_size**2, window_size**2
        latent_input = 3 + z_what_size + 1
        self.decoder = _mlp([z_what_size, decoder_hidden, window_pixels])
        with torch.no_grad():
            cast(nn.Linear, self.decoder[-1]).bias.add_(decoder_output_bias)
        self.rnn = nn.LSTMCell(pixels + latent_input, rnn_hidden_size)
        self.predict = _mlp([rnn_hidden_size, predict_hidden, 1 + 3 + 3])
        self.encoder = _mlp([window_pixels, encoder_hidden, 2 * z_what_size])
        if use_baseline:
            self.baseline_rnn = nn.LSTMCell(pixels + latent_input, rnn_hidden_size)
            self.baseline_predict = _mlp([rnn_hidden_size, predict_hidden, 1], final_bias=0.0)
            nn.init.zeros_(cast(nn.Linear, self.baseline_predict[-1]).weight)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (current ``z_pres_prior`` included): ``AIR(**config())``."""
        return dict(self._config, z_pres_prior=float(self.z_pres_prior))

    # ------------------------------------------------------------------ shared pieces
    def _check(self, images: torch.Tensor) -> torch.Tensor:
        images = check_images(images, size=self.image_size)
        # next(self.parameters()), not an attribute: reading a PyroModule's attribute inside
        # the model or guide registers its parameters there and would reorder them
        check_tensor("images", images, next(self.parameters()))
        return images

    def _decode(self, z_what: torch.Tensor) -> torch.Tensor:
        """``(M, D)`` codes to ``(M, w, w)`` windows in (0, 1)."""
        out = torch.sigmoid(self.decoder(z_what))
        return out.reshape(-1, self.window_size, self.window_size)

    def _render(self, z_what: torch.Tensor, z_where: torch.Tensor) -> torch.Tensor:
        """Windows of ``z_what`` (..., D) placed at ``z_where`` (..., 3): (..., H, H)."""
        lead = torch.broadcast_shapes(z_what.shape[:-1], z_where.shape[:-1])
        size = z_what.shape[-1]
        windows = self._decode(z_what.expand(lead + (size,)).reshape(-1, size))
        canvas = place_window(
            windows, z_where.expand(lead + (3,)).reshape(-1, 3), self.image_size, self.align_corners
        )
        return canvas.reshape(lead + canvas.shape[-2:])

    def _empty_log_likelihood(self, x_flat: torch.Tensor) -> torch.Tensor:
        sd = self.likelihood_sd
        return (-0.5 * (x_flat / sd) ** 2).sum(-1) - x_flat.shape[-1] * (
            math.log(sd) + 0.5 * math.log(2 * math.pi)
        )

    # ------------------------------------------------------------------ model
    @pyro_method
    def model(self, images: torch.Tensor) -> torch.Tensor:
        """``p(x, z)``: ``images`` (N, H, H) in [0, 1] are observed."""
        self._check(images)
        n, steps = images.shape[0], self.num_steps
        x_flat = images.reshape(n, -1)
        rho = geometric_presence_probs(self.z_pres_prior, steps)
        where_prior = dist.Normal(self.z_where_prior_loc, self.z_where_prior_scale)
        what_prior = dist.Normal(x_flat.new_zeros(self.z_what_size), 1.0)
        z_pres: list[torch.Tensor] = []
        z_where: list[torch.Tensor] = []
        z_what: list[torch.Tensor] = []
        # pyro's stub types plate's device as str; a torch.device is what it takes
        with pyro.plate("data", n, dim=-1, device=images.device):  # type: ignore[arg-type]
            prev = x_flat.new_ones(n)
            for t in range(steps):
                prev = pyro.sample(f"z_pres_{t}", dist.Bernoulli(rho[t] * prev))
                with _presence_weight(prev):
                    z_where.append(pyro.sample(f"z_where_{t}", where_prior.to_event(1)))
                    z_what.append(pyro.sample(f"z_what_{t}", what_prior.to_event(1)))
                z_pres.append(prev)
            # Every step's window is decoded and placed in one batched call; leading dims
            # (vectorized particles) broadcast.
            lead = torch.broadcast_shapes(
                *(p.shape for p in z_pres),
                *(w.shape[:-1] for w in z_where),
                *(w.shape[:-1] for w in z_what),
            )
            windows = self._render(_stack(z_what, lead), _stack(z_where, lead))
            canvas = (_stack([p.unsqueeze(-1) for p in z_pres], lead).unsqueeze(-1) * windows).sum(
                0
            )
            pyro.sample(
                "obs", dist.Normal(canvas.flatten(-2), self.likelihood_sd).to_event(1), obs=x_flat
            )
        return canvas

    # ------------------------------------------------------------------ guide
    def _guide_steps(
        self,
        images: torch.Tensor,
        sample: Callable[[str, dist.TorchDistribution, dict[str, Any]], torch.Tensor],
    ) -> list[GuideStep]:
        """The guide's recursion; ``sample(name, fn, infer)`` draws (``pyro.sample``) or picks
        the MAP value. Returns per-step lists of (z_pres, presence prob, z_where, z_what)."""
        n = images.shape[0]
        x_flat = images.reshape(n, -1)
        rnn = _Recurrence(self.rnn, x_flat.shape[-1])
        predict, encoder = self.predict, self.encoder
        baseline = None
        if self.use_baseline:
            baseline = _Recurrence(self.baseline_rnn, x_flat.shape[-1])
            baseline_predict = self.baseline_predict
            empty = self._empty_log_likelihood(x_flat).detach()
        prior_loc, prior_scale = self.z_where_prior_loc, self.z_where_prior_scale
        hidden = self.rnn_hidden_size
        h, c = x_flat.new_zeros(n, hidden), x_flat.new_zeros(n, hidden)
        bl_h, bl_c = h, c
        z_pres = x_flat.new_ones(n)
        z_where = x_flat.new_zeros(n, 3)
        z_what = x_flat.new_zeros(n, self.z_what_size)
        if not self.dair:
            image_gates = rnn.image_gates(x_flat)
            if baseline is not None:
                bl_image_gates = baseline.image_gates(x_flat)
        canvas = x_flat.new_zeros(n, x_flat.shape[-1])
        out = []
        for t in range(self.num_steps):
            if self.dair:
                residual = x_flat - canvas
                image_gates = rnn.image_gates(residual)
                if baseline is not None:
                    bl_image_gates = baseline.image_gates(residual.detach())
            lead = torch.broadcast_shapes(z_where.shape[:-1], z_what.shape[:-1], z_pres.shape)
            latents = torch.cat(
                [
                    z_where.expand(lead + (3,)),
                    z_what.expand(lead + z_what.shape[-1:]),
                    z_pres.expand(lead).unsqueeze(-1),
                ],
                dim=-1,
            )
            h, c = rnn.step(image_gates, latents, h, c)
            head = predict(h)
            pres_prob = torch.sigmoid(head[..., 0]) * z_pres
            where_loc = prior_loc + head[..., 1:4]
            where_scale = prior_scale * F.softplus(head[..., 4:7])
            infer = {}
            if baseline is not None:
                bl_h, bl_c = baseline.step(bl_image_gates, latents.detach(), bl_h, bl_c)
                value = baseline_predict(bl_h).squeeze(-1) + empty
                infer = {"baseline": {"baseline_value": value}}
            z_pres = sample(f"z_pres_{t}", dist.Bernoulli(pres_prob), infer)
            with _presence_weight(z_pres):
                z_where = sample(
                    f"z_where_{t}", dist.Normal(where_loc, where_scale).to_event(1), {}
                )
                lead = z_where.shape[:-1]
                glimpse = extract_window(
                    images.expand(lead + images.shape[-2:]).reshape((-1,) + images.shape[-2:]),
                    z_where.reshape(-1, 3),
                    self.window_size,
                    self.align_corners,
                )
                what_loc, what_scale = encoder(glimpse.reshape(lead + (-1,))).chunk(2, dim=-1)
                z_what = sample(
                    f"z_what_{t}", dist.Normal(what_loc, F.softplus(what_scale)).to_event(1), {}
                )
            if self.dair:
                canvas = canvas + z_pres.unsqueeze(-1) * self._render(z_what, z_where).flatten(-2)
            out.append((z_pres, pres_prob, z_where, z_what))
        return out

    @pyro_method
    def guide(self, images: torch.Tensor) -> list[GuideStep]:
        """``q(z | x)`` for ``images`` (N, H, H) in [0, 1].

        :returns: per step ``(z_pres, presence probability, z_where, z_what)``.
        """
        self._check(images)

        def draw(name: str, fn: dist.TorchDistribution, infer: dict[str, Any]) -> torch.Tensor:
            # pyro's stub of the infer dict omits its documented "baseline" key
            return pyro.sample(name, fn, infer=infer)  # type: ignore[arg-type]

        n = images.shape[0]
        # pyro's stub types plate's device as str; a torch.device is what it takes
        with pyro.plate("data", n, dim=-1, device=images.device):  # type: ignore[arg-type]
            return self._guide_steps(images, draw)

    # ------------------------------------------------------------------ inference API
    @torch.no_grad()
    def infer(self, images: torch.Tensor, threshold: float = 0.5) -> AIRInference:
        """MAP-style scene reading: at each step the presence is ``prob > threshold`` (given the
        thresholded earlier steps) and ``z_where``/``z_what`` are the guide's means.

        :returns: :class:`AIRInference`.
        """
        self._check(images)

        def pick(name: str, fn: dist.TorchDistribution, infer: dict[str, Any]) -> torch.Tensor:
            if name.startswith("z_pres"):
                return (fn.probs > threshold).to(fn.probs.dtype)
            return fn.mean

        steps = self._guide_steps(images, pick)
        z_pres, probs, z_where, z_what = (torch.stack(v, dim=1) for v in zip(*steps))
        return AIRInference(
            counts=z_pres.sum(1).long(),
            z_pres=z_pres,
            z_pres_probs=probs,
            z_where=z_where,
            z_what=z_what,
            boxes=window_box(z_where, self.image_size, MIN_SCALE),
        )

    @torch.no_grad()
    def reconstruct(
        self, images: torch.Tensor, inferred: AIRInference | None = None
    ) -> torch.Tensor:
        """Decoder mean of the objects :meth:`infer` finds: (N, H, H)."""
        inferred = inferred or self.infer(images)
        windows = self._render(inferred.z_what, inferred.z_where)
        return (inferred.z_pres[..., None, None] * windows).sum(1)

    @torch.no_grad()
    def sample_prior(self, num_images: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scenes from the prior: ``(images, z_pres (N, T))``."""
        trace = poutine.trace(self.model).get_trace(
            self.z_where_prior_loc.new_zeros(num_images, self.image_size, self.image_size)
        )
        values = [
            cast(torch.Tensor, trace.nodes[f"z_pres_{t}"]["value"]) for t in range(self.num_steps)
        ]
        return cast(torch.Tensor, trace.nodes["_RETURN"]["value"]), torch.stack(values, dim=1)

    def model_config(self) -> dict[str, Any]:
        return self.config()

    @classmethod
    def legacy_record(
        cls, extra: Mapping[str, Any], path: str | os.PathLike[str]
    ) -> dict[str, Any]:
        """Checkpoints written before the model record kept the arguments in
        ``extra["config"]``."""
        config = extra.get("config")
        if not isinstance(config, dict) or "num_steps" not in config:
            raise ValueError(
                f"{path!r} holds no AIR configuration in extra['model'] or "
                "extra['config']; was it written by `probnets train air`?"
            )
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "config": config}


__all__ = ["AIR", "AIRInference", "count_accuracy", "count_confusion", "geometric_presence_probs"]
