"""The optimizer of a run whose parameters appear by name, grouped by :mod:`fnmatch` rules.

Parameters are not known when training starts: Pyro creates them at their first ``pyro.param``
or ``pyro.module`` call, and estimators add their own (``cv.*``) when they first see a site.
:class:`ParameterGroups` therefore builds the optimizer lazily: every step it is shown the
``{name: tensor}`` the objective reached, and a name it has not seen joins the group of the
first rule whose pattern matches it (a new optimizer parameter group when it is the rule's
first parameter). Each group has its own learning rate, optimizer settings and gradient-norm
clip, and optimizer state is saved and restored by parameter *name*, so it survives the
tensors being re-created (a param-store reload, a resumed run).

Weight decay is decoupled from the gradient as in AdamW (Loshchilov & Hutter, 2019,
"Decoupled Weight Decay Regularization", Algorithm 2): before each update the weight matrices
(parameters of two or more dimensions) are multiplied by ``1 - lr * weight_decay``, with any
optimizer; vectors (biases, norm gains) and the matrices a module lists in
``no_weight_decay`` are left alone (:func:`probnets.nn.decayed_parameters`).
"""

import fnmatch
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from probnets.nn.weight_decay import decayed_parameters
from probnets.train.config import TrainConfig
from probnets.train.optimizers import make_lr_scheduler

DEFAULT_GROUP = "default"
GRAD_CLIP_KEY = "grad_clip_norm"


class ParameterGroups:
    """Parameter groups by name rule, the optimizer over them, clipping and weight decay.

    The learning rate follows either ``lr_schedule`` (a factor of the step times each group's
    base rate) or a torch ``lr_scheduler``, made at the first update over the groups known by
    then and stepped after every update; a group that appears later joins it at its own base
    rate.

    :param config: the run's :class:`~probnets.train.TrainConfig` (``lr``, ``param_groups``,
        ``clip_norm``, ``optimizer``, ``optim_args``, ``weight_decay``, ``lr_schedule``,
        ``lr_scheduler``).
    :param modules: the modules whose ``no_weight_decay`` lists exempt matrices from decay.
    """

    def __init__(self, config: TrainConfig, modules: Iterable[torch.nn.Module] = ()) -> None:
        spec = config.optimizer_spec
        assert config.lr is not None  # TrainConfig sets it on construction
        self.lr = float(config.lr)
        self.rules: list[tuple[str, Mapping[str, Any]]] = list((config.param_groups or {}).items())
        self.clip_norm = config.clip_norm
        # called with the subclass's own arguments (fused=...), which the base class lacks
        self.optimizer_class: Callable[..., torch.optim.Optimizer] = spec.cls
        self.optim_args = {k: v for k, v in spec.args.items() if k != "lr"}
        self.weight_decay = float(config.weight_decay)
        self.lr_schedule: Callable[[int], float] = config.lr_schedule or (lambda step: 1.0)
        self.scheduler_factory = config.lr_scheduler_factory
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self._scheduled_rate = self.lr  # the default group's rate at the last update
        self._pending_scheduler_state: Mapping[str, Any] | None = None
        self.modules = list(modules)
        self.optimizer: torch.optim.Optimizer | None = None
        # name -> the tensor currently trained under it
        self.by_name: dict[str, torch.Tensor] = {}
        self._group_for_rule: dict[int, dict[str, Any]] = {}
        # optimizer state by name, for parameters not seen yet
        self._pending_state: dict[str, Mapping[str, Any]] = {}
        # ids of module matrices weight decay leaves alone
        self._decay_exempt: set[int] | None = None

    # ------------------------------------------------------------------ membership
    def unseen(self, named: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The entries of ``named`` whose names are new."""
        return {name: p for name, p in named.items() if name not in self.by_name}

    def register(self, named: Mapping[str, torch.Tensor]) -> None:
        """Bring newly seen parameters, or tensors that replaced known ones, into the
        optimizer."""
        for name, param in named.items():
            known = self.by_name.get(name)
            if known is param:
                continue
            if known is not None:
                self._replace(known, param)
            else:
                self._add(name, param)
            self.by_name[name] = param

    def _rule_index(self, name: str) -> int:
        for index, (pattern, _) in enumerate(self.rules):
            if fnmatch.fnmatchcase(name, pattern):
                return index
        return len(self.rules)

    def _replace(self, known: torch.Tensor, param: torch.Tensor) -> None:
        # Keep the optimizer state and the group position of the tensor it replaces.
        optimizer = self._made
        for group in optimizer.param_groups:
            group["params"] = [param if p is known else p for p in group["params"]]
        if known in optimizer.state:
            optimizer.state[param] = optimizer.state.pop(known)

    def _add(self, name: str, param: torch.Tensor) -> None:
        rule = self._rule_index(name)
        if rule in self._group_for_rule:
            self._group_for_rule[rule]["params"].append(param)
        else:
            self._new_group(rule, param)
        if name in self._pending_state:
            self._made.state[param] = _state_to(self._pending_state.pop(name), param.device)

    def _new_group(self, rule: int, param: torch.Tensor) -> None:
        settings = dict(self.optim_args)
        settings["lr"] = self.lr
        rule_settings = dict(self.rules[rule][1]) if rule < len(self.rules) else {}
        # A rule's clip_norm is the group's gradient-norm clip, kept under its own key so it
        # cannot shadow an optimizer argument of that name (ClippedAdam's element clip).
        settings[GRAD_CLIP_KEY] = rule_settings.pop("clip_norm", self.clip_norm)
        settings.update(rule_settings)
        settings["base_lr"] = settings["lr"]
        settings["params"] = [param]
        if self.optimizer is None:
            self.optimizer = self._make_optimizer(settings)
        else:
            self.optimizer.add_param_group(settings)
        group = self.optimizer.param_groups[-1]
        if self.scheduler is not None:  # joins the scheduler at its own base rate
            group["initial_lr"] = group["lr"]
            self.scheduler.base_lrs.append(group["lr"])
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        self._group_for_rule[rule] = group

    def _make_optimizer(self, settings: dict[str, Any]) -> torch.optim.Optimizer:
        if "fused" not in settings and "foreach" not in settings:
            try:
                return self.optimizer_class([settings], fused=True)
            except (RuntimeError, TypeError):  # no fused kernel here, or no such argument
                pass
        return self.optimizer_class([settings])

    @property
    def _made(self) -> torch.optim.Optimizer:
        """The optimizer, for the methods that run once the first parameter has made it."""
        assert self.optimizer is not None, "no parameter has been registered yet"
        return self.optimizer

    def group_name(self, rule: int) -> str:
        """The name of rule ``rule``'s group: its pattern, or ``"default"``."""
        return self.rules[rule][0] if rule < len(self.rules) else DEFAULT_GROUP

    # ------------------------------------------------------------------ one update
    def clip(self) -> tuple[dict[str, float], bool]:
        """Clip each group's gradient norm; returns ``({group: norm}, all norms finite)``."""
        norms: dict[str, float] = {}
        finite = True
        for rule, group in self._group_for_rule.items():
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            clip = group[GRAD_CLIP_KEY]
            max_norm = clip if clip is not None else math.inf
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            norms[self.group_name(rule)] = norm
            finite &= math.isfinite(norm)
        return norms, finite

    def scheduled_lr(self, step: int) -> float:
        """The default group's learning rate at ``step`` (with a torch scheduler: the first
        group's current rate)."""
        if self.scheduler_factory is not None:
            return self._scheduled_rate
        return self.lr * self.lr_schedule(step)

    def step(self, step: int) -> None:
        """Set the scheduled learning rates, decay the weight matrices, update."""
        optimizer = self._made
        if self.scheduler_factory is None:
            factor = self.lr_schedule(step)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
        else:
            self._advance_scheduler(step)
        if self.weight_decay:
            self._decay_weight_matrices()
        optimizer.step()
        if self.scheduler is not None:
            default = self._group_for_rule.get(len(self.rules), optimizer.param_groups[0])
            self._scheduled_rate = default["lr"]
            self.scheduler.step()

    def _advance_scheduler(self, step: int) -> None:
        """Make the scheduler at the first update; after skipped steps, step it to ``step``
        so that, like ``lr_schedule``, it counts every step taken."""
        if self.scheduler is None:
            assert self.scheduler_factory is not None  # step() comes here only with one
            self.scheduler = make_lr_scheduler(self.scheduler_factory, self._made)
            if self._pending_scheduler_state is not None:
                self._load_scheduler(self._pending_scheduler_state)
                self._pending_scheduler_state = None
        with warnings.catch_warnings():
            # Catching up before the optimizer's first step is intended here.
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step\\(\\)")
            while self.scheduler.last_epoch < step:
                self.scheduler.step()

    def scheduler_state_dict(self) -> Mapping[str, Any] | None:
        """The torch scheduler's state and the group settings it sets (rates, and momenta
        for cyclic schedulers), or ``None`` without one (or before its first step)."""
        if self.scheduler is None:
            return self._pending_scheduler_state
        groups = [
            {k: v for k, v in group.items() if k != "params"} for group in self._made.param_groups
        ]
        return {
            "scheduler": self.scheduler.state_dict(),
            "groups": groups,
            "scheduled_rate": self._scheduled_rate,
        }

    def load_scheduler_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restore the torch scheduler, and the learning rates it had set, from a checkpoint
        (applied when the scheduler is made, if it is not yet)."""
        if state is None:
            return
        if self.scheduler_factory is None:
            raise ValueError(
                "the checkpoint holds a torch lr_scheduler's state but this run has no lr_scheduler"
            )
        if self.scheduler is None and self.optimizer is not None:
            self.scheduler = make_lr_scheduler(self.scheduler_factory, self.optimizer)
        if self.scheduler is None:
            self._pending_scheduler_state = state
        else:
            self._load_scheduler(state)

    def _load_scheduler(self, state: Mapping[str, Any]) -> None:
        assert self.scheduler is not None  # made before its state is loaded
        self.scheduler.load_state_dict(state["scheduler"])
        # The rates (and a cyclic scheduler's momenta) live in the optimizer's groups, which
        # the scheduler's state leaves alone.
        for group, saved in zip(self._made.param_groups, state["groups"]):
            group.update(saved)
        self._scheduled_rate = state["scheduled_rate"]

    def zero_grad(self) -> None:
        """Set every gradient to ``None``."""
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def _decay_weight_matrices(self) -> None:
        if self._decay_exempt is None:  # the modules are fixed, and loading copies into them
            decayed = {id(p) for module in self.modules for p in decayed_parameters(module)}
            self._decay_exempt = {
                id(p) for module in self.modules for p in module.parameters()
            } - decayed
        for group in self._made.param_groups:
            factor = 1.0 - group["lr"] * self.weight_decay
            for p in group["params"]:
                if p.dim() >= 2 and p.grad is not None and id(p) not in self._decay_exempt:
                    p.mul_(factor)

    # ------------------------------------------------------------------ state by name
    def state_dict(self) -> dict[str, dict[str, Any]]:
        """The optimizer state of every named parameter, ``{name: state}``."""
        names_of = {id(p): n for n, p in self.by_name.items()}
        if self.optimizer is None:
            return {}
        return {
            names_of[id(param)]: dict(state)
            for param, state in self.optimizer.state.items()
            if id(param) in names_of
        }

    def load_state_dict(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Restore optimizer state by name: now for known parameters, at registration for the
        rest."""
        self._pending_state = dict(state)
        for name, param in self.by_name.items():
            if name in self._pending_state:
                self._made.state[param] = _state_to(self._pending_state.pop(name), param.device)


def _state_to(state: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    # Adam keeps its step counter on the CPU; every other tensor follows its parameter.
    return {
        k: (v.to(device) if torch.is_tensor(v) and k != "step" else v) for k, v in state.items()
    }


__all__ = ["DEFAULT_GROUP", "ParameterGroups"]
