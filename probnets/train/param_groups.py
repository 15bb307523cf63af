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

import torch

from probnets.nn.weight_decay import decayed_parameters

DEFAULT_GROUP = "default"


class ParameterGroups:
    """Parameter groups by name rule, the optimizer over them, clipping and weight decay.

    :param config: the run's :class:`~probnets.train.TrainConfig` (``lr``, ``param_groups``,
        ``clip_norm``, ``optimizer``, ``optim_args``, ``weight_decay``, ``lr_schedule``).
    :param modules: the modules whose ``no_weight_decay`` lists exempt matrices from decay.
    """

    def __init__(self, config, modules=()):
        self.lr = float(config.lr)
        self.rules = list((config.param_groups or {}).items())
        self.clip_norm = config.clip_norm
        self.optimizer_class = config.optimizer_class
        self.optim_args = dict(config.optim_args or {})
        self.weight_decay = float(config.weight_decay)
        self.lr_schedule = config.lr_schedule or (lambda step: 1.0)
        self.modules = list(modules)
        self.optimizer = None
        self.by_name = {}  # name -> the tensor currently trained under it
        self._group_for_rule = {}
        self._pending_state = {}  # optimizer state by name, for parameters not seen yet
        self._decay_exempt = None  # ids of module matrices weight decay leaves alone

    # ------------------------------------------------------------------ membership
    def unseen(self, named):
        """The entries of ``named`` whose names are new."""
        return {name: p for name, p in named.items() if name not in self.by_name}

    def register(self, named):
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

    def _rule_index(self, name):
        for index, (pattern, _) in enumerate(self.rules):
            if fnmatch.fnmatchcase(name, pattern):
                return index
        return len(self.rules)

    def _replace(self, known, param):
        # Keep the optimizer state and the group position of the tensor it replaces.
        for group in self.optimizer.param_groups:
            group["params"] = [param if p is known else p for p in group["params"]]
        if known in self.optimizer.state:
            self.optimizer.state[param] = self.optimizer.state.pop(known)

    def _add(self, name, param):
        rule = self._rule_index(name)
        if rule in self._group_for_rule:
            self._group_for_rule[rule]["params"].append(param)
        else:
            self._new_group(rule, param)
        if name in self._pending_state:
            self.optimizer.state[param] = _state_to(self._pending_state.pop(name), param.device)

    def _new_group(self, rule, param):
        settings = dict(self.optim_args)
        settings["lr"] = self.lr
        settings["clip_norm"] = self.clip_norm
        if rule < len(self.rules):
            settings.update(self.rules[rule][1])
        settings["base_lr"] = settings["lr"]
        settings["params"] = [param]
        if self.optimizer is None:
            self.optimizer = self._make_optimizer(settings)
        else:
            self.optimizer.add_param_group(settings)
        self._group_for_rule[rule] = self.optimizer.param_groups[-1]

    def _make_optimizer(self, settings):
        if "fused" not in settings and "foreach" not in settings:
            try:
                return self.optimizer_class([settings], fused=True)
            except (RuntimeError, TypeError):  # no fused kernel here, or no such argument
                pass
        return self.optimizer_class([settings])

    def group_name(self, rule):
        return self.rules[rule][0] if rule < len(self.rules) else DEFAULT_GROUP

    # ------------------------------------------------------------------ one update
    def clip(self):
        """Clip each group's gradient norm; returns ``({group: norm}, all norms finite)``."""
        norms, finite = {}, True
        for rule, group in self._group_for_rule.items():
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            max_norm = group["clip_norm"] if group["clip_norm"] is not None else math.inf
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            norms[self.group_name(rule)] = norm
            finite &= math.isfinite(norm)
        return norms, finite

    def scheduled_lr(self, step):
        """The default group's learning rate at ``step``."""
        return self.lr * self.lr_schedule(step)

    def step(self, step):
        """Set the scheduled learning rates, decay the weight matrices, update."""
        factor = self.lr_schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        if self.weight_decay:
            self._decay_weight_matrices()
        self.optimizer.step()

    def zero_grad(self):
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def _decay_weight_matrices(self):
        if self._decay_exempt is None:  # the modules are fixed, and loading copies into them
            decayed = {id(p) for module in self.modules for p in decayed_parameters(module)}
            self._decay_exempt = {id(p) for module in self.modules
                                  for p in module.parameters()} - decayed
        for group in self.optimizer.param_groups:
            factor = 1.0 - group["lr"] * self.weight_decay
            for p in group["params"]:
                if p.dim() >= 2 and p.grad is not None and id(p) not in self._decay_exempt:
                    p.mul_(factor)

    # ------------------------------------------------------------------ state by name
    def state_dict(self):
        """The optimizer state of every named parameter, ``{name: state}``."""
        names_of = {id(p): n for n, p in self.by_name.items()}
        if self.optimizer is None:
            return {}
        return {names_of[id(param)]: dict(state) for param, state in self.optimizer.state.items()
                if id(param) in names_of}

    def load_state_dict(self, state):
        """Restore optimizer state by name: now for known parameters, at registration for the
        rest."""
        self._pending_state = dict(state)
        for name, param in self.by_name.items():
            if name in self._pending_state:
                self.optimizer.state[param] = _state_to(self._pending_state.pop(name),
                                                        param.device)


def _state_to(state, device):
    # Adam keeps its step counter on the CPU; every other tensor follows its parameter.
    return {k: (v.to(device) if torch.is_tensor(v) and k != "step" else v)
            for k, v in state.items()}


__all__ = ["DEFAULT_GROUP", "ParameterGroups"]
