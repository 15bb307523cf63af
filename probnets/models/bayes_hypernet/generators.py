r"""Weight generators: deterministic maps from latent embeddings to one target layer's weights.

Three parameterizations of a layer with :math:`n_{in}` inputs and :math:`n_{out}` outputs:

- :class:`LayerGenerator` (one embedding :math:`z_l \in \mathbb R^E` per layer):
  :math:`\mathrm{vec}(W_l, b_l) = h_l(z_l)` with :math:`h_l` the identity (then
  :math:`E = n_{out} n_{in} + n_{out}` and the model is a plain Bayesian neural network), an
  affine map (a linear hypernetwork, Ha et al. 2016, eq. 2; the weights are then jointly
  Gaussian under a Gaussian :math:`q(z)`, with rank-:math:`E` covariance), a one-hidden-layer
  MLP, or a *fixed random subspace* around a learned offset,
  :math:`\mathrm{vec}(W_l, b_l) = c_l + P_l z_l` with :math:`P_l` drawn once, rows of unit
  norm, and never trained (the random subspaces of Li et al. 2018, "Measuring the Intrinsic
  Dimension of Objective Landscapes", and Izmailov et al. 2019, "Subspace Inference for
  Bayesian Deep Learning"). Under :math:`z_l \sim \mathcal N(0, s^2 I)` every weight then has
  the prior :math:`\mathcal N(c, s^2)` of a plain BNN, but all of them move in :math:`E`
  directions; since nothing learns :math:`P_l`, the prior cannot shrink the way a learned
  generator's does.
- :class:`UnitGenerator` (one embedding per unit, Karaletsos et al. 2018, "Probabilistic
  Meta-Representations of Neural Networks", eq. 3): the weight from input unit :math:`i` to
  output unit :math:`j` is :math:`w_{ji} = g_w(z^{in}_i, z^{out}_j)` and the bias
  :math:`b_j = g_b(z^{out}_j)`, where :math:`g_w(a, c) = v^\top \tanh(U a + V c)` (odd, so
  weights have prior mean zero) and :math:`g_b` is a small MLP. :math:`g` has
  :math:`O(E H)` parameters whatever the layer size, so the weights are compressed into
  :math:`(n_{in} + n_{out}) E` latent numbers. We generate weights deterministically
  (Karaletsos et al. add Gaussian noise per weight).
- :class:`InputUnitGenerator` (one embedding per *input* unit of each layer, the output side
  learned): :math:`W_l = A_l Z_l^\top / \sqrt{n_{in}}`, i.e. :math:`w_{ji} = a_j^\top z_i /
  \sqrt{n_{in}}`, with :math:`Z_l \in \mathbb R^{n_{in} \times E}` random and the output
  factors :math:`A_l \in \mathbb R^{n_{out} \times E}` and biases point estimates. Each
  input unit's outgoing weights move only with that unit's latent, so the posterior can stay
  at the prior for inputs the data never exercise (the border pixels of digits) while
  pinning down the ones it does: inputs unlike the data then get large epistemic uncertainty,
  which dense generators, whose every direction also moves constrained weights, lose. Under
  the prior the weights are Gaussian with :math:`\mathrm{Var}\, w_{ji} = s^2 \lVert a_j
  \rVert^2 / n_{in}`, independent across inputs :math:`i`. :math:`n_{in} E` random numbers
  per layer.

Every generated weight matrix is divided by :math:`\sqrt{n_{in}}` (except for the identity
and subspace generators, whose priors must be exactly the one asked for), so that generators
whose outputs are :math:`O(1)` give fan-in-scaled weights and one learning rate fits every
layer. All generators accept leading sample dimensions on :math:`z` and return weights
``(..., n_out, n_in)`` and biases ``(..., n_out)``.
"""

import math
from typing import Literal, cast

import torch
from torch import nn

LAYER_GENERATORS = ("identity", "linear", "mlp", "subspace")
#: The maps of :data:`LAYER_GENERATORS` from a layer's embedding to its weights.
LayerGeneratorKind = Literal["identity", "linear", "mlp", "subspace"]


class LayerGenerator(nn.Module):
    r"""Weights of one layer from one embedding ``z`` of shape ``(..., E)``.

    :param int n_in: inputs of the target layer.
    :param int n_out: outputs of the target layer.
    :param int embedding_dim: :math:`E` (must be ``n_out * (n_in + 1)`` for ``"identity"``).
    :param str kind: ``"identity"``, ``"linear"``, ``"mlp"`` or ``"subspace"``.
    :param int hidden_dim: width of the ``"mlp"`` generator's hidden layer.
    :param float prior_scale: :math:`s`, the prior std of ``z``; the ``"subspace"``
        generator's offset starts at a draw from :math:`\mathcal N(0, s^2)`, the weights' prior.
    :param bool fan_in_prior: ``"identity"`` only: the weights' prior std is
        :math:`s / \sqrt{n_{in}}` (biases keep :math:`s`), held in the ``prior_std`` buffer.
    """

    net: nn.Module | None
    prior_std: torch.Tensor
    basis: torch.Tensor

    def __init__(
        self,
        n_in: int,
        n_out: int,
        embedding_dim: int,
        kind: LayerGeneratorKind = "linear",
        hidden_dim: int = 32,
        prior_scale: float = 1.0,
        fan_in_prior: bool = False,
    ) -> None:
        super().__init__()
        if kind not in LAYER_GENERATORS:
            raise ValueError(f"generator must be one of {LAYER_GENERATORS}, got {kind!r}")
        self.n_in, self.n_out, self.kind = n_in, n_out, kind
        self.num_weights = n_out * (n_in + 1)
        if kind == "identity":
            if embedding_dim != self.num_weights:
                raise ValueError(
                    f"the identity generator needs embedding_dim equal to the layer's number of "
                    f"weights and biases, {n_out} * ({n_in} + 1) = {self.num_weights}, got "
                    f"{embedding_dim}"
                )
            self.net = None
            # Prior standard deviation of every weight and bias: s, or s / sqrt(n_in) for the
            # weights under the fan-in prior (biases keep s).
            weight_std = prior_scale / math.sqrt(n_in) if fan_in_prior else prior_scale
            self.register_buffer(
                "prior_std",
                torch.cat(
                    [
                        torch.full((n_out * n_in,), float(weight_std)),
                        torch.full((n_out,), float(prior_scale)),
                    ]
                ),
                persistent=False,
            )
        elif kind == "subspace":
            basis = torch.randn(self.num_weights, embedding_dim)
            self.register_buffer("basis", basis / basis.norm(dim=1, keepdim=True))
            self.offset = nn.Parameter(torch.randn(self.num_weights) * prior_scale)
            self.net = None
        elif kind == "linear":
            self.net = nn.Linear(embedding_dim, self.num_weights)
        else:
            self.net = nn.Sequential(
                nn.Linear(embedding_dim, hidden_dim),
                nn.Tanh(),
                nn.Linear(hidden_dim, self.num_weights),
            )
        if self.net is not None:
            # The weights start as a function of z alone, so q(z) carries them from step one.
            last = self.net[-1] if isinstance(self.net, nn.Sequential) else self.net  # mlp: [-1]
            nn.init.zeros_(cast(nn.Linear, last).bias)
        self.weight_scale = 1.0 if kind in ("identity", "subspace") else 1.0 / math.sqrt(n_in)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` ``(..., E)`` -> ``(W, b)``, ``(..., n_out, n_in)`` and ``(..., n_out)``."""
        if self.kind == "identity":
            flat = z
        elif self.kind == "subspace":
            flat = nn.functional.linear(z, self.basis, self.offset)
        else:
            assert self.net is not None  # "linear" and "mlp" have one
            flat = self.net(z)
        weight = flat[..., : self.n_out * self.n_in].reshape(
            *flat.shape[:-1], self.n_out, self.n_in
        )
        return weight * self.weight_scale, flat[..., self.n_out * self.n_in :]


class UnitGenerator(nn.Module):
    """Weights of one layer from per-unit embeddings (Karaletsos et al. 2018).

    :param int n_in: inputs of the target layer.
    :param int n_out: outputs of the target layer.
    :param int embedding_dim: :math:`E`, dimension of each unit's latent.
    :param int hidden_dim: :math:`H`, width of :math:`g_w` and :math:`g_b`.
    """

    def __init__(self, n_in: int, n_out: int, embedding_dim: int, hidden_dim: int = 32) -> None:
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        # No biases: g_w is then odd in (z_in, z_out), so weights have mean zero under the
        # prior. With biases, all weights of a layer shared one offset at initialisation, which
        # for nonnegative inputs (pixels) switched every ReLU unit off for good.
        self.from_input = nn.Linear(embedding_dim, hidden_dim, bias=False)
        self.from_output = nn.Linear(embedding_dim, hidden_dim, bias=False)
        self.readout = nn.Linear(hidden_dim, 1, bias=False)
        self.bias_net = nn.Sequential(
            nn.Linear(embedding_dim, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, 1)
        )
        self.weight_scale = 1.0 / math.sqrt(n_in)

    def forward(self, z_in: torch.Tensor, z_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_in`` ``(..., n_in, E)`` and ``z_out`` ``(..., n_out, E)`` -> ``(W, b)``."""
        # (..., n_out, 1, H) + (..., 1, n_in, H): one hidden vector per connection.
        hidden = torch.tanh(
            self.from_output(z_out).unsqueeze(-2) + self.from_input(z_in).unsqueeze(-3)
        )
        weight = self.readout(hidden).squeeze(-1) * self.weight_scale
        return weight, self.bias_net(z_out).squeeze(-1)


class InputUnitGenerator(nn.Module):
    """Weights of one layer from per-input-unit embeddings and learned output factors.

    :param int n_in: inputs of the target layer.
    :param int n_out: outputs of the target layer.
    :param int embedding_dim: :math:`E`, dimension of each input unit's latent.
    """

    def __init__(self, n_in: int, n_out: int, embedding_dim: int) -> None:
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        # Rows of norm ~1, so each weight starts with the prior variance s^2 / n_in.
        self.output_factors = nn.Parameter(
            torch.randn(n_out, embedding_dim) / math.sqrt(embedding_dim)
        )
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.weight_scale = 1.0 / math.sqrt(n_in)

    def forward(self, z_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_in`` ``(..., n_in, E)`` -> ``(W, b)``."""
        weight = torch.matmul(self.output_factors, z_in.transpose(-1, -2)) * self.weight_scale
        return weight, self.bias.expand(*weight.shape[:-1])
