"""
What every gated network shares: the gate sites of the model and the guide, the likelihood,
and the user surface (``fit``, ``predict``, ``export_architecture``).
"""

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from typing import Any, Literal, cast, overload

import pyro
import torch
import torch.nn.functional as F
from pyro import distributions as dist
from pyro.nn import PyroModule, PyroParam, pyro_method

from probnets.distributions import HardConcrete
from probnets.models.fitting import FitData, TrainerFactory, fit_steps, is_loader, resolve_trainer
from probnets.infer import Relaxed_ELBO
from probnets.loading import Loadable, model_record
from probnets.models.gated.inputs import (
    TensorOrArray,
    as_float_tensor,
    as_label_tensor,
    check_count,
    check_positive,
)
from probnets.models.gated.priors import (
    BernoulliPrior,
    BetaBernoulliPrior,
    CostPenalty,
    bernoulli_cross_entropy,
)

#: The gate family: exact Bernoulli gates or hard-concrete gates in [0, 1].
GateType = Literal["bernoulli", "hard_concrete"]
#: The likelihood of the network's outputs.
Likelihood = Literal["normal", "categorical"]
#: The data of ``fit``: inputs (with ``y``) or a loader of ``(x, y)`` batches (``y=None``).
FitInputs = TensorOrArray | Iterable[Any]

GATE_TYPES = ("bernoulli", "hard_concrete")
#: Temperature of the default estimator of Bernoulli gates (``Relaxed_ELBO``).
DEFAULT_TEMPERATURE = 0.5
#: Prior inclusion probability of every gate unless ``prior=`` says otherwise.
DEFAULT_PRIOR_P = 0.01
LIKELIHOODS = ("normal", "categorical")


class GatedNetwork(Loadable, PyroModule):
    r"""
    A network whose ``E`` connections are latent gates :math:`z \in \{0,1\}^E` (or
    :math:`[0,1]^E` for hard-concrete gates), with point-estimated weights :math:`w`.

    **Model.** :math:`p \sim` ``prior`` (a number or ``"gate_p" ~ Beta``),
    ``"gates"`` :math:`z_k \sim \mathrm{Bernoulli}(p)`, and per datum ``"obs"``
    :math:`y_n \sim \mathcal{N}(f_{w,z}(x_n), \mathrm{diag}\,\sigma^2)` (``likelihood="normal"``,
    :math:`\sigma` set by ``noise_scale``, see below) or
    :math:`\mathrm{Categorical}(\mathrm{softmax} f_{w,z}(x_n))`. Minibatches are scaled by
    ``num_data / batch`` through the ``"data"`` plate.

    **Guide.** ``gate="bernoulli"``: :math:`q(z) = \prod_k \mathrm{Bernoulli}(\sigma(\phi_k))`,
    one independent logit per gate; the ``"gates"`` site is a plain discrete sample site, so
    any discrete-latent ELBO (Pyro's ``TraceGraph_ELBO``, the ``probnets.infer`` estimators)
    trains it unchanged. The weights are ``nn.Parameter`` s, i.e. point estimates learned by the
    same ELBO (variational EM); no weight prior.

    ``gate="hard_concrete"``: :math:`q(z) = \prod_k \mathrm{HardConcrete}(\log\alpha_k=\phi_k)`,
    reparameterized, and the objective is Louizos et al.'s (2018) L0 objective written as a
    Bernoulli prior on the indicators :math:`1[z_k \neq 0]`:

    .. math::

        \mathbb{E}_q[\log p(y \mid z, w)]
        + \sum_k \pi_k \log p + (1 - \pi_k)\log(1 - p),
        \qquad \pi_k = P_q(z_k \neq 0),

    i.e. the paper's :math:`\lambda = \log\frac{1-p}{p}` nats per expected active gate. The
    gate entropy is omitted, as in the paper, so both ``"gates"`` sites are masked out of the
    density terms (``.mask(False)``) and the prior enters as ``pyro.factor``; the sample
    still flows from guide to model by reparameterization.

    **Wiring prior (explicit default).** ``prior=None`` means ``BernoulliPrior(0.01)``: a
    sparse prior under which keeping a gate costs :math:`\log\frac{1-p}{p} = \log 99
    \approx 4.6` nats of evidence, so the posterior keeps a connection only when the data pay
    for it. A dense prior is one argument away: ``prior=BernoulliPrior(0.5)`` puts no price
    on connections (the posterior follows the likelihood alone), ``BernoulliPrior(0.1)`` is
    the earlier default, ``BetaBernoulliPrior(a, b)`` learns the rate. ``init_logit=0.0``
    starts every gate's posterior at :math:`1/2`, undecided (the earlier ``2.0`` started
    them mostly on); a ``CostPenalty`` adds a price per edge or per FLOP on top of the prior.

    :param int num_gates: ``E``.
    :param str gate: ``"bernoulli"`` or ``"hard_concrete"``.
    :param prior: ``BernoulliPrior`` or ``BetaBernoulliPrior`` (default ``BernoulliPrior(0.01)``).
    :param str likelihood: ``"normal"`` or ``"categorical"``.
    :param noise_scale: observation noise :math:`\sigma` of the normal likelihood.
        ``"auto"`` (default): fixed, per output, at the standard deviation of that output's
        training targets (set by :meth:`fit`; 1 before). With the weights point-estimated,
        this scale is what makes the posterior prune: an edge is worth its
        :math:`\log\frac{1-p}{p}` nats when it explains more than a fraction
        :math:`2\log\frac{1-p}{p} / N` of its output's variance. A learned :math:`\sigma`
        (``None``, the earlier default) shrinks to the residual noise, which sharpens the
        likelihood until every co-adapted edge is individually indispensable: redundant
        routes formed early in training are then never pruned, and on noiseless targets
        :math:`\sigma \to 0` prunes nothing. A number fixes :math:`\sigma` for all outputs.
    :param float init_logit: initial guide logit of every gate.
    :param CostPenalty cost: optional expected-cost term.

    Subclasses implement ``forward(x, gates)`` for ``gates`` of shape ``(E,)`` (output
    ``(B, O)``) or ``batch + (1, E)`` (output ``batch + (B, O)``: the trailing ``1`` is the
    data plate's dim, Pyro's broadcasting convention, so vectorized particles work), plus
    ``gate_costs`` and ``reset_parameters``.

    Parameters are ordinary ``PyroModule`` parameters synchronized with Pyro's global param
    store under ``name``: two instances with the same name share values, so call
    ``pyro.clear_param_store()`` between independent fits or give distinct names.
    """

    #: Shape of one input example (set by the subclass).
    input_shape: tuple[int, ...]
    #: Width of the network's output (set by the subclass).
    num_outputs: int
    #: Size of the training data behind the likelihood's minibatch scaling (set by ``fit``).
    num_data: int | None
    #: The per-step record of the last ``fit`` (see :meth:`fit`).
    history: dict[str, Any] | None
    fixed_noise_scale: float | None
    noise_scale_mode: Literal["auto", "learned", "fixed"] | None
    hard_concrete_limits: tuple[float, float]
    # the learned noise scale: PyroModule turns the PyroParam into a tensor attribute
    noise_scale: torch.Tensor
    # the "auto" noise scale, a buffer set by fit
    target_scale: torch.Tensor | None

    def __init__(
        self,
        num_gates: int,
        *,
        gate: GateType = "bernoulli",
        prior: BernoulliPrior | BetaBernoulliPrior | None = None,
        likelihood: Likelihood = "normal",
        noise_scale: float | Literal["auto"] | None = "auto",
        init_logit: float = 0.0,
        cost: CostPenalty | None = None,
        hard_concrete_beta: float = 2.0 / 3.0,
        hard_concrete_limits: Sequence[float] = (-0.1, 1.1),
        name: str = "",
    ) -> None:
        super().__init__(name)
        if gate not in GATE_TYPES:
            raise ValueError(f"gate: expected one of {GATE_TYPES}, got {gate!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")
        if prior is None:
            prior = BernoulliPrior(DEFAULT_PRIOR_P)
        if not isinstance(prior, (BernoulliPrior, BetaBernoulliPrior)):
            raise TypeError(
                "prior: expected a BernoulliPrior or BetaBernoulliPrior, "
                f"got {type(prior).__name__}"
            )
        if cost is not None and not isinstance(cost, CostPenalty):
            raise TypeError(f"cost: expected a CostPenalty or None, got {type(cost).__name__}")
        if not isinstance(init_logit, (int, float)):
            raise TypeError(f"init_logit: expected a number, got {type(init_logit).__name__}")
        self.num_gates = int(num_gates)
        self.gate = gate
        self.prior = prior
        self.cost = cost
        self.likelihood = likelihood
        self.hard_concrete_beta = hard_concrete_beta
        # a pair: HardConcrete checks it just below
        self.hard_concrete_limits = cast(tuple[float, float], tuple(hard_concrete_limits))
        # Validates beta and limits once, at construction.
        HardConcrete(torch.zeros(1), hard_concrete_beta, self.hard_concrete_limits)
        self.gate_logits = torch.nn.Parameter(torch.full((self.num_gates,), float(init_logit)))
        self.fixed_noise_scale = None
        self.noise_scale_mode = None
        if likelihood == "normal":
            self._set_noise_scale(noise_scale)
        self.num_data = None
        self.history = None

    def _set_noise_scale(self, noise_scale: float | Literal["auto"] | None) -> None:
        if isinstance(noise_scale, str) and noise_scale == "auto":
            self.noise_scale_mode = "auto"
            # Set from the targets by fit; unit scale until then.
            self.register_buffer("target_scale", None)
        elif noise_scale is None:
            self.noise_scale_mode = "learned"
            self.noise_scale = PyroParam(  # type: ignore[assignment]
                torch.tensor(1.0), constraint=dist.constraints.positive
            )
        elif (
            isinstance(noise_scale, (int, float))
            and not isinstance(noise_scale, bool)
            and 0 < noise_scale < float("inf")
        ):
            self.noise_scale_mode = "fixed"
            self.fixed_noise_scale = float(noise_scale)
        else:
            raise ValueError(
                "noise_scale: expected None (learned), 'auto' (each output's standard "
                f"deviation in the training targets) or a positive number, got {noise_scale!r}"
            )

    def model_config(self) -> dict[str, Any]:
        """The constructor arguments this class shares with its subclasses (the prior and
        cost as nested records); subclasses add their own."""
        noise_scale: dict[str | None, float | str | None] = {
            "auto": "auto",
            "learned": None,
            "fixed": self.fixed_noise_scale,
        }
        return {
            "gate": self.gate,
            "prior": model_record(self.prior),
            "likelihood": self.likelihood,
            "noise_scale": noise_scale.get(self.noise_scale_mode, "auto"),
            "cost": None if self.cost is None else model_record(self.cost),
            "hard_concrete_beta": self.hard_concrete_beta,
            "hard_concrete_limits": list(self.hard_concrete_limits),
            "name": self._pyro_name,
        }

    # ----- gates -----------------------------------------------------------------------------

    def gate_distribution(self) -> dist.Bernoulli | HardConcrete:
        """The guide's distribution over the gate vector, batch shape ``(E,)``."""
        logits = self.gate_logits
        if self.gate == "bernoulli":
            return dist.Bernoulli(logits=logits)
        return HardConcrete(logits, self.hard_concrete_beta, self.hard_concrete_limits)

    def gate_probs(self) -> torch.Tensor:
        """Posterior inclusion probability of every gate, ``(E,)``: :math:`\\sigma(\\phi_k)` for
        Bernoulli gates, :math:`P(z_k \\neq 0)` for hard-concrete gates."""
        d = self.gate_distribution()
        if isinstance(d, dist.Bernoulli):  # self.gate == "bernoulli"
            return d.probs.detach()
        return d.prob_nonzero().detach()

    def sample_gates(self, num_samples: int) -> torch.Tensor:
        """``num_samples`` gate vectors from the guide, shape ``(num_samples, 1, E)``."""
        with torch.no_grad():
            return self.gate_distribution().sample((num_samples,)).unsqueeze(-2)

    def _flatten_gates(self, gates: torch.Tensor) -> tuple[torch.Tensor, torch.Size | None]:
        """Check a gate tensor and return it as ``(K, E)`` plus the batch shape to restore."""
        if not isinstance(gates, torch.Tensor):
            raise TypeError(f"gates: expected a tensor, got {type(gates).__name__}")
        if gates.shape[-1:] != (self.num_gates,):
            raise ValueError(
                f"gates: expected shape (..., {self.num_gates}), got {tuple(gates.shape)}"
            )
        if gates.dim() == 1:
            return gates.unsqueeze(0), None
        if gates.shape[-2] != 1:
            raise ValueError(
                "gates: expected shape (E,) or batch + (1, E) (gates are shared across the data "
                f"plate, dim -2 must be 1), got {tuple(gates.shape)}"
            )
        batch = gates.shape[:-2]
        return gates.reshape(-1, self.num_gates), batch

    @staticmethod
    def _restore(out: torch.Tensor, batch: torch.Size | None) -> torch.Tensor:
        if batch is None:
            return out.squeeze(0)
        return out.reshape(batch + out.shape[1:])

    # ----- model and guide -------------------------------------------------------------------

    def _model_gates(self) -> torch.Tensor:
        like = self.gate_logits
        p = self.prior.model(like)
        if self.gate == "bernoulli":
            probs = p.unsqueeze(-1).expand(p.shape + (self.num_gates,))
            z = pyro.sample("gates", dist.Bernoulli(probs=probs).to_event(1))
            activity = z
        else:
            q = self.gate_distribution()
            z = pyro.sample("gates", q.to_event(1).mask(False))
            activity = q.prob_nonzero()
            pyro.factor("gates.expected_log_prior", bernoulli_cross_entropy(activity, p))
        if self.cost is not None:
            self.cost(activity, self.gate_costs(self.cost.cost).to(activity))
        return z

    def _obs_scale(self, like: torch.Tensor) -> torch.Tensor:
        if self.noise_scale_mode == "fixed":
            return like.new_tensor(self.fixed_noise_scale)
        if self.noise_scale_mode == "auto":
            scale = self.target_scale
            return like.new_ones(()) if scale is None else scale.to(like)
        return self.noise_scale.to(like)

    @pyro_method
    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pyro model: gates (and ``p``) from the prior, then the likelihood of ``y``."""
        gates = self._model_gates()
        out = self(x, gates)
        batch_size = out.shape[-2]
        size = self.num_data if self.num_data is not None else batch_size
        with pyro.plate("data", size, subsample=torch.arange(batch_size, device=out.device)):
            if self.likelihood == "normal":
                fn = dist.Normal(out, self._obs_scale(out)).to_event(1)
            else:
                fn = dist.Categorical(logits=out)
            pyro.sample("obs", fn, obs=y)
        return out

    @pyro_method
    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pyro guide: ``gate_p`` (if learned) then independent per-gate ``gates``."""
        self.prior.guide(self.gate_logits)
        q = self.gate_distribution().to_event(1)
        if self.gate == "hard_concrete":
            q = q.mask(False)
        return pyro.sample("gates", q)

    # ----- user surface ----------------------------------------------------------------------

    def _expected_x_shape(self) -> str:
        return "(batch, " + ", ".join(str(d) for d in self.input_shape) + ")"

    def _prepare_data(
        self, x: TensorOrArray, y: TensorOrArray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Check ``x`` (and ``y``) against the network and return them as tensors of its dtype
        and device (NumPy arrays are converted; tensors must already match, see
        :mod:`probnets.models.gated.inputs`).
        """
        dtype, device = self.gate_logits.dtype, self.gate_logits.device
        x = as_float_tensor("x", x, dtype, device)
        if tuple(x.shape[1:]) != tuple(self.input_shape) or x.dim() != len(self.input_shape) + 1:
            raise ValueError(f"x: expected shape {self._expected_x_shape()}, got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"x: expected at least one example, got shape {tuple(x.shape)}")
        if y is None:
            return x, None
        n, num_out = x.shape[0], self.num_outputs
        if self.likelihood == "categorical":
            y = as_label_tensor("y", y, num_out, device)
            if y.shape != (n,):
                raise ValueError(
                    f"y: expected int64 class labels of shape ({n},) for a categorical "
                    f"likelihood, got shape {tuple(y.shape)}"
                )
            return x, y
        y = as_float_tensor("y", y, dtype, device)
        if y.shape != (n, num_out):
            raise ValueError(
                f"y: expected floating targets of shape ({n}, {num_out}) (one row per row "
                f"of x, one column per output) for a normal likelihood, got {tuple(y.shape)}"
            )
        return x, y

    def default_estimator(self) -> pyro.infer.ELBO:
        """A fresh instance of the ELBO :meth:`fit` uses when none is given (see its
        ``estimator`` argument for why): ``Relaxed_ELBO(temperature=0.5)`` for Bernoulli
        gates, ``pyro.infer.Trace_ELBO()`` for hard-concrete gates."""
        if self.gate == "bernoulli":
            return Relaxed_ELBO(temperature=DEFAULT_TEMPERATURE)
        return pyro.infer.Trace_ELBO()

    def fit(
        self,
        x: FitInputs,
        y: TensorOrArray | None = None,
        num_steps: int | None = None,
        estimator: pyro.infer.ELBO | None = None,
        lr: float = 0.01,
        gate_lr: float | None = 0.05,
        gate_betas: Sequence[float] | None = (0.9, 0.9),
        batch_size: int | None = 200,
        param_groups: Mapping[str, Mapping[str, Any]] | None = None,
        record_every: int = 0,
        callback: Callable[[int, float], bool | None] | None = None,
        trainer: TrainerFactory | None = None,
        num_epochs: int | None = None,
        num_data: int | None = None,
        **trainer_kwargs: Any,
    ) -> Any:
        """
        Train weights and gate posteriors by stochastic variational inference with
        :class:`probnets.train.Trainer` (parameter groups, gradient clipping, the NaN guard,
        checkpoints and loggers come from it).

        The defaults are the setting that recovers sparse wiring with nothing but sizes given
        (``guides/gated.md`` has the measurements): together with the constructor's
        ``prior=BernoulliPrior(0.01)``, ``init_logit=0.0`` and ``noise_scale="auto"`` they
        prune every edge the data do not pay for. Each old default is one argument away:
        ``estimator=pyro.infer.TraceGraph_ELBO()``, ``gate_lr=lr``,
        ``gate_betas=(0.9, 0.999)``, ``batch_size=None`` here; ``prior=BernoulliPrior(0.1)``,
        ``init_logit=2.0``, ``noise_scale=None`` in the constructor.

        :param x, y: training inputs and targets (all of them; ``num_data`` is set from
            ``len(x)`` so minibatch ELBOs are scaled correctly). Tensors of the network's
            dtype, or NumPy arrays (converted to it); ``y`` is ``(N, num_outputs)`` floats for
            a normal likelihood, ``(N,)`` int64 labels for a categorical one. Or ``x`` is a
            data loader of ``(x, y)`` batches (a :class:`torch.utils.data.DataLoader`, passed
            over again whenever it ends and resumed exactly) with ``y=None``; each batch is
            checked and converted like tensors.
        :param int num_steps: optimizer steps; or give ``num_epochs``.
        :param estimator: a Pyro ELBO instance (``probnets.infer`` estimators or Pyro's).
            Default for Bernoulli gates: ``probnets.infer.Relaxed_ELBO(temperature=0.5)``,
            the Concrete relaxation (Maddison et al. 2017; Jang et al. 2017), picked on the
            sparse-teacher measurements of ``guides/gated.md`` over DisARM and the score
            function with a running-average baseline. It gives every gate its own pathwise
            gradient from one evaluation of the network, whereas the unbiased estimators
            scale the gradient of all ``E`` gates by one shared scalar cost (difference), so
            the signal each gate receives shrinks as ``E`` grows and as the likelihood
            sharpens. With the default ``noise_scale="auto"`` the relaxation and DisARM
            recovered the teacher's wiring (DisARM at a higher cost per step) and the
            running-average score function did on most seeds; with a learned noise scale
            only the relaxation pruned, the others leaving most gates undecided.
            It is the default because it holds up under both. Its bias (the network is trained
            on gates in ``(0, 1)`` and evaluated on ``{0, 1}``) is small at this temperature
            once the gates approach 0 or 1; pass ``DisARM_ELBO()`` for an unbiased gradient.
            For hard-concrete gates the default is Pyro's ``Trace_ELBO()``: the gates are
            reparameterized, so it is already the pathwise estimator.
        :param float lr: learning rate of weights and prior parameters.
        :param float gate_lr: learning rate of the gate logits (``None``: ``lr``).
        :param tuple gate_betas: Adam betas of the gate logits (used with optimizers that
            take ``betas``; ``None``: the optimizer's). A short second-moment memory
            (``(0.9, 0.9)``) matters when the likelihood is sharp: Adam's usual 0.999
            remembers the large early data gradients for thousands of steps and so scales
            down the small, steady prior gradient that switches unused gates off.
        :param int batch_size: minibatch size of tensors; ``None`` (or at least ``len(x)``)
            for full batch. A data loader brings its own.
        :param dict param_groups: extra trainer rules ``{fnmatch pattern: settings}``, matched
            before the gate rule (e.g. ``{"*weight": {"lr": 0.0}}`` freezes the weights).
        :param int record_every: every this many steps, append the gate probabilities to
            ``self.history["gate_probs"]`` (0: never).
        :param callback: optional ``callable(step, loss)``; returning ``True`` stops training
            (e.g. once the wiring has converged).
        :param trainer: the :class:`~probnets.models.fitting.TrainerFactory` to train with
            (default: :mod:`probnets.train`'s).
        :param int num_epochs: passes over the data instead of ``num_steps`` (``len(x) //
            batch_size`` steps each for tensors, ``len(loader)`` for a loader).
        :param int num_data: the size of the data set behind a loader (default
            ``len(loader.dataset)``), which scales each batch's likelihood.
        :param trainer_kwargs: further :class:`~probnets.train.TrainConfig` settings
            (``optimizer``, ``lr_scheduler``, ``out_dir``, ``resume``, ``clip_norm``...) or
            ``callbacks``.
        :returns: the run's :class:`~probnets.train.TrainResult` (what the trainer's ``run``
            returns). ``self.history`` holds the per-step record: lists ``step``, ``loss``
            (ELBO loss per datum) and, if recorded, ``gate_probs`` (a ``(T, E)`` tensor) at
            ``gate_steps``.
        """
        _check_fit_arguments(
            num_steps,
            num_epochs,
            estimator,
            lr,
            gate_lr,
            gate_betas,
            batch_size,
            record_every,
            callback,
        )
        data, convert, targets = self._fit_data(x, y, num_data)
        n = self.num_data
        if estimator is None:
            estimator = self.default_estimator()
        assert n is not None  # set by _fit_data
        if self.noise_scale_mode == "auto":
            assert targets is not None  # _fit_data reads them in "auto" mode
            std = targets.std(0) if targets.shape[0] > 1 else torch.ones_like(targets[0])
            # A constant output has no variance to explain; unit scale keeps it finite.
            self.target_scale = torch.where(std > 0, std, torch.ones_like(std)).detach()
        rules: dict[str, Any] = dict(param_groups or {})
        rules["*gate_logits"] = {"lr": lr if gate_lr is None else gate_lr}
        if gate_betas is not None and _takes_betas(trainer_kwargs.get("optimizer", "adam")):
            rules["*gate_logits"]["betas"] = tuple(gate_betas)
        if convert is not None or batch_size is None or batch_size >= n:
            batch_size = None  # a loader brings its own; at least len(x): the full data
        recorder = _FitRecorder(self, record_every, callback)
        trainer_kwargs["callbacks"] = [*trainer_kwargs.get("callbacks", ()), recorder]
        trainer_kwargs.setdefault("progress", False)
        # tensors are counted by their first array, a loader by its batches
        sizing = data if convert else cast(tuple[torch.Tensor, ...], data)[0]
        # The data order's seed comes from torch's RNG, so pyro.set_rng_seed fixes it.
        fit_trainer = resolve_trainer(trainer).svi(
            self.model,
            self.guide,
            estimator,
            data,
            batch_size=batch_size,
            seed=int(torch.randint(2**31 - 1, ())),
            convert=convert,
            steps=fit_steps(num_steps, num_epochs, sizing, batch_size),
            lr=lr,
            param_groups=rules,
            **trainer_kwargs,
        )
        result = fit_trainer.run()
        self.history = recorder.finish()
        return result

    def _fit_data(
        self, x: FitInputs, y: TensorOrArray | None, num_data: int | None
    ) -> tuple[FitData, Callable[[Sequence[Any]], Any] | None, torch.Tensor | None]:
        """``(data, convert, targets)`` of :meth:`fit`: checked tensors (``convert`` None) or
        a loader with the per-batch check; sets :attr:`num_data`. ``targets`` are the
        training targets, for the ``"auto"`` noise scale."""
        if not is_loader(x):
            if num_data is not None:
                raise ValueError("num_data is for data loaders; with tensors it is len(x)")
            if y is None:
                raise ValueError(
                    "y: expected the training targets (or x a data loader of "
                    "(x, y) batches), got None"
                )
            # not a loader: tensors or arrays (anything else is refused by name)
            inputs, targets = self._prepare_data(cast(TensorOrArray, x), y)
            self.num_data = inputs.shape[0]
            return (inputs, targets), None, targets
        if y is not None:
            raise ValueError(
                "y: with a data loader x, y must be None (the loader yields (x, y) batches)"
            )
        dataset = getattr(x, "dataset", None)
        if num_data is None:
            if not hasattr(dataset, "__len__"):
                raise ValueError(
                    "num_data: pass the size of the data set behind the loader "
                    "(it has no sized .dataset)"
                )
            num_data = len(cast(Sized, dataset))
        self.num_data = check_count("num_data", num_data, 1, "a positive int")
        loader_targets = None
        if self.noise_scale_mode == "auto":
            loader_targets = self._dataset_targets(dataset)
        return x, self._prepared_batch, loader_targets

    def _prepared_batch(self, batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if len(batch) != 2:
            raise ValueError(f"the data loader must yield (x, y) batches, got {len(batch)} item(s)")
        return self._prepare_data(*batch)

    def _dataset_targets(self, dataset: Any) -> torch.Tensor:
        """All targets of a loader's dataset (the ``"auto"`` noise scale is their standard
        deviation): a TensorDataset's second tensor, or each item's second entry."""
        dtype, device = self.gate_logits.dtype, self.gate_logits.device
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise ValueError(
                "noise_scale='auto' scales the likelihood by the targets' standard "
                "deviation, which needs a loader over a sized, indexable dataset; "
                "construct the network with a fixed noise_scale= instead"
            )
        tensors = getattr(dataset, "tensors", None)
        items = tensors if tensors is not None else dataset[0]
        if len(items) != 2:
            raise ValueError(f"the data loader must yield (x, y) batches, got {len(items)} item(s)")
        if tensors is not None:
            return as_float_tensor("y", tensors[1], dtype, device).to(device)
        rows = [torch.as_tensor(dataset[i][1]) for i in range(len(dataset))]
        return as_float_tensor("y", torch.stack(rows), dtype, device).to(device)

    @overload
    def predict(
        self, x: TensorOrArray, num_samples: int = ..., return_samples: Literal[False] = ...
    ) -> torch.Tensor: ...

    @overload
    def predict(
        self, x: TensorOrArray, num_samples: int, return_samples: Literal[True]
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def predict(
        self, x: TensorOrArray, num_samples: int = ..., *, return_samples: Literal[True]
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def predict(
        self, x: TensorOrArray, num_samples: int = ..., return_samples: bool = ...
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...

    def predict(
        self, x: TensorOrArray, num_samples: int = 100, return_samples: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        Posterior predictive under the guide, averaging ``num_samples`` gate draws.

        :returns: ``(B, O)`` predictive means (normal likelihood) or class probabilities
            (categorical); with ``return_samples=True`` also the per-draw outputs
            ``(num_samples, B, O)`` (means or logits).
        """
        x, _ = self._prepare_data(x)
        check_count("num_samples", num_samples, 1)
        with torch.no_grad():
            out = self(x, self.sample_gates(num_samples).to(self.gate_logits))
            if self.likelihood == "normal":
                summary = out.mean(0)
            else:
                summary = F.softmax(out, -1).mean(0)
        return (summary, out) if return_samples else summary

    def export_architecture(self, threshold: float = 0.5) -> "MaskedNetwork":
        """
        The pruned wiring as a deterministic network to retrain from scratch: gates with
        inclusion probability above ``threshold`` are kept, weights are re-initialized.

        :returns: :class:`MaskedNetwork`.
        """
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold: expected a number in [0, 1), got {threshold!r}")
        mask = (self.gate_probs() > threshold).to(self.gate_logits)
        fresh = copy.deepcopy(self)
        fresh.reset_parameters()
        fresh.history = None
        return MaskedNetwork(fresh, mask)


class _FitRecorder:
    """The trainer callback of :meth:`GatedNetwork.fit`: the per-step record, the gate
    probabilities every ``record_every`` steps, and the user's stopping ``callback``."""

    def __init__(
        self,
        network: GatedNetwork,
        record_every: int,
        callback: Callable[[int, float], bool | None] | None,
    ) -> None:
        self.network = network
        self.record_every = record_every
        self.callback = callback
        self.history: dict[str, Any] = {"step": [], "loss": [], "gate_steps": [], "gate_probs": []}

    def on_step_end(self, trainer: Any) -> None:
        step = trainer.step - 1
        loss = trainer.last_loss / self.network.num_data
        self.history["step"].append(step)
        self.history["loss"].append(loss)
        if self.record_every and step % self.record_every == 0:
            self.history["gate_steps"].append(step)
            self.history["gate_probs"].append(self.network.gate_probs().detach().clone())
        if self.callback is not None and self.callback(step, loss):
            trainer.should_stop = True

    def finish(self) -> dict[str, Any]:
        if self.history["gate_probs"]:
            self.history["gate_probs"] = torch.stack(self.history["gate_probs"])
        return self.history


def _takes_betas(optimizer: Any) -> bool:
    """Whether ``optimizer`` (a name, a torch class or a pyro.optim optimizer) takes
    ``betas``; unknown names count as taking them, for the trainer to refuse."""
    cls = getattr(optimizer, "pt_optim_constructor", optimizer)
    if isinstance(cls, str):
        named = {name.lower(): getattr(torch.optim, name) for name in dir(torch.optim)}
        cls = named.get(cls.lower())
    if not isinstance(cls, type):
        return True
    return "betas" in inspect.signature(cls).parameters


def _check_lengths(num_steps: int | None, num_epochs: int | None) -> None:
    """``num_steps`` and ``num_epochs``, where given, are positive ints."""
    for name, count in (("num_steps", num_steps), ("num_epochs", num_epochs)):
        if count is not None:
            check_count(name, count, 1, "a positive int")


def _check_fit_arguments(
    num_steps: int | None,
    num_epochs: int | None,
    estimator: pyro.infer.ELBO | None,
    lr: float,
    gate_lr: float | None,
    gate_betas: Sequence[float] | None,
    batch_size: int | None,
    record_every: int,
    callback: Callable[[int, float], bool | None] | None,
) -> None:
    """The checks of :meth:`GatedNetwork.fit`'s training arguments (the data are checked by
    ``_prepare_data``)."""
    _check_lengths(num_steps, num_epochs)
    if estimator is not None and not isinstance(estimator, pyro.infer.ELBO):
        raise TypeError(
            "estimator: expected a Pyro ELBO instance (e.g. probnets.infer.DisARM_ELBO()) or "
            f"None, got {type(estimator).__name__}"
        )
    check_positive("lr", lr)
    if gate_lr is not None:
        check_positive("gate_lr", gate_lr)
    betas = tuple(gate_betas) if isinstance(gate_betas, (tuple, list)) else ()
    if gate_betas is not None and (
        len(betas) != 2
        or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0
            for b in betas
        )
    ):
        raise ValueError(f"gate_betas: expected two numbers in [0, 1), got {gate_betas!r}")
    if batch_size is not None:
        check_count("batch_size", batch_size, 1, "a positive int or None")
    check_count("record_every", record_every, 0, "a non-negative int")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable or None, got {type(callback).__name__}")


class MaskedNetwork(torch.nn.Module):
    """
    A gated network frozen to one wiring: ``forward(x) = network(x, mask)``, trained by plain
    maximum likelihood (squared error for a normal likelihood, cross-entropy for a
    categorical one). The gate logits and the prior are not trained.

    :param GatedNetwork network: the network whose wiring is frozen.
    :param torch.Tensor mask: ``(E,)`` gate values (0/1) of the wiring.
    """

    mask: torch.Tensor

    def __init__(self, network: GatedNetwork, mask: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mask", mask)

    @property
    def num_active(self) -> int:
        """The number of open gates."""
        return int(self.mask.sum())

    @property
    def fraction_active(self) -> float:
        """The fraction of gates that are open."""
        return self.num_active / self.mask.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen network's output means (normal likelihood) or logits, ``(B, O)``."""
        return self.network(x, self.mask)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean squared error (normal likelihood) or cross-entropy of ``y``."""
        out = self(x)
        if self.network.likelihood == "normal":
            return F.mse_loss(out, y)
        return F.cross_entropy(out, y)

    def fit(
        self,
        x: FitInputs,
        y: TensorOrArray | None = None,
        num_steps: int | None = None,
        lr: float = 0.01,
        batch_size: int | None = None,
        trainer: TrainerFactory | None = None,
        num_epochs: int | None = None,
        **trainer_kwargs: Any,
    ) -> Any:
        """Minimise the mean loss (a :class:`~probnets.train.LossObjective` trainer by
        default, Adam unless ``optimizer=`` says otherwise; ``trainer=`` a
        :class:`~probnets.models.fitting.TrainerFactory`). Parameters the loss does not
        touch (gate logits, prior, noise scale) get no gradient and stay as they are.

        :param x, y: tensors or NumPy arrays as for :meth:`GatedNetwork.fit`, or a data
            loader of ``(x, y)`` batches with ``y=None``.
        :param int num_steps: optimizer steps; or give ``num_epochs`` (passes over the data).
        :param trainer_kwargs: further :class:`~probnets.train.TrainConfig` settings.
        :returns: the run's :class:`~probnets.train.TrainResult`; ``[row["loss"] for row in
            result.history]`` are the per-step losses.
        """
        _check_lengths(num_steps, num_epochs)
        data: FitData
        convert: Callable[[Sequence[Any]], Any] | None
        if is_loader(x):
            if y is not None:
                raise ValueError(
                    "y: with a data loader x, y must be None (the loader yields (x, y) batches)"
                )
            data, convert, batch_size = x, self.network._prepared_batch, None
            sizing = x
        else:
            # not a loader: tensors or arrays (anything else is refused by name)
            prepared = self.network._prepare_data(cast(TensorOrArray, x), y)
            data, convert, sizing = prepared, None, prepared[0]
            if batch_size is not None and batch_size >= prepared[0].shape[0]:
                batch_size = None
        trainer_kwargs.setdefault("progress", False)
        fit_trainer = resolve_trainer(trainer).loss(
            self.loss,
            self,
            data,
            batch_size=batch_size,
            seed=int(torch.randint(2**31 - 1, ())),
            convert=convert,
            steps=fit_steps(num_steps, num_epochs, sizing, batch_size),
            lr=lr,
            **trainer_kwargs,
        )
        return fit_trainer.run()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Output means (normal likelihood) or class probabilities (categorical), ``(B, O)``."""
        with torch.no_grad():
            out = self(x)
        return out if self.network.likelihood == "normal" else F.softmax(out, -1)


__all__ = ["GATE_TYPES", "LIKELIHOODS", "GatedNetwork", "MaskedNetwork"]
