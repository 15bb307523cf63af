r"""Bayesian hypernetworks: a prior over the embeddings a hypernetwork turns into weights.

A target MLP with layers :math:`l = 1..L` (widths :math:`n_0, ..., n_L`) gets its weights
from a hypernetwork :math:`h_\theta` and latent embeddings :math:`z`:

.. math::

    z \sim \mathcal N(0, s^2 I), \qquad (W_l, b_l) = h_{\theta, l}(z), \qquad
    y_n \mid x_n, z \sim p(y \mid f_{W(z)}(x_n)),

with :math:`p` a Categorical over the logits (classification) or
:math:`\mathcal N(f(x_n), \sigma^2)` (regression; :math:`\sigma` fixed or a learned point
estimate). Three parameterizations (see :mod:`.generators`):

- ``"layer"``: one embedding :math:`z_l \in \mathbb R^E` per layer (a plate over layers);
  ``generator="identity"`` makes :math:`z_l` the layer's weights, i.e. a plain Bayesian
  neural network with prior :math:`\mathcal N(0, s^2 I)`, and ``generator="subspace"`` the
  coordinates of the weights in a fixed random :math:`E`-dimensional subspace around a
  learned offset (each weight's prior is still :math:`\mathcal N(c, s^2)`);
- ``"unit"``: one embedding per unit, :math:`z^l_i \in \mathbb R^E` for every unit :math:`i`
  of every layer including input and output (a plate over units per layer), each weight a
  function of the latents of the two units it connects (Karaletsos et al. 2018);
- ``"input_unit"``: one embedding per input-side unit of every layer,
  :math:`W_l = A_l Z_l^\top / \sqrt{n_{l-1}}` with the output factors :math:`A_l` and
  the biases point estimates (:class:`.InputUnitGenerator`): each input's outgoing weights
  have their own latents, so inputs the data never exercise keep their prior uncertainty.

The prior terms can be down-weighted, ``kl_weight`` :math:`\beta`: SVI then maximises
:math:`\mathbb E_q[\log p(y \mid x, z)] - \beta\, \mathrm{KL}(q(z) \,\|\, p(z))`,
the ELBO of the tempered posterior :math:`p_\beta(z \mid y) \propto p(y \mid x,
z)^{1/\beta} p(z)` (likelihood tempering; Wenzel et al. 2020, "How Good is the Bayes
Posterior in Deep Neural Networks Really?", and the KL weighting of Blundell et al. 2015).
With a Gaussian likelihood this is the posterior under noise variance :math:`\beta
\sigma^2`. It is not the Bayes posterior of the model as written; use it knowingly, and
choose :math:`\beta` on held-out data.

Inference is SVI on :math:`z` (Krueger et al. 2017 use a flow *as* the hypernetwork over weights;
here the flow, ``guide="flow"``, is the variational family over embeddings, which are far
fewer than the weights). The hypernetwork parameters :math:`\theta` (and a learned
:math:`\sigma`) are point estimates trained on the same ELBO (type-II maximum likelihood), or
MAP estimates under :math:`\theta \sim \mathcal N(0, s_\theta^2 I)` with
``hypernet_prior_scale``, or, with ``hypernet_posterior=True``, latent variables under that
prior with the same variational family as :math:`z` (then the model is a Bayesian neural
network over :math:`(z, \theta)`; this matters because a point-estimated generator can learn
to make the weights insensitive to :math:`z`, which shrinks the epistemic uncertainty away
from the data too, see ``guides/bayes_hypernet.md``). The predictive distribution averages
the likelihood over :math:`q(z)`; its epistemic part is the spread across samples of
:math:`z`: the variance of the mean function (regression) or the mutual information between
the label and :math:`z` (classification, Houlsby et al. 2011).

With a linear target, the identity (or any affine) generator, Gaussian :math:`q` and known
noise, the model is Bayesian linear regression and the full-rank guide's optimum is its exact
posterior; the mean-field guide's optimum has the exact mean but variances
:math:`1/\Lambda_{ii}` (the inverse diagonal of the posterior precision), which understate the
marginal variances :math:`(\Lambda^{-1})_{ii}` when weights are correlated. The tests check
both.

References: Krueger et al., "Bayesian Hypernetworks", arXiv:1710.04759 (2017); Karaletsos,
Dayan, Ghahramani, "Probabilistic Meta-Representations of Neural Networks", arXiv:1810.00555
(2018); Ritter & Karaletsos, "TyXe: Pyro-based Bayesian neural nets for Pytorch" (2022).
"""

import functools
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple, cast

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions import constraints
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule, PyroParam, pyro_method
from pyro.optim.lr_scheduler import PyroLRScheduler
from torch import nn

from probnets.loading import Loadable, model_record
from probnets.models.bayes_hypernet.checks import (
    TensorOrArray,
    as_tensor,
    check_choice,
    check_finite,
    check_float_like,
    check_positive,
    check_widths,
    conversion_hint,
)
from probnets.models.bayes_hypernet.generators import (
    LAYER_GENERATORS,
    InputUnitGenerator,
    LayerGenerator,
    LayerGeneratorKind,
    UnitGenerator,
)
from probnets.models.bayes_hypernet.guides import GUIDES, GuideKind, make_guide
from probnets.models.bayes_hypernet.target import ActivationName, Target, mlp_forward, parse_target
from probnets.models.fitting import FitData, TrainerFactory, fit_steps, resolve_trainer


class RegressionPrediction(NamedTuple):
    """Predictive moments:
    ``std**2 = epistemic_std**2 + aleatoric_std**2``."""

    mean: torch.Tensor
    std: torch.Tensor
    epistemic_std: torch.Tensor
    aleatoric_std: torch.Tensor


class ClassificationPrediction(NamedTuple):
    """Predictive class probabilities, their entropy (total uncertainty, nats) and the mutual
    information between label and embeddings (epistemic)."""

    probs: torch.Tensor
    entropy: torch.Tensor
    mutual_information: torch.Tensor


#: One target layer's generated ``(W_l, b_l)``.
LayerWeights = tuple[torch.Tensor, torch.Tensor]
#: The likelihood family.
Task = Literal["regression", "classification"]
#: How embeddings are attached to the target network.
Parameterization = Literal["layer", "unit", "input_unit"]
#: A layer generator (``parameterization="layer"``) or the per-unit parameterization's own.
GeneratorKind = Literal["identity", "linear", "mlp", "subspace", "unit", "input_unit"]
#: The identity generator's prior over weights.
WeightPrior = Literal["iid", "fan_in"]

TASKS = ("regression", "classification")
PARAMETERIZATIONS = ("layer", "unit", "input_unit")
NOISES = ("fixed", "learned")
WEIGHT_PRIORS = ("iid", "fan_in")


def _schedules_lr(trainer_kwargs: Mapping[str, Any]) -> bool:
    """Whether the trainer settings bring their own learning-rate schedule."""
    return (
        trainer_kwargs.get("lr_schedule") is not None
        or trainer_kwargs.get("lr_scheduler") is not None
        or isinstance(trainer_kwargs.get("optimizer"), PyroLRScheduler)
    )


def _cosine_decay(step: int, num_steps: int, final: float) -> float:
    """The learning-rate factor of :meth:`BayesianHypernet.fit`: a half cosine from 1 at step
    0 to ``final`` at ``num_steps``."""
    t = min(step / num_steps, 1.0)
    return final + 0.5 * (1.0 - final) * (1.0 + math.cos(math.pi * t))


def _resolve_generator(
    parameterization: Parameterization, generator: GeneratorKind | None, embedding_dim: int | None
) -> tuple[GeneratorKind, int | None]:
    """The generator's name and the embedding size a parameterization gets by default."""
    if parameterization == "layer":
        if generator is None:
            generator = "identity" if embedding_dim is None else "linear"
        check_choice("generator", generator, LAYER_GENERATORS)
    elif generator not in (None, parameterization):
        raise ValueError(
            f"parameterization={parameterization!r} generates weights from unit embeddings "
            f"and takes no generator argument, got generator={generator!r}"
        )
    else:
        generator = parameterization
    if generator == "identity":
        if embedding_dim is not None:
            raise ValueError(
                "embedding_dim must be None with generator='identity' (each layer's "
                f"embedding is its weight vector), got {embedding_dim!r}"
            )
        return generator, None
    embedding_dim = 8 if embedding_dim is None else embedding_dim
    check_positive("embedding_dim", embedding_dim, int)
    return generator, int(embedding_dim)


def _family_defaults(
    generator: str, task: str, init_scale: float | None, activation: ActivationName | None
) -> tuple[float, ActivationName]:
    """``init_scale`` and ``activation`` when left ``None`` (see :class:`BayesianHypernet`):
    the mean-field BNN's were chosen on the 1-D gap problem and MNIST, the other generators
    keep those of the earlier single default."""
    if init_scale is None:
        init_scale = 0.01 if generator == "identity" else 0.1
    if activation is None:
        activation = "tanh" if generator == "identity" and task == "regression" else "relu"
    return init_scale, activation


def _resolve_weight_prior(weight_prior: WeightPrior | None, generator: str) -> WeightPrior | None:
    """The identity generator's prior over weights (``"iid"`` unless asked); ``None`` for
    the other generators, whose priors are over embeddings."""
    if generator != "identity":
        if weight_prior is not None:
            raise ValueError(
                f"weight_prior is the prior of the identity generator's weights; "
                f"generator={generator!r} takes none, got {weight_prior!r}"
            )
        return None
    weight_prior = "iid" if weight_prior is None else weight_prior
    check_choice("weight_prior", weight_prior, WEIGHT_PRIORS)
    return weight_prior


def _check_hypernet_prior(
    hypernet_prior_scale: float | None, hypernet_posterior: bool, generator: str
) -> None:
    if not isinstance(hypernet_posterior, bool):
        raise TypeError(f"hypernet_posterior must be a bool, got {hypernet_posterior!r}")
    if hypernet_prior_scale is not None:
        check_positive("hypernet_prior_scale", hypernet_prior_scale)
        if generator == "identity":
            raise ValueError(
                "hypernet_prior_scale needs a generator with parameters; the "
                "identity generator has none"
            )
    if hypernet_posterior and hypernet_prior_scale is None:
        raise ValueError(
            "hypernet_posterior=True needs hypernet_prior_scale (the prior "
            "standard deviation of the hypernetwork parameters)"
        )


class BayesianHypernet(Loadable, PyroModule):
    r"""A target MLP whose weights a hypernetwork generates from random embeddings.

    **Default.** ``BayesianHypernet(widths, task=...)`` is the uncompressed member of the
    family: ``parameterization="layer"`` with ``generator="identity"`` (the embeddings are
    the weights), i.e. a mean-field Bayesian neural network with a fixed
    :math:`\mathcal N(0, s^2)` prior on every weight and bias, a tanh (regression) or ReLU
    (classification) target and a guide started at standard deviation 0.01. It is the default
    because it keeps epistemic uncertainty where the data say nothing: a learned generator is
    a learned prior, which type-II maximum likelihood shrinks until the function no longer
    varies with the embeddings anywhere; and for regression the target is tanh because a ReLU
    target under a mean-field posterior interpolates confidently between clusters of data
    (Foong et al. 2019, "'In-Between' Uncertainty in Bayesian Neural Networks"), while for
    classification of wide inputs tanh units saturate under the wide prior and calibrate
    poorly. ``guides/bayes_hypernet.md`` has the measurements. The
    compressed hypernetworks are one argument away: ``embedding_dim=E`` (or
    ``generator="linear"``) gives the layer-embedding hypernetwork that was the default before
    (ReLU target, guide started at 0.1), ``parameterization="unit"`` or ``"input_unit"`` the
    per-unit ones.

    :param target: widths ``[n_0, ..., n_L]`` (e.g. ``[1, 64, 64, 1]``) or an
        ``nn.Sequential`` of ``nn.Linear`` layers and elementwise activations.
    :param str task: ``"regression"`` (Normal likelihood) or ``"classification"``
        (Categorical over ``n_L`` classes).
    :param int embedding_dim: :math:`E`, dimension of each embedding (default 8; must be left
        ``None`` for ``generator="identity"``, whose embeddings are the weights; with
        ``parameterization="layer"`` and no ``generator``, giving it selects ``"linear"``).
    :param str guide: ``"mean_field"``, ``"full_rank"``, ``"flow"`` or ``"delta"`` (MAP
        embeddings: the deterministic-hypernetwork baseline).
    :param str parameterization: ``"layer"``, ``"unit"`` or ``"input_unit"``.
    :param str generator: for ``"layer"``: ``"identity"`` (the default without
        ``embedding_dim``), ``"linear"`` (the default with it), ``"mlp"`` or ``"subspace"``
        (a fixed random ``E``-dimensional subspace of each layer's weights around a learned
        offset: a BNN's prior, with ``E`` random numbers per layer); ``"unit"`` and
        ``"input_unit"`` take none (:class:`.UnitGenerator`, :class:`.InputUnitGenerator`).
    :param str noise: ``"fixed"`` or ``"learned"`` observation noise (regression).
    :param float noise_scale: :math:`\sigma`, or its initial value when learned.
    :param float prior_scale: :math:`s`, the prior standard deviation of the embeddings.
    :param int hidden_dim: hidden width of the ``"mlp"`` and per-unit generators.
    :param str activation: activation between target layers (width-list targets); default
        ``"tanh"`` for regression with the identity generator (a smooth prior over functions
        whose spread grows away from the data), ``"relu"`` otherwise (on wide inputs such as
        images, tanh units saturate under the N(0, 1) weight prior and calibrate poorly).
    :param float hypernet_prior_scale: if given, a Normal prior with this scale on every
        hypernetwork parameter, which is then a MAP estimate (default: maximum likelihood).
    :param bool hypernet_posterior: infer the hypernetwork parameters too (needs
        ``hypernet_prior_scale``); they start at a draw from their prior.
    :param float init_scale: initial standard deviation of the Gaussian and flow guides
        (default 0.01 for the identity generator, whose guide then starts close to a single
        network drawn from the prior, and 0.1 for the others).
    :param float kl_weight: :math:`\beta`, the weight of every prior term (the embeddings',
        and the hypernetwork's under ``hypernet_prior_scale``) against the likelihood; below 1
        a tempered ("cold") posterior, see the module docstring. Default 1: the ELBO.
    :param int flow_transforms: IAF layers of the flow guide.
    :param list flow_hidden: hidden widths of each IAF (default ``[2 * latent_dim]``).
    :param str weight_prior: identity generator only: ``"iid"`` (default), every weight and
        bias :math:`\mathcal N(0, s^2)`, or ``"fan_in"``, the weights into a unit with
        :math:`n_{in}` inputs :math:`\mathcal N(0, s^2 / n_{in})` (Neal 1996), biases
        :math:`\mathcal N(0, s^2)`.
    """

    #: The observation noise :math:`\sigma` (a buffer, or a learned ``PyroParam``).
    noise_scale: torch.Tensor
    #: The data size that scales a mini-batch's likelihood (set by :meth:`fit`).
    num_data: int | None

    def __init__(
        self,
        target: Target,
        task: Task = "regression",
        embedding_dim: int | None = None,
        guide: GuideKind = "mean_field",
        parameterization: Parameterization = "layer",
        generator: GeneratorKind | None = None,
        noise: Literal["fixed", "learned"] = "fixed",
        noise_scale: float = 0.1,
        prior_scale: float = 1.0,
        hidden_dim: int = 32,
        activation: ActivationName | None = None,
        hypernet_prior_scale: float | None = None,
        hypernet_posterior: bool = False,
        init_scale: float | None = None,
        flow_transforms: int = 2,
        flow_hidden: Sequence[int] | None = None,
        kl_weight: float = 1.0,
        weight_prior: WeightPrior | None = None,
    ) -> None:
        super().__init__()
        check_choice("task", task, TASKS)
        check_choice("guide", guide, GUIDES)
        check_choice("parameterization", parameterization, PARAMETERIZATIONS)
        check_choice("noise", noise, NOISES)
        generator, embedding_dim = _resolve_generator(parameterization, generator, embedding_dim)
        init_scale, activation = _family_defaults(generator, task, init_scale, activation)
        for name, value in (
            ("noise_scale", noise_scale),
            ("prior_scale", prior_scale),
            ("init_scale", init_scale),
            ("kl_weight", kl_weight),
        ):
            check_positive(name, value)
        check_positive("hidden_dim", hidden_dim, int)
        check_positive("flow_transforms", flow_transforms, int)
        if flow_hidden is not None:
            check_widths("flow_hidden", flow_hidden)
        _check_hypernet_prior(hypernet_prior_scale, hypernet_posterior, generator)
        weight_prior = _resolve_weight_prior(weight_prior, generator)
        widths, activation = parse_target(target, activation)
        if task == "classification" and widths[-1] < 2:
            raise ValueError(
                f"classification needs at least 2 output units (one logit per class), the "
                f"target has {widths[-1]}"
            )

        self.widths, self.activation, self.task = widths, activation, task
        self.embedding_dim, self.parameterization, self.generator = (
            embedding_dim,
            parameterization,
            generator,
        )
        self.guide_kind, self.noise, self.prior_scale = guide, noise, float(prior_scale)
        self.hypernet_prior_scale = hypernet_prior_scale
        self.hypernet_posterior = bool(hypernet_posterior)
        self.hidden_dim, self.init_scale, self.kl_weight = hidden_dim, init_scale, float(kl_weight)
        self.flow_transforms, self.flow_hidden = flow_transforms, flow_hidden
        self.weight_prior = weight_prior
        pairs = list(zip(widths[:-1], widths[1:]))
        if parameterization == "layer":
            self.generators = nn.ModuleList(
                LayerGenerator(
                    n_in,
                    n_out,
                    # the identity generator (no embedding_dim): one latent per weight
                    n_out * (n_in + 1) if embedding_dim is None else embedding_dim,
                    kind=cast(LayerGeneratorKind, generator),  # _resolve_generator checked it
                    hidden_dim=hidden_dim,
                    prior_scale=prior_scale,
                    fan_in_prior=weight_prior == "fan_in",
                )
                for n_in, n_out in pairs
            )
        elif parameterization == "unit":
            assert embedding_dim is not None  # only the identity generator has none
            self.generators = nn.ModuleList(
                UnitGenerator(n_in, n_out, embedding_dim, hidden_dim) for n_in, n_out in pairs
            )
        else:
            assert embedding_dim is not None  # only the identity generator has none
            self.generators = nn.ModuleList(
                InputUnitGenerator(n_in, n_out, embedding_dim) for n_in, n_out in pairs
            )
        if self.hypernet_posterior:
            self._make_generators_random()
        if noise == "learned":
            self.noise_scale = PyroParam(  # type: ignore[assignment]
                torch.tensor(float(noise_scale)), constraints.positive
            )
        else:
            self.register_buffer("noise_scale", torch.tensor(float(noise_scale)))
        # Set by fit() (or by hand): the likelihood of a mini-batch of B examples is scaled by
        # num_data / B, making each step's loss an unbiased estimate of the full-data -ELBO.
        self.num_data = None
        # The guide never sees the observation site, so it can be set up (e.g. by predict())
        # from inputs alone, where "obs" would otherwise look like a latent variable.
        self.autoguide = make_guide(
            guide, poutine.block(self.model, hide=["obs"]), init_scale, flow_transforms, flow_hidden
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments, enough to rebuild the model (e.g. from a checkpoint)."""
        return {
            "target": list(self.widths),
            "task": self.task,
            "embedding_dim": self.embedding_dim,
            "guide": self.guide_kind,
            "parameterization": self.parameterization,
            "generator": self.generator,
            "noise": self.noise,
            "noise_scale": float(self.noise_scale.detach()),
            "prior_scale": self.prior_scale,
            "hidden_dim": self.hidden_dim,
            "activation": self.activation,
            "hypernet_prior_scale": self.hypernet_prior_scale,
            "hypernet_posterior": self.hypernet_posterior,
            "init_scale": self.init_scale,
            "flow_transforms": self.flow_transforms,
            "flow_hidden": self.flow_hidden,
            "kl_weight": self.kl_weight,
            "weight_prior": self.weight_prior,
        }

    def _make_generators_random(self) -> None:
        # Every generator parameter becomes a sample site named after it; the prior's dtype
        # and device follow a buffer so .to()/.double() carry over.
        self.register_buffer("_prior_reference", torch.zeros(()))
        pyro.nn.module.to_pyro_module_(self.generators)
        scale = self.hypernet_prior_scale
        assert scale is not None  # hypernet_posterior needs it
        for module in list(self.generators.modules()):
            for name, param in list(module.named_parameters(recurse=False)):
                shape = tuple(param.shape)
                delattr(module, name)
                setattr(
                    module,
                    name,
                    pyro.nn.PyroSample(
                        lambda _, shape=shape: dist.Normal(
                            self._prior_reference.new_zeros(shape), scale
                        ).to_event(len(shape))
                    ),
                )

    # ------------------------------------------------------------------ inputs
    def _inputs(
        self, x: TensorOrArray, name: str = "x", check_values: bool = False
    ) -> torch.Tensor:
        """``x`` as ``(N, n_0)`` in the model's dtype and device (numpy arrays converted);
        ``check_values`` also refuses NaN/inf and no rows (once per ``fit``/``predict``, not
        per SVI step)."""
        like = self.noise_scale
        x = as_tensor(name, x, like)
        check_float_like(name, x, like)
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.widths[0]:
            raise ValueError(
                f"{name} must have shape (N, {self.widths[0]}) (or (N, ...) with "
                f"{self.widths[0]} features per example), got {tuple(x.shape)}"
            )
        if check_values:
            if len(x) == 0:
                raise ValueError(
                    f"{name} must hold at least one example, got shape {tuple(x.shape)}"
                )
            check_finite(name, x)
        return x.reshape(x.shape[0], self.widths[0])

    def _targets(
        self, y: TensorOrArray | None, num: int, x: torch.Tensor, check_values: bool = False
    ) -> torch.Tensor:
        """``y`` as labels ``(N,)`` or regression targets ``(N, n_L)`` in ``x``'s dtype."""
        if y is None:
            raise ValueError(
                "y is required with tensor or array inputs x (only a data loader "
                "yields its own targets)"
            )
        y = as_tensor("y", y, x)
        if self.task == "classification":
            return self._labels(y, num)
        if not y.is_floating_point():
            raise TypeError(
                f"y must be a floating-point tensor of regression targets, got "
                f"{y.dtype}; convert it with {conversion_hint('y', x.dtype)}"
            )
        k = self.widths[-1]
        if k == 1 and y.shape == (num,):
            y = y.unsqueeze(-1)
        if y.shape != (num, k):
            shapes = f"({num},) or ({num}, 1)" if k == 1 else f"({num}, {k})"
            raise ValueError(f"y must have shape {shapes}, got {tuple(y.shape)}")
        if check_values:
            check_finite("y", y)
        return y.to(x.dtype)

    def _labels(self, y: torch.Tensor, num: int) -> torch.Tensor:
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(
                f"y must be an integer tensor of class labels, got {y.dtype}; "
                f"if it holds whole numbers, convert it with y.long()"
            )
        if y.shape != (num,):
            raise ValueError(f"y must have shape ({num},), got {tuple(y.shape)}")
        if y.numel() and (y.min() < 0 or y.max() >= self.widths[-1]):
            raise ValueError(
                f"y must hold labels in [0, {self.widths[-1] - 1}], got range "
                f"[{y.min().item()}, {y.max().item()}]"
            )
        return y

    # ------------------------------------------------------------------ weights
    def _prior(self, x: torch.Tensor, dim: int) -> dist.TorchDistribution:
        return dist.Normal(x.new_zeros(()), self.prior_scale).expand([dim]).to_event(1)

    def _unit_widths(self) -> list[int]:
        """Widths of the layers whose units carry embeddings (``"unit"``: all of them,
        ``"input_unit"``: all but the output layer)."""
        return self.widths if self.parameterization == "unit" else self.widths[:-1]

    def _sample_embeddings(self, x: torch.Tensor) -> list[torch.Tensor]:
        dim = self.embedding_dim
        if self.parameterization != "layer":
            assert dim is not None  # only the identity generator has none
            latents = []
            for index, width in enumerate(self._unit_widths()):
                # pyro's stub types plate's device as str; a torch.device is what it takes
                with pyro.plate(f"units{index}", width, device=x.device):  # type: ignore[arg-type]
                    latents.append(pyro.sample(f"z.units{index}", self._prior(x, dim)))
            return latents
        if self.generator == "identity":
            # Batch shape (1,), so vectorized particles stack at dim -2 as they do for the
            # plated embeddings; squeezed away before generating.
            return [
                pyro.sample(
                    f"z.layer{index}",
                    dist.Normal(x.new_zeros(1, gen.num_weights), gen.prior_std.to(x)).to_event(1),
                ).squeeze(-2)
                for index, gen in enumerate(cast(Iterable[LayerGenerator], self.generators))
            ]
        assert dim is not None  # only the identity generator has none
        # pyro's stub types plate's device as str; a torch.device is what it takes
        with pyro.plate("layers", len(self.generators), device=x.device):  # type: ignore[arg-type]
            z = pyro.sample("z.layers", self._prior(x, dim))
        return list(z.unbind(-2))

    def weights(self, embeddings: Sequence[torch.Tensor]) -> list[LayerWeights]:
        """``[(W_l, b_l)]`` from the list of embeddings (leading sample dims allowed)."""
        if self.parameterization == "unit":
            return [
                gen(z_in, z_out)
                for gen, z_in, z_out in zip(self.generators, embeddings[:-1], embeddings[1:])
            ]
        return [gen(z) for gen, z in zip(self.generators, embeddings)]

    def _embeddings_from(self, latents: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Order a guide's ``{site: value}`` dict like :meth:`_sample_embeddings` returns it."""
        if self.parameterization != "layer":
            return [latents[f"z.units{i}"] for i in range(len(self._unit_widths()))]
        if self.generator == "identity":
            return [latents[f"z.layer{i}"].squeeze(-2) for i in range(len(self.generators))]
        return list(latents["z.layers"].unbind(-2))

    # ------------------------------------------------------------------ model and guide
    @pyro_method
    def model(self, x: TensorOrArray, y: TensorOrArray | None = None) -> torch.Tensor:
        """The generative model; returns the target's outputs (logits or regression means)."""
        x = self._inputs(x)
        num = x.shape[0]
        if y is not None:
            y = self._targets(y, num, x)
        # Every prior term (embeddings, random or MAP generator) weighs kl_weight.
        with poutine.scale(scale=self.kl_weight):
            weights = self.weights(self._sample_embeddings(x))
            if self.hypernet_prior_scale is not None and not self.hypernet_posterior:
                prior = dist.Normal(x.new_zeros(()), self.hypernet_prior_scale)
                pyro.factor(
                    "hypernet.prior",
                    sum(prior.log_prob(p).sum() for p in self.generators.parameters()),
                )
        out = mlp_forward(x, weights, self.activation)
        scale = 1.0 if self.num_data is None else self.num_data / num
        # pyro's stub types plate's device as str; a torch.device is what it takes
        with (
            poutine.scale(scale=scale),
            pyro.plate("data", num, device=x.device),  # type: ignore[arg-type]
        ):
            if self.task == "classification":
                pyro.sample("obs", dist.Categorical(logits=out), obs=y)
            else:
                sigma = self.noise_scale.to(out)
                pyro.sample("obs", dist.Normal(out, sigma).to_event(1), obs=y)
        return out

    @pyro_method
    def guide(self, x: TensorOrArray, y: TensorOrArray | None = None) -> dict[str, torch.Tensor]:
        """The variational distribution over the embeddings (an autoguide on :meth:`model`);
        its log-density weighs ``kl_weight`` like the prior's, making the KL term
        ``kl_weight * KL(q || p)``."""
        with poutine.scale(scale=self.kl_weight):
            return self.autoguide(x, y)

    # ------------------------------------------------------------------ TyXe-like surface
    def fit(
        self,
        x: TensorOrArray | Iterable[Any],
        y: TensorOrArray | None = None,
        num_steps: int | None = None,
        batch_size: int | None = None,
        lr: float = 1e-2,
        num_particles: int = 1,
        seed: int = 0,
        progress: bool = False,
        num_data: int | None = None,
        lr_decay: float = 0.1,
        trainer: TrainerFactory | None = None,
        num_epochs: int | None = None,
        **trainer_kwargs: Any,
    ) -> Any:
        """Train guide and hypernetwork by SVI with :class:`probnets.train.Trainer`.

        :param x: inputs ``(N, n_0)`` (or ``(N, ...)``), a tensor or a NumPy array (converted
            to the model's dtype); or an iterable of ``(x, y)`` mini-batches, such as a
            :class:`torch.utils.data.DataLoader` (TyXe's style), passed over again whenever it
            ends (a re-iterable loader is resumed exactly), each batch moved to the model's
            device and dtype.
        :param y: targets ``(N,)``/``(N, n_L)`` (regression) or labels ``(N,)``; ``None`` with
            a loader.
        :param int num_steps: optimisation steps; or give ``num_epochs``.
        :param int batch_size: mini-batch size (``None``: full batch); tensors only.
        :param float lr: learning rate (of Adam unless ``optimizer=`` says otherwise).
        :param int num_particles: samples of ``z`` per ELBO estimate (vectorized).
        :param int seed: seed of the mini-batch order (of each pass, for a loader).
        :param int num_data: size of the data set behind a loader, which scales each batch's
            likelihood (default ``len(loader.dataset)``).
        :param float lr_decay: the learning rate follows a half cosine from ``lr`` down to
            ``lr_decay * lr`` over ``num_steps`` (Loshchilov & Hutter 2017), so the last steps'
            gradient noise does not blur the variational parameters; ``1`` keeps ``lr``
            constant. An ``lr_schedule`` or ``lr_scheduler`` passed to the trainer (or a
            :mod:`pyro.optim` scheduler as ``optimizer``) replaces it.
        :param trainer: the :class:`~probnets.models.fitting.TrainerFactory` to train with
            (default: :mod:`probnets.train`'s).
        :param int num_epochs: passes over the data instead of ``num_steps`` (``N //
            batch_size`` steps each for tensors, ``len(loader)`` for a loader).
        :param trainer_kwargs: further :class:`~probnets.train.TrainConfig` settings (e.g.
            ``optimizer``, ``lr_scheduler``, ``lr_schedule``, ``clip_norm``, ``out_dir``) or
            ``callbacks``.
        :returns: the run's :class:`~probnets.train.TrainResult`.
        """
        for name, count in (("num_steps", num_steps), ("num_epochs", num_epochs)):
            if count is not None:
                check_positive(name, count, int)
        num_steps = fit_steps(num_steps, num_epochs, x, batch_size)
        check_positive("num_particles", num_particles, int)
        check_positive("lr", lr)
        check_positive("lr_decay", lr_decay)
        if lr_decay > 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay!r}")
        data: FitData
        if isinstance(x, (torch.Tensor, np.ndarray)):
            if num_data is not None:
                raise ValueError("num_data is for data loaders; with tensors it is len(x)")
            data, convert = self._training_data(x, y), None
        elif y is not None and (isinstance(x, (list, tuple)) or not hasattr(x, "__iter__")):
            raise TypeError(
                f"x must be a torch.Tensor or a numpy array when y is given (or a "
                f"data loader of (x, y) batches, with y=None), got "
                f"{type(x).__name__}"
            )
        else:
            self.num_data = self._loader_size(x, y, batch_size, num_data)
            data, convert = x, self._batch_to_model
        elbo = Trace_ELBO(
            num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1
        )
        # The checkpoint records the model's class and constructor arguments, so
        # probnets.load and BayesianHypernet.load rebuild the model it holds.
        extra = dict(trainer_kwargs.pop("checkpoint_extra", None) or {})
        extra.setdefault("config", self.config())
        extra.setdefault("model", model_record(self))
        trainer_kwargs["checkpoint_extra"] = extra
        if lr_decay != 1 and not _schedules_lr(trainer_kwargs):
            trainer_kwargs.setdefault(
                "lr_schedule",
                functools.partial(_cosine_decay, num_steps=num_steps, final=float(lr_decay)),
            )
        fit_trainer = resolve_trainer(trainer).svi(
            self.model,
            self.guide,
            elbo,
            data,
            batch_size=batch_size,
            seed=seed,
            convert=convert,
            steps=num_steps,
            lr=lr,
            progress=progress,
            **trainer_kwargs,
        )
        return fit_trainer.run()

    def _training_data(
        self, x: TensorOrArray, y: TensorOrArray | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked ``(inputs, targets)`` of ``fit``; sets :attr:`num_data`."""
        inputs = self._inputs(x, check_values=True)
        targets = self._targets(y, inputs.shape[0], inputs, check_values=True)
        self.num_data = inputs.shape[0]
        return inputs, targets

    @staticmethod
    def _loader_size(loader: Any, y: object, batch_size: int | None, num_data: int | None) -> int:
        """The size of the data set behind ``loader``, which scales each batch's likelihood."""
        if y is not None or batch_size is not None:
            raise ValueError(
                "with a data loader, y and batch_size must be None (the loader "
                "yields (x, y) batches of its own size)"
            )
        if num_data is None:
            if not hasattr(getattr(loader, "dataset", None), "__len__"):
                raise ValueError(
                    "pass num_data, the size of the data set behind the loader "
                    "(it has no sized .dataset)"
                )
            num_data = len(loader.dataset)
        check_positive("num_data", num_data, int)
        return int(num_data)

    def _batch_to_model(self, batch: Sequence[Any]) -> tuple[torch.Tensor, ...]:
        """A loader's ``(x, y)`` batch on the model's device, floating-point tensors (and
        numpy arrays) in its dtype; integer inputs are left for :meth:`model` to refuse."""
        if len(batch) != 2:
            raise ValueError(f"the data loader must yield (x, y) batches, got {len(batch)} item(s)")
        like = self.noise_scale

        def like_model(t: TensorOrArray) -> torch.Tensor:
            t = as_tensor("a loader batch", t, like)
            if t.is_floating_point():
                return t.to(device=like.device, dtype=like.dtype)
            return t.to(like.device)

        return tuple(like_model(t) for t in batch)

    @torch.no_grad()
    def sample_embeddings(self, x: TensorOrArray, num_samples: int) -> list[torch.Tensor]:
        """``num_samples`` draws from the guide, as a list of ``(S, ...)`` embeddings."""
        check_positive("num_samples", num_samples, int)
        x = self._inputs(x)
        draws = [self.autoguide(x) for _ in range(num_samples)]
        return self._embeddings_from({k: torch.stack([d[k] for d in draws]) for k in draws[0]})

    @pyro_method
    def _weights_given(self, latents: Mapping[str, torch.Tensor]) -> list[LayerWeights]:
        # Under poutine.condition the generator's parameter sites take the guide's values.
        return self.weights(self._embeddings_from(latents))

    def _posterior_weights(self, x: torch.Tensor, num_samples: int) -> Iterator[list[LayerWeights]]:
        """One ``[(W_l, b_l)]`` per guide draw (a random generator differs between draws)."""
        check_positive("num_samples", num_samples, int)
        for _ in range(num_samples):
            latents = self.autoguide(x)
            yield poutine.condition(self._weights_given, data=latents)(latents)

    @torch.no_grad()
    def sample_weights(self, x: TensorOrArray, num_samples: int) -> list[LayerWeights]:
        """``[(W_l, b_l)]`` with a leading dimension of ``num_samples`` draws from the guide."""
        if self.hypernet_posterior:
            draws = list(self._posterior_weights(self._inputs(x), num_samples))
            return [
                (
                    torch.stack([d[layer][0] for d in draws]),
                    torch.stack([d[layer][1] for d in draws]),
                )
                for layer in range(len(draws[0]))
            ]
        return self.weights(self.sample_embeddings(x, num_samples))

    @torch.no_grad()
    def sample_outputs(
        self, x: TensorOrArray, num_samples: int = 100, chunk_size: int = 16
    ) -> torch.Tensor:
        """Target outputs ``(S, N, n_L)`` under ``S`` guide samples (logits or means)."""
        check_positive("num_samples", num_samples, int)
        check_positive("chunk_size", chunk_size, int)
        inputs = self._inputs(x, check_values=True)
        if self.hypernet_posterior:
            return torch.stack(
                [
                    mlp_forward(inputs, weights, self.activation)
                    for weights in self._posterior_weights(inputs, num_samples)
                ]
            )
        embeddings = self.sample_embeddings(inputs, num_samples)
        outputs = []
        for start in range(0, num_samples, chunk_size):
            chunk = [z[start : start + chunk_size] for z in embeddings]
            outputs.append(mlp_forward(inputs, self.weights(chunk), self.activation))
        return torch.cat(outputs)

    def model_config(self) -> dict[str, Any]:
        return self.config()

    def prepare_to_load(self) -> None:
        # the autoguide creates its parameters on first use: run it once so they exist
        self.predict(self.noise_scale.new_zeros(1, self.widths[0]), num_samples=1)

    @classmethod
    def legacy_record(
        cls, extra: Mapping[str, Any], path: str | os.PathLike[str]
    ) -> dict[str, Any]:
        """Checkpoints written before the model record kept the arguments (and the task's
        ``problem``) in ``extra["config"]``."""
        config = dict(extra.get("config") or {})
        config.pop("problem", None)
        if "target" not in config or "task" not in config:
            raise ValueError(
                f"{path!r} holds no BayesianHypernet configuration in "
                "extra['model'] or extra['config']; was it written by `probnets "
                "train bayes-hypernet` or BayesianHypernet.fit?"
            )
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "config": config}

    @torch.no_grad()
    def predictive_log_likelihood(
        self, x: TensorOrArray, y: TensorOrArray, num_samples: int = 100
    ) -> torch.Tensor:
        """Per-example log posterior predictive density ``log (1/S) Σ_s p(y | x, w_s)``,
        ``(N,)``, with ``w_s`` drawn from the guide (Categorical or Normal likelihood)."""
        outputs = self.sample_outputs(x, num_samples)  # (S, N, out)
        y = as_tensor("y", y, outputs)
        if self.task == "classification":
            log_p = (
                outputs.log_softmax(-1)
                .gather(-1, y.long().view(1, -1, 1).expand(len(outputs), -1, 1))
                .squeeze(-1)
            )
        else:
            y = y.view(outputs.shape[1:]).to(outputs)
            log_p = (
                torch.distributions.Normal(outputs, self.noise_scale.to(outputs))
                .log_prob(y)
                .sum(-1)
            )
        return torch.logsumexp(log_p, 0) - math.log(len(outputs))

    @torch.no_grad()
    def predict(
        self, x: TensorOrArray, num_samples: int = 100
    ) -> RegressionPrediction | ClassificationPrediction:
        """Posterior predictive summaries at ``x``.

        Regression: :class:`RegressionPrediction` ``(mean, std, epistemic_std,
        aleatoric_std)``, each ``(N,)`` for a single output (else ``(N, n_L)``).
        Classification: :class:`ClassificationPrediction` ``(probs (N, C), entropy (N,),
        mutual_information (N,))``.
        """
        outputs = self.sample_outputs(x, num_samples)
        if self.task == "classification":
            probs_s = outputs.softmax(-1)
            probs = probs_s.mean(0)
            entropy = _entropy(probs)
            return ClassificationPrediction(probs, entropy, entropy - _entropy(probs_s).mean(0))
        mean = outputs.mean(0)
        epistemic = outputs.var(0, unbiased=False).sqrt()
        aleatoric = self.noise_scale.to(mean).expand_as(mean)
        std = (epistemic**2 + aleatoric**2).sqrt()
        if self.widths[-1] == 1:
            mean, std, epistemic, aleatoric = (
                t.squeeze(-1) for t in (mean, std, epistemic, aleatoric)
            )
        return RegressionPrediction(mean, std, epistemic, aleatoric)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(torch.finfo(probs.dtype).tiny).log()).sum(-1)
