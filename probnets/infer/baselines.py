"""
Baselines for score-function (REINFORCE) terms.

A baseline ``b`` for site ``z`` may depend on anything that does not depend on the sample
of ``z`` itself; ``E[(f − b) ∇ log q(z)] = E[f ∇ log q(z)]`` then holds for any such ``b``.

**Units.** Under plate subsampling the downstream cost of a local site is scaled by ``N/B``.
Pyro's ``TraceGraph_ELBO`` regresses its baselines on that scaled cost (Pyro issue #555),
so a learned baseline must track a target whose size changes with the batch size. Here every
baseline lives in per-datapoint *unscaled* units: the target is ``cost / scale`` and the
baseline subtracted from the cost is ``scale · b``.

**NVIL** (Mnih & Gregor 2014, §3.3): an input-dependent baseline
``b(x) = m + s · net(x)`` with running mean ``m`` and running standard deviation ``s`` of the
target (exponential moving averages, "centering" and "variance normalization"); the network
regresses the normalized target ``(cost/scale − m) / s``, so its outputs stay O(1) whatever
the scale of the ELBO. The learning signal itself is *not* divided by ``s`` as in the paper:
that would rescale the score-function part of the gradient relative to the pathwise part
(a bias); Adam-type optimizers absorb the overall scale anyway. Without a user network, the
input is the site's detached logits (a function of ``x`` and upstream samples only) and the
network is an MLP registered as ``pyro.module("cv.nvil.<site>", ...)``.

**Leave-one-out** (``num_particles = K > 1``): for particle ``k``,
``b_k = (Σ_{j≠k} f_j) / (K − 1)``, independent of particle ``k``
(Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline for free!").

**References**

[1] *Neural Variational Inference and Learning in Belief Networks*, A. Mnih, K. Gregor (ICML 2014)

[2] *Gradient Estimation Using Stochastic Computation Graphs*, J. Schulman et al. (NeurIPS 2015)
"""

import math
from collections.abc import Mapping
from typing import Any, Literal

import pyro
import torch
from torch import nn

#: A score-function baseline (see :class:`Baselines`).
BaselineName = Literal["decaying_avg", "decaying_avg_site", "nvil", "loo"]
BASELINES = (None, "decaying_avg", "decaying_avg_site", "nvil", "loo")
_BASELINE_KEYS = (
    "use_decaying_avg_baseline",
    "baseline_beta",
    "nn_baseline",
    "nn_baseline_input",
    "baseline_value",
)


def mlp(in_features: int, hidden_size: int, like: torch.Tensor) -> nn.Sequential:
    """A one-hidden-layer tanh MLP with scalar output, in the dtype/device of ``like``."""
    hidden = nn.Linear(in_features, hidden_size)
    output = nn.Linear(hidden_size, 1)
    nn.init.zeros_(output.weight)
    nn.init.zeros_(output.bias)
    net = nn.Sequential(hidden, nn.Tanh(), output)
    return net.to(dtype=like.dtype, device=like.device)


def flatten_event(tensor: torch.Tensor, batch_shape: torch.Size) -> torch.Tensor:
    """Reshapes ``batch_shape + rest`` to ``batch_shape + (prod(rest),)``."""
    tensor = tensor.expand(batch_shape + tensor.shape[len(batch_shape) :])
    return tensor.reshape(batch_shape + (-1,))


class RunningMoments:
    """Exponential moving mean and variance of a scalar signal (starts at the first batch)."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.mean: float | None = None
        self.var: float | None = None

    def std(self) -> float:
        """The running standard deviation (``1.`` before the first update)."""
        return math.sqrt(max(self.var, 1e-8)) if self.var is not None else 1.0

    def update(self, values: torch.Tensor) -> None:
        """Decays the moments toward the mean and variance of ``values``."""
        values = values.detach()
        mean = values.mean().item()
        var = values.var(unbiased=False).item() if values.numel() > 1 else 0.0
        if self.mean is None or self.var is None:
            self.mean, self.var = mean, var
        else:
            b = self.beta
            self.var = b * self.var + (1 - b) * (var + (mean - self.mean) ** 2 * b)
            self.mean = b * self.mean + (1 - b) * mean


class DecayingAverage:
    """
    Exponential moving average of the per-datapoint cost, one average per batch element of
    the site (as Pyro's ``use_decaying_avg_baseline``): element ``i`` of a plate is compared
    with the running average of element ``i``'s own past costs. Vectorized particles share
    their element's average (their costs are averaged into it). When the site's batch shape
    changes (e.g. a smaller last minibatch), the averages restart from their overall mean.
    Each update makes a new tensor (never in place), so a snapshot of the object keeps its
    values.

    :param float beta: decay per update.
    :param bool per_element: one average per batch element (default); ``False`` keeps one
        scalar for the whole site, the mean over its elements (the ``"decaying_avg_site"``
        baseline, kept to compare against: on a plate whose elements have different costs
        a scalar cannot track any of them).
    """

    def __init__(self, beta: float, per_element: bool = True) -> None:
        self.beta = beta
        self.per_element = per_element
        self.mean: torch.Tensor | None = None

    def value(self, like: torch.Tensor) -> torch.Tensor | float:
        """The current averages broadcast like ``like`` (``0`` before the first update)."""
        if self.mean is None:
            return 0.0
        try:
            fits = torch.broadcast_shapes(self.mean.shape, like.shape) == like.shape
        except RuntimeError:
            fits = False
        return self.mean if fits else self.mean.mean()

    def update(self, target: torch.Tensor) -> None:
        """Decays the averages toward ``target`` (per element, already averaged over
        particles)."""
        target = target.detach()
        if not self.per_element:
            target = target.mean()
        if self.mean is None:
            self.mean = target
            return
        mean = self.mean
        if mean.shape != target.shape:  # a new batch shape: restart from the overall mean
            mean = mean.mean().expand(target.shape)
        self.mean = self.beta * mean + (1 - self.beta) * target


class Baselines:
    """
    Per-site baseline state of one score-function estimator.

    :param str default: estimator-wide baseline, one of ``None``, ``"decaying_avg"``,
        ``"decaying_avg_site"``, ``"nvil"``, ``"loo"``.
    :param float beta: decay of running averages.
    :param int hidden_size: hidden units of automatic NVIL networks.
    """

    def __init__(self, default: BaselineName | None, beta: float, hidden_size: int) -> None:
        if default not in BASELINES:
            raise ValueError("baseline must be one of {}, but got {!r}".format(BASELINES, default))
        if not 0 <= beta < 1:
            raise ValueError("baseline_beta must be in [0, 1), but got {}".format(beta))
        self.default = default
        self.beta = beta
        self.hidden_size = hidden_size
        # NVIL centring and normalization, one scalar pair per site
        self.moments: dict[str, RunningMoments] = {}
        # decaying averages, one per batch element of each site
        self.averages: dict[str, DecayingAverage] = {}
        self.nets: dict[str, nn.Module] = {}

    def state_dict(self) -> dict[str, Any]:
        """Running statistics per site (network weights live in the Pyro param store)."""
        return {
            "moments": {name: [m.mean, m.var] for name, m in self.moments.items()},
            "averages": {name: a.mean for name, a in self.averages.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`'s values (and the per-site format of older
        checkpoints)."""
        if "moments" not in state:  # the per-site scalar format of earlier checkpoints
            state = {"moments": state, "averages": {}}
        for name, (mean, var) in state["moments"].items():
            moments = self.moments.setdefault(name, RunningMoments(self.beta))
            moments.mean, moments.var = mean, var
        for name, mean in state["averages"].items():
            per_element = self.default != "decaying_avg_site"
            average = DecayingAverage(self.beta, per_element=per_element)
            self.averages.setdefault(name, average).mean = mean

    def _options(self, site: Mapping[str, Any]) -> dict[str, Any]:
        options = dict(site["infer"].get("baseline", {}))
        unknown = set(options) - set(_BASELINE_KEYS)
        if unknown:
            raise ValueError(
                "site '{}': unknown baseline options {}; expected some of {}".format(
                    site["name"], sorted(unknown), _BASELINE_KEYS
                )
            )
        if "nn_baseline" in options and "baseline_value" in options:
            raise ValueError(
                "site '{}': give either nn_baseline or baseline_value, not both".format(
                    site["name"]
                )
            )
        return options

    def _kind(self, options: Mapping[str, Any]) -> str | None:
        kind: str | None = self.default
        if options.get("use_decaying_avg_baseline"):
            kind = "decaying_avg"
        if "nn_baseline" in options or "nn_baseline_input" in options:
            kind = "nvil"
        if "baseline_value" in options:
            kind = "value"
        return kind

    def __call__(
        self,
        site: Mapping[str, Any],
        inputs: torch.Tensor,
        cost: torch.Tensor,
        num_particles: int,
        particle_dim: int | None,
    ) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """
        Returns ``(baseline, loss)``: the baseline in the cost's (scaled) units, detached,
        and the regression loss of any learned baseline (0. if none).

        :param dict site: the guide site.
        :param torch.Tensor inputs: input of automatic NVIL nets, ``batch_shape + (n,)``
            (a discrete site's detached logits).
        :param torch.Tensor cost: downstream cost broadcast to the site's batch shape.
        :param int num_particles: vectorized particles in ``cost``.
        :param int particle_dim: their batch dimension, ``None`` without vectorized
            particles.
        """
        options = self._options(site)
        kind = self._kind(options)
        if kind is None:
            return 0.0, 0.0
        scale = site["scale"]
        target = (cost / scale).detach()
        if kind == "loo":
            return self._leave_one_out(cost, num_particles, particle_dim), 0.0
        if kind == "value":
            value = options["baseline_value"]
            return (scale * value).detach(), ((value - target) ** 2).sum()
        beta = options.get("baseline_beta", self.beta)
        if kind in ("decaying_avg", "decaying_avg_site"):
            average = self.averages.get(site["name"])
            if average is None:
                average = DecayingAverage(beta, per_element=kind == "decaying_avg")
                self.averages[site["name"]] = average
            baseline = average.value(target)
            per_element = target
            if particle_dim is not None and target.dim() >= -particle_dim:
                per_element = target.mean(particle_dim, keepdim=True)
            average.update(per_element)
            return scale * baseline, 0.0
        return self._nvil(site, options, inputs, target, beta)

    @staticmethod
    def _leave_one_out(
        cost: torch.Tensor, num_particles: int, particle_dim: int | None
    ) -> torch.Tensor:
        if num_particles < 2:
            raise ValueError(
                "the leave-one-out baseline needs num_particles > 1, but got "
                "num_particles={}".format(num_particles)
            )
        if particle_dim is None:
            raise ValueError(
                "the leave-one-out baseline compares particles drawn together: it needs "
                "vectorize_particles=True (got num_particles={} drawn one after the "
                "other)".format(num_particles)
            )
        total = cost.sum(particle_dim, keepdim=True)
        return ((total - cost) / (num_particles - 1)).detach()

    def _nvil(
        self,
        site: Mapping[str, Any],
        options: Mapping[str, Any],
        inputs: torch.Tensor,
        target: torch.Tensor,
        beta: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Input-dependent network on the centred, variance-normalized target."""
        name = site["name"]
        scale = site["scale"]
        moments = self.moments.setdefault(name, RunningMoments(beta))
        mean, std = moments.mean if moments.mean is not None else 0.0, moments.std()
        net = options.get("nn_baseline")
        if "nn_baseline_input" in options:
            inputs = options["nn_baseline_input"].detach()
        if net is None:
            net = self.nets.get(name)
            if net is None:
                net = mlp(inputs.shape[-1], self.hidden_size, inputs)
                self.nets[name] = net
            # update_module_params: after a checkpoint restore the store's values win
            pyro.module("cv.nvil." + name, net, update_module_params=True)
        out = net(inputs)
        if out.dim() > 0 and out.shape[-1] == 1:
            out = out.squeeze(-1)
        out, normalized = torch.broadcast_tensors(out, (target - mean) / std)
        moments.update(target)
        return (scale * (mean + std * out)).detach(), ((out - normalized) ** 2).sum()
