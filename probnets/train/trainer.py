"""The SVI training loop shared by every ``probnets train`` command.

One step is::

    with poutine.trace(param_only=True) as capture:
        loss = elbo.loss_and_grads(model, guide, *batch)     # fills .grad
    clip each parameter group's gradient norm; if anything is non-finite, skip the step
    optimizer.step(); optimizer.zero_grad()

as in :class:`pyro.infer.SVI`, with what long research runs need around it:

- **Parameter groups.** Parameters are found by name in the capture trace (so parameters an
  ELBO registers itself, e.g. REBAR's ``cv.*`` control-variate parameters, are trained too) and
  assigned to groups by the first matching :mod:`fnmatch` rule in ``param_groups``; each group
  has its own learning rate, optimizer settings and gradient-norm clip.
- **Weight decay.** ``weight_decay`` shrinks the weight matrices (parameters of two or more
  dimensions) by ``1 - lr * weight_decay`` before each update, decoupled from the gradient as in
  AdamW (Loshchilov & Hutter, 2019), with any optimizer; vectors (biases, norm gains) and the
  matrices a module lists in ``no_weight_decay`` (such as the layer-norm LSTM's per-gate gains,
  see :mod:`probnets.nn.weight_decay`) are left alone.
- **Precision.** ``"bf16"`` autocasts the objective to bfloat16; ``"16-mixed"`` to float16 with
  dynamic loss scaling that reaches the backward passes ELBOs run inside ``loss_and_grads``
  (:mod:`probnets.train.precision`); overflowing steps are skipped and the scale halved.
- **Schedules.** A learning-rate factor and any number of :class:`~probnets.train.Anneal`
  objects, all pure functions of the step.
- **NaN/Inf guard.** A non-finite loss or gradient skips the update and is counted and logged
  with the parameters and sample sites involved; after ``max_bad_steps`` consecutive bad steps
  the run stops with :class:`NonFiniteLossError`, keeping the last good checkpoint.
- **Checkpoints** (:mod:`probnets.train.checkpoint`): parameters, module buffers, optimizer
  state, estimator state, sampler position, RNG states and step, written atomically and loaded
  with ``weights_only=True``. A resumed run takes exactly the steps of an uninterrupted one.
- **Progress and metrics.** A tqdm bar with the loss and the model's own metrics; rows in
  ``metrics.csv`` / ``eval.csv`` in the run directory (and TensorBoard when installed).
"""

import contextlib
import fnmatch
import math
import os
import time
from dataclasses import dataclass, field

import pyro
import pyro.poutine as poutine
import torch
from tqdm.auto import tqdm

from probnets.nn.weight_decay import decayed_parameters
from probnets.train.checkpoint import (
    FORMAT_VERSION,
    decode_constraint,
    encode_constraint,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from probnets.train import distributed
from probnets.train.metrics import MetricsLogger
from probnets.train.precision import ScaledBackward, autocast
from probnets.train.schedules import Constant

CHECKPOINT_NAME = "last.pt"
PRECISIONS = ("32", "bf16", "16-mixed")

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive steps with a non-finite loss or gradient."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.run` returns: logged rows and where the run ended."""

    history: list = field(default_factory=list)
    eval_history: list = field(default_factory=list)
    step: int = 0
    bad_steps: int = 0
    checkpoint: str = None


class _SVIObjective:
    """Gradients of an ELBO; parameters are whatever the capture trace saw."""

    def __init__(self, model_fn, guide_fn, loss):
        if not hasattr(loss, "loss_and_grads"):
            raise TypeError(f"loss must be a Pyro ELBO with loss_and_grads, got {type(loss)}")
        self.model_fn, self.guide_fn, self.loss = model_fn, guide_fn, loss

    def __call__(self, batch):
        with poutine.trace(param_only=True) as capture:
            loss = self.loss.loss_and_grads(self.model_fn, self.guide_fn, *batch)
        params = {}
        for name, site in capture.trace.nodes.items():
            value = site["value"]
            unconstrained = getattr(value, "unconstrained", None)
            params[name] = unconstrained() if unconstrained is not None else value
        return float(loss), params

    def named_state(self):
        store = pyro.get_param_store()
        return {name: value.detach().clone() for name, value in store.named_parameters()}

    def state_constraints(self):
        store = pyro.get_param_store()
        return {name: encode_constraint(store._constraints[name], name)
                for name, _ in store.named_parameters()}

    def load_named_state(self, values, codes):
        store = pyro.get_param_store()
        current = dict(store.named_parameters())
        missing = {}
        for name, value in values.items():
            if name in current:
                _copy_in_place(current[name], value, name)
            else:
                missing[name] = value
        if missing:
            # Parameters that the initialization pass did not create: insert them exactly
            # (unconstrained values), not through pyro.param, which would round-trip them
            # through the constraint's transform.
            store.set_state({
                "params": {
                    n: v.to(_device_of(current)).requires_grad_() for n, v in missing.items()
                },
                "constraints": {n: decode_constraint(codes[n]) for n in missing},
            })

    def diagnose(self, batch):
        """Sample sites whose value or log-density is not finite, for the NaN guard's message."""
        bad = []
        try:
            guide_trace = poutine.trace(self.guide_fn).get_trace(*batch)
            model_trace = poutine.trace(
                poutine.replay(self.model_fn, trace=guide_trace)).get_trace(*batch)
        except Exception as error:  # the diagnosis must not hide the original failure
            return [f"(tracing failed: {error})"]
        for where, trace in (("guide", guide_trace), ("model", model_trace)):
            for name, site in trace.nodes.items():
                if site["type"] != "sample":
                    continue
                value = site["value"]
                if torch.is_tensor(value) and not torch.isfinite(value).all():
                    bad.append(f"{where}:{name} (value)")
                    continue
                try:
                    log_prob = site["fn"].log_prob(value)
                except Exception:
                    continue
                if not torch.isfinite(log_prob).all():
                    bad.append(f"{where}:{name} (log-density)")
        return bad


class _PlainObjective:
    """Gradients of a deterministic objective ``objective_fn(*batch) -> scalar``."""

    def __init__(self, objective_fn, module):
        self.objective_fn, self.module = objective_fn, module

    def __call__(self, batch):
        loss = self.objective_fn(*batch)
        if not torch.is_tensor(loss) or loss.dim() != 0:
            raise ValueError(f"objective_fn must return a scalar tensor, got {loss!r}")
        loss.backward()
        return loss.item(), {n: p for n, p in self.module.named_parameters() if p.requires_grad}

    def named_state(self):
        return {}

    def state_constraints(self):
        return {}

    def load_named_state(self, values, codes):
        pass

    def diagnose(self, batch):
        return []


def _batch_device(batch):
    for value in batch:
        if torch.is_tensor(value):
            return value.device
    return torch.device("cpu")


def _device_of(named):
    for value in named.values():
        return value.device
    return torch.device("cpu")


def _copy_in_place(target, value, name):
    if target.shape != value.shape:
        raise ValueError(
            f"checkpoint parameter {name!r} has shape {tuple(value.shape)} but the model's has "
            f"{tuple(target.shape)}: was the checkpoint written with other model options?"
        )
    with torch.no_grad():
        target.copy_(value)


def _bound_modules(*fns):
    modules = []
    for fn in fns:
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, torch.nn.Module) and owner not in modules:
            modules.append(owner)
    return modules


class Trainer:
    """Stochastic variational inference with the bookkeeping of a long research run.

    :param model_fn: the Pyro model, called as ``model_fn(*batch)``.
    :param guide_fn: the guide, called the same way.
    :param loss: a Pyro ELBO (anything with ``loss_and_grads``), e.g. one of
        :mod:`probnets.infer`'s estimators.
    :param data: an iterator of batch tuples, such as :class:`~probnets.train.BatchSampler`;
        its ``state_dict()``, if any, is checkpointed so a resumed run sees the same batches.
    :param int steps: total number of steps (a resumed run continues up to it).
    :param float lr: base learning rate of the default group.
    :param dict param_groups: ``{pattern: {"lr": ..., "clip_norm": ..., ...}}``; the first
        :func:`fnmatch.fnmatch` pattern matching a parameter's name picks its group. Parameters
        an ELBO owns are named ``cv.*`` by convention.
    :param float clip_norm: default per-group gradient-norm clip (``None``: no clipping).
    :param str optimizer: ``"adam"`` (default), ``"adamw"`` or ``"sgd"``.
    :param float weight_decay: decoupled weight decay of the parameters with two or more
        dimensions, except those a module names in ``no_weight_decay``
        (:func:`probnets.nn.decayed_parameters`): each step multiplies them by
        ``1 - lr * weight_decay`` (``lr`` their group's scheduled rate) before the optimizer's
        update, so ``optimizer="adam"`` with it is AdamW on the weight matrices alone.
        Default 0.
    :param dict optim_args: further arguments of the optimizer (``betas``...). Its own
        ``weight_decay`` there applies to every parameter, vectors too.
        Unless they set ``fused`` or ``foreach``, the fused implementation (one kernel over all
        parameters) is used where PyTorch has it for the parameters' device; for AIR's 6.2M
        parameters on a CPU core it is 5x faster than the per-tensor loop PyTorch otherwise
        picks there.
    :param lr_schedule: a callable ``step -> factor`` multiplying every group's learning rate.
    :param schedules: :class:`~probnets.train.Anneal` objects applied before each step.
    :param metrics_fn: ``metrics_fn(trainer) -> dict`` of extra scalars, logged every
        ``log_every`` steps and shown in the progress bar.
    :param eval_fn: ``eval_fn(trainer) -> dict``, run every ``eval_every`` steps and at the end.
    :param out_dir: run directory for ``last.pt``, ``metrics.csv`` and ``eval.csv``.
    :param int checkpoint_every: steps between checkpoints (always one at the end).
    :param resume: ``True`` to continue from ``out_dir/last.pt``, or a checkpoint path.
    :param int max_bad_steps: consecutive non-finite steps tolerated before stopping.
    :param modules: extra modules whose state (buffers) is checkpointed; modules owning
        ``model_fn``/``guide_fn`` as bound methods are found automatically.
    :param checkpoint_extra: dict stored in every checkpoint under ``"extra"`` (e.g. the model's
        constructor arguments, so it can be rebuilt from the checkpoint alone).
    :param str precision: ``"32"``; ``"bf16"`` to run the loss under :func:`torch.autocast`
        with bfloat16 (matrix products and convolutions in bfloat16, parameters, optimizer and
        reductions in float32); or ``"16-mixed"``, autocast to float16 with dynamic loss
        scaling (:mod:`probnets.train.precision`).
    :param float initial_loss_scale: the first loss scale of ``"16-mixed"`` (halved on every
        overflowing step, doubled after 2000 good ones).
    :param distributed_sync: sum gradients over the ranks of the :mod:`torch.distributed`
        process group (default: whenever one with more than one rank is initialized); see
        :mod:`probnets.train.distributed`.
    """

    def __init__(self, model_fn, guide_fn, loss, data, *, steps, lr=1e-3, param_groups=None,
                 clip_norm=None, optimizer="adam", weight_decay=0.0, optim_args=None,
                 lr_schedule=None, schedules=(), metrics_fn=None, eval_fn=None, eval_every=None,
                 log_every=1, out_dir=None, checkpoint_every=None, resume=False, max_bad_steps=10,
                 modules=(), checkpoint_extra=None, progress=True, tensorboard=True,
                 description="train", distributed_sync=None, precision="32",
                 initial_loss_scale=2.0 ** 16,
                 _objective=None):
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be positive or None, got {clip_norm!r}")
        if optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if resume and out_dir is None and resume is True:
            raise ValueError("resume=True needs out_dir (the run directory holding last.pt)")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not initial_loss_scale > 0:
            raise ValueError(f"initial_loss_scale must be positive, got {initial_loss_scale!r}")
        if not isinstance(max_bad_steps, int) or max_bad_steps < 1:
            raise ValueError(f"max_bad_steps must be a positive integer, got {max_bad_steps!r}")
        self.objective = _objective or _SVIObjective(model_fn, guide_fn, loss)
        self.loss = loss
        self.data = data
        self.steps = steps
        self.lr = float(lr)
        self.rules = list((param_groups or {}).items())
        self.clip_norm = clip_norm
        self.optimizer_class = _OPTIMIZERS[optimizer]
        self.weight_decay = float(weight_decay)
        self.optim_args = dict(optim_args or {})
        self.lr_schedule = lr_schedule or Constant(1.0)
        self.schedules = list(schedules)
        self.metrics_fn, self.eval_fn = metrics_fn, eval_fn
        self.eval_every, self.log_every = eval_every, log_every
        self.out_dir = out_dir
        self.checkpoint_every = checkpoint_every
        self.resume = resume
        self.max_bad_steps = max_bad_steps
        self.modules = _bound_modules(model_fn, guide_fn) + [m for m in modules]
        self.checkpoint_extra = dict(checkpoint_extra or {})
        self.progress, self.description = progress, description
        self.precision = precision
        self.initial_loss_scale = float(initial_loss_scale)
        self.scaler = None  # torch.amp.GradScaler of "16-mixed", made on the data's device
        self.overflow_steps = 0
        # Under torch.distributed gradients are summed over ranks and only rank 0 writes.
        if distributed_sync is None:
            distributed_sync = distributed.world_size() > 1
        self.sync = distributed.GradientSync() if distributed_sync else None
        self.is_main = distributed.is_main_process()

        self.step = 0
        self.bad_steps = 0
        self._consecutive_bad = 0
        self.optimizer = None
        self._group_for_rule = {}
        self._param_by_name = {}
        self._pending_optimizer_state = {}
        self.last_loss = float("nan")
        self.last_grad_norms = {}
        self._decay_exempt = None  # ids of module matrices weight decay leaves alone
        self.logger = MetricsLogger(out_dir if self.is_main else None, tensorboard=tensorboard)
        self.result = TrainResult()

    @classmethod
    def for_objective(cls, objective_fn, module, data, **kwargs):
        """Train a deterministic ``module`` by minimising ``objective_fn(*batch)``."""
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module)}")
        kwargs.setdefault("modules", (module,))
        return cls(None, None, None, data, _objective=_PlainObjective(objective_fn, module),
                   **kwargs)

    # ------------------------------------------------------------------ parameters
    @property
    def checkpoint_path(self):
        return None if self.out_dir is None else os.path.join(self.out_dir, CHECKPOINT_NAME)

    def _rule_index(self, name):
        for index, (pattern, _) in enumerate(self.rules):
            if fnmatch.fnmatchcase(name, pattern):
                return index
        return len(self.rules)

    def _new_group(self, rule, param):
        settings = dict(self.optim_args)
        settings["lr"] = self.lr
        settings["clip_norm"] = self.clip_norm
        if rule < len(self.rules):
            settings.update(self.rules[rule][1])
        settings["base_lr"] = settings["lr"]
        settings["params"] = [param]
        if self.optimizer is None:
            if "fused" not in settings and "foreach" not in settings:
                try:
                    self.optimizer = self.optimizer_class([settings], fused=True)
                except RuntimeError:  # no fused kernel for this device or dtype
                    pass
            if self.optimizer is None:
                self.optimizer = self.optimizer_class([settings])
        else:
            self.optimizer.add_param_group(settings)
        self._group_for_rule[rule] = self.optimizer.param_groups[-1]

    def _register(self, named):
        """Bring newly seen parameters (or replaced tensors) into the optimizer."""
        new = {name: p for name, p in named.items() if name not in self._param_by_name}
        if new and self.sync is not None:
            self.sync.broadcast_parameters(new)
        for name, param in named.items():
            known = self._param_by_name.get(name)
            if known is param:
                continue
            if known is not None:
                # The tensor behind a name was replaced (e.g. a param store reload): keep its
                # optimizer state and position.
                for group in self.optimizer.param_groups:
                    group["params"] = [param if p is known else p for p in group["params"]]
                if known in self.optimizer.state:
                    self.optimizer.state[param] = self.optimizer.state.pop(known)
            else:
                rule = self._rule_index(name)
                if rule in self._group_for_rule:
                    self._group_for_rule[rule]["params"].append(param)
                else:
                    self._new_group(rule, param)
                if name in self._pending_optimizer_state:
                    self.optimizer.state[param] = _state_to(
                        self._pending_optimizer_state.pop(name), param.device)
            self._param_by_name[name] = param

    # ------------------------------------------------------------------ one step
    def _grad_norms_and_clip(self):
        norms, finite = {}, True
        for rule, group in self._group_for_rule.items():
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            max_norm = group["clip_norm"] if group["clip_norm"] is not None else math.inf
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            norms[self.rules[rule][0] if rule < len(self.rules) else "default"] = norm
            finite &= math.isfinite(norm)
        return norms, finite

    def _bad_step(self, batch, loss, named):
        self.bad_steps += 1
        self._consecutive_bad += 1
        bad_params = sorted(n for n, p in named.items()
                            if p.grad is not None and not torch.isfinite(p.grad).all())
        sites = self.objective.diagnose(batch)
        message = (f"step {self.step}: loss {loss}; non-finite gradients in "
                   f"{bad_params or 'no parameter'}; non-finite sites: {sites or 'none found'}")
        self.logger.write("bad_steps", {"step": self.step, "loss": loss,
                                        "params": " ".join(bad_params), "sites": " ".join(sites)})
        if self._consecutive_bad >= self.max_bad_steps:
            where = self.checkpoint_path
            kept = (f"the last good checkpoint is {where}" if where and os.path.exists(where)
                    else "no checkpoint was written")
            raise NonFiniteLossError(
                f"stopping: {self._consecutive_bad} consecutive steps with a non-finite loss or "
                f"gradient (last at {message}); {kept}. Try a lower --lr, gradient clipping "
                "(--clip-norm) or check the data.")
        return message

    def _make_scaler(self, batch):
        if self.precision == "16-mixed" and self.scaler is None:
            device = _batch_device(batch)
            self.scaler = torch.amp.GradScaler(device.type, init_scale=self.initial_loss_scale)
            # The scaler creates its scale tensor on the first scale() call; the backward
            # passes are seeded by ScaledBackward instead, so make that call here.
            self.scaler.scale(torch.ones((), device=device))

    def _is_overflow(self, loss, grads_finite):
        """A float16 overflow: finite loss, non-finite scaled gradients, and a scale that can
        still come down (below 1 the non-finite gradients are not the scale's doing)."""
        return (self.scaler is not None and math.isfinite(loss) and not grads_finite
                and self.scaler.get_scale() >= 1.0)

    def train_step(self, batch):
        """One guarded optimisation step; returns the loss (``nan`` when skipped)."""
        for schedule in self.schedules:
            schedule.apply(self.step)
        self._make_scaler(batch)
        scaling = (ScaledBackward(self.scaler.get_scale()) if self.scaler is not None
                   else contextlib.nullcontext())
        with autocast(self.precision, _batch_device(batch)), scaling:
            loss, named = self.objective(batch)
        if not named:
            raise RuntimeError(
                "the objective has no trainable parameters: nothing called pyro.param or "
                "pyro.module. If the model is a PyroModule, decorate methods other than forward "
                "(model, guide) with pyro.nn.pyro_method so its parameters are registered.")
        self._register(named)
        if self.sync is not None:
            self.sync.gradients(named)
            loss = self.sync.scalar(loss, _device_of(named))
        if self.scaler is not None:
            # Summed over ranks first, so an overflow on any rank is seen by all of them.
            self.scaler.unscale_(self.optimizer)
        norms, finite = self._grad_norms_and_clip()
        self.last_grad_norms = norms
        if self._is_overflow(loss, finite):
            self.overflow_steps += 1
        elif not (math.isfinite(loss) and finite):
            self._bad_step(batch, loss, named)
        else:
            self._consecutive_bad = 0
            factor = self.lr_schedule(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            if self.weight_decay:
                self._decay_weight_matrices()
            self.optimizer.step()
        if self.scaler is not None:
            self.scaler.update()
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.last_loss = loss
        return loss

    @torch.no_grad()
    def _decay_weight_matrices(self):
        if self._decay_exempt is None:  # the modules are fixed, and loading copies into them
            decayed = {id(p) for module in self.modules for p in decayed_parameters(module)}
            self._decay_exempt = {id(p) for module in self.modules
                                  for p in module.parameters()} - decayed
        for group in self.optimizer.param_groups:
            matrices = [p for p in group["params"]
                        if p.dim() >= 2 and p.grad is not None and id(p) not in self._decay_exempt]
            if matrices:
                torch._foreach_mul_(matrices, 1.0 - group["lr"] * self.weight_decay)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self):
        names_of = {id(p): n for n, p in self._param_by_name.items()}
        optimizer_state = {}
        if self.optimizer is not None:
            for param, state in self.optimizer.state.items():
                if id(param) in names_of:
                    optimizer_state[names_of[id(param)]] = dict(state)
        state = {
            "format": FORMAT_VERSION,
            "step": self.step,
            "bad_steps": self.bad_steps,
            "params": self.objective.named_state(),
            "constraints": self.objective.state_constraints(),
            "modules": [m.state_dict() for m in self.modules],
            "optimizer": optimizer_state,
            "schedules": {s.name: float(s.schedule(max(self.step - 1, 0))) for s in self.schedules},
            "rng": (get_rng_state() if self.sync is None
                    else self.sync.gather_objects(get_rng_state())),
            "world_size": distributed.world_size(),
            "extra": self.checkpoint_extra,
        }
        if hasattr(self.data, "state_dict"):
            state["data"] = self.data.state_dict()
        if self.loss is not None and hasattr(self.loss, "state_dict"):
            state["loss"] = self.loss.state_dict()
        if self.scaler is not None:
            state["loss_scale"] = {"scaler": self.scaler.state_dict(),
                                   "overflow_steps": self.overflow_steps}
        return state

    def save(self, path=None):
        """Write a checkpoint (collective under torch.distributed: every rank calls it, rank 0
        writes)."""
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("no checkpoint path: pass path= or give the Trainer an out_dir")
        state = self.state_dict()
        if self.is_main:
            save_checkpoint(path, state)
        if self.sync is not None:
            self.sync.barrier()  # the checkpoint exists for every rank when save returns
        self.result.checkpoint = path
        return path

    def load(self, path):
        """Continue from a checkpoint, exactly where the run that wrote it was."""
        state = load_checkpoint(path)
        if state.get("world_size", 1) != distributed.world_size():
            raise ValueError(
                f"checkpoint {path!r} was written by {state.get('world_size', 1)} rank(s); resume "
                f"it with the same number (this run has {distributed.world_size()})")
        if len(state["modules"]) != len(self.modules):
            raise ValueError(
                f"checkpoint {path!r} holds {len(state['modules'])} module state(s) but this "
                f"trainer has {len(self.modules)}: it was written by a different model setup")
        # One pass creates every lazily registered parameter (estimator control variates,
        # PyroModule registrations) so values can be copied *into* the tensors the modules
        # hold; it draws random numbers and a batch, both restored below.
        batch = next(self.data)
        self._make_scaler(batch)
        _, named = self.objective(batch)
        self._register(named)
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        for module, module_state in zip(self.modules, state["modules"]):
            module.load_state_dict(module_state)
        self.objective.load_named_state(state["params"], state["constraints"])
        self._pending_optimizer_state = dict(state["optimizer"])
        self._register(dict(self._param_by_name))
        for name, param in self._param_by_name.items():
            if name in self._pending_optimizer_state:
                self.optimizer.state[param] = _state_to(
                    self._pending_optimizer_state.pop(name), param.device)
        if "data" in state and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(state["data"])
        if "loss" in state and hasattr(self.loss, "load_state_dict"):
            self.loss.load_state_dict(state["loss"])
        if "loss_scale" in state and self.scaler is not None:
            self.scaler.load_state_dict(state["loss_scale"]["scaler"])
            self.overflow_steps = state["loss_scale"]["overflow_steps"]
        set_rng_state(state["rng"] if self.sync is None else state["rng"][distributed.rank()])
        self.step, self.bad_steps = state["step"], state["bad_steps"]
        self.logger.truncate_after(self.step)
        self.result.checkpoint = path
        return state

    # ------------------------------------------------------------------ the loop
    def _log_row(self, seconds):
        row = {"step": self.step, "loss": self.last_loss,
               "lr": self.lr * self.lr_schedule(self.step - 1), "bad_steps": self.bad_steps,
               "seconds_per_step": seconds}
        if self.scaler is not None:
            row["loss_scale"] = self.scaler.get_scale()
            row["overflow_steps"] = self.overflow_steps
        for name, norm in self.last_grad_norms.items():
            row[f"grad_norm[{name}]"] = norm
        for schedule in self.schedules:
            row[schedule.name] = float(getattr(schedule.obj, schedule.attribute))
        if self.metrics_fn is not None:
            row.update(self.metrics_fn(self))
        return row

    def _evaluate(self):
        row = {"step": self.step, **self.eval_fn(self)}
        self.logger.write("eval", row)
        self.result.eval_history.append(row)
        return row

    def run(self):
        """Train up to ``steps``; returns a :class:`TrainResult`."""
        if self.resume:
            path = self.checkpoint_path if self.resume is True else os.fspath(self.resume)
            self.load(path)
        bar = tqdm(total=self.steps, initial=self.step, desc=self.description,
                   disable=not (self.progress and self.is_main), dynamic_ncols=True)
        running, shown, last_eval = None, {}, None
        try:
            while self.step < self.steps:
                start = time.perf_counter()
                loss = self.train_step(next(self.data))
                seconds = time.perf_counter() - start
                if math.isfinite(loss):
                    running = loss if running is None else 0.95 * running + 0.05 * loss
                last = self.step == self.steps
                if self.step % self.log_every == 0 or last:
                    row = self._log_row(seconds)
                    self.logger.write("metrics", row)
                    self.result.history.append(row)
                    shown = {k: v for k, v in row.items()
                             if k not in ("step", "lr", "seconds_per_step", "loss")
                             and not k.startswith("grad_norm")}
                if self.eval_fn is not None and self.is_main and (
                        last or (self.eval_every and self.step % self.eval_every == 0)):
                    last_eval = self._evaluate()
                # A checkpoint is only written after a good step, so the one on disk is the
                # last good state when the guard stops the run.
                if self.out_dir is not None and self._consecutive_bad == 0 and (last or (
                        self.checkpoint_every and self.step % self.checkpoint_every == 0)):
                    self.save()
                postfix = {"loss": f"{running:.4g}" if running is not None else "nan", **shown}
                if last_eval:
                    postfix.update({f"eval:{k}": v for k, v in last_eval.items() if k != "step"})
                bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v)
                                 for k, v in postfix.items()}, refresh=False)
                bar.update(1)
        except KeyboardInterrupt:
            where = self.result.checkpoint or "no checkpoint yet"
            bar.write(f"interrupted at step {self.step}; resume with --resume ({where})")
            raise
        finally:
            bar.close()
            self.logger.close()
        if (self.eval_fn is not None and self.is_main and self.steps == self.step
                and last_eval is None):
            self._evaluate()
        self.result.step, self.result.bad_steps = self.step, self.bad_steps
        return self.result


def _state_to(state, device):
    # Adam keeps its step counter on the CPU; every other tensor follows its parameter.
    return {k: (v.to(device) if torch.is_tensor(v) and k != "step" else v)
            for k, v in state.items()}


__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "CHECKPOINT_NAME"]
