"""Loading trained models: :func:`load` and the :class:`Loadable` protocol.

A checkpoint written by a task (``probnets train ...``), a :class:`~probnets.train.Trainer` or
a model's ``fit(out_dir=...)`` records which model it holds in ``extra["model"]``::

    {"class": "probnets.models.vae.VAE", "config": {"image_size": 28, ...}}

the model's class and its constructor arguments (:func:`model_record`). A constructor argument
that is itself an object (a gated network's prior) is a nested record of the same form.
:func:`load` rebuilds the model from the record, restores its weights and buffers from the
checkpoint's module state, and returns it in eval mode, ready to predict, reconstruct or
sample::

    model = probnets.load("runs/vae/last.pt")
    model.reconstruct(images)

In probnets a model's guide is a method of the model (``model.guide``), and its variational
parameters are the model's own (:class:`~pyro.nn.PyroModule` parameters, autoguides held as
submodules), so the model is all there is to return. Pyro's global param store is updated to
hold the loaded parameters themselves under the names the model's ``pyro_method`` calls use:
a stale value of an earlier model with the same names would otherwise replace them at the
first call of the guide. As always in Pyro, PyroModules with the same names share the store,
so a model trained earlier in the process under those names sees the loaded values too.

Checkpoints written before the record existed are read by the classes that know their layout
(:meth:`Loadable.legacy_record`: AIR, BayesianHypernet, VAE and SigmoidBeliefNet read what
their ``probnets train`` commands wrote in ``extra["config"]``).

Classes are looked up among probnets' own and those registered with :func:`register_model`
(every :class:`Loadable` subclass is registered when it is defined); a record naming any other
class is refused, so loading never imports code named by a file.
"""

import contextlib
import importlib
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import pyro
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule
from pyro.params.param_store import param_with_module_name
from torch.distributions.constraints import Constraint

from probnets.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint

_REGISTERED: dict[str, type] = {}
_PACKAGE = "probnets"
_ModuleClass = TypeVar("_ModuleClass", bound=type)
#: Where :func:`load` puts the tensors (as :func:`torch.load`'s ``map_location``).
MapLocation = str | torch.device | dict[str, str] | None


def class_name(cls: type) -> str:
    """The dotted name a checkpoint records for ``cls``: ``"package.module.Class"``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def model_record(module: Any, **constructor_arguments: Any) -> dict:
    """``{"class": "package.module.Class", "config": {...}}``: what rebuilds ``module``
    (``Class(**config)``) before its state dict is loaded.

    Without ``constructor_arguments`` the module's own :meth:`Loadable.model_config` is used.
    Nested records describe arguments that are objects themselves (e.g. a prior).
    """
    if not constructor_arguments:
        if not hasattr(module, "model_config"):
            raise TypeError(
                f"{class_name(type(module))} has no model_config(); pass its "
                "constructor arguments to model_record"
            )
        constructor_arguments = module.model_config()
    return {"class": class_name(type(module)), "config": dict(constructor_arguments)}


def recorded_model(modules: list) -> dict:
    """``{"model": record}`` for the first of ``modules`` that can describe itself (has
    ``model_config()``), else ``{}``: what a Trainer adds to its checkpoints' ``extra``."""
    for module in modules:
        if callable(getattr(module, "model_config", None)):
            try:
                return {"model": model_record(module)}
            except NotImplementedError:  # a Loadable subclass that records nothing
                continue
    return {}


def register_model(cls: _ModuleClass) -> _ModuleClass:
    """Allow :func:`load` to rebuild ``cls`` (a :class:`torch.nn.Module` subclass defined
    outside probnets) from the records naming it; usable as a class decorator."""
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise TypeError(f"cls must be a torch.nn.Module subclass, got {cls!r}")
    _REGISTERED[class_name(cls)] = cls
    return cls


class Loadable:
    """What a model class provides so that checkpoints rebuild it.

    Subclasses (any :class:`torch.nn.Module`) implement :meth:`model_config`; they may
    override :meth:`from_config` when a recorded argument is not the constructor's own
    (e.g. an activation recorded by name) and :meth:`prepare_to_load` when parameters are
    created lazily, on first use. Defining a subclass registers it with :func:`load`.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTERED[class_name(cls)] = cls

    def model_config(self) -> dict:
        """The constructor arguments that rebuild this model (plain values and nested
        :func:`model_record` dicts), recorded in checkpoints as ``extra["model"]``."""
        raise NotImplementedError(f"{type(self).__name__} does not record its configuration")

    @classmethod
    def from_config(cls, config: dict) -> Any:
        """The model ``config`` (a :meth:`model_config` dict) describes, untrained."""
        return cls(**config)

    def prepare_to_load(self) -> None:
        """Create the parameters the model makes on first use, so a state dict can be
        loaded into them (default: nothing to do)."""

    @classmethod
    def legacy_record(cls, extra: dict, path: str) -> dict | None:
        """The model record of a checkpoint of this class written before checkpoints
        recorded their model (``extra`` is its ``extra`` dict), or ``None`` if there is none
        to read; may raise a :class:`ValueError` that says what is missing."""
        return None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        map_location: MapLocation = "cpu",
        average: bool = True,
        **arguments: Any,
    ) -> Any:
        """The trained model of checkpoint ``path``, in eval mode (see :func:`load`).

        :raises ValueError: when the checkpoint holds a model of another class.
        """
        return load(
            path, map_location=map_location, expected_class=cls, average=average, **arguments
        )


def load(
    path: str | os.PathLike[str],
    map_location: MapLocation = "cpu",
    *,
    expected_class: type | None = None,
    average: bool = True,
    **arguments: Any,
) -> torch.nn.Module:
    """The trained model of a checkpoint, rebuilt from its recorded class and configuration.

    Works on the checkpoints of ``probnets train`` (``<out>/last.pt``), of a
    :class:`~probnets.train.Trainer` whose model records itself (:class:`Loadable`) and of a
    model's ``fit(out_dir=...)``. The model's weights and buffers are restored, Pyro's param
    store holds its parameters (see the module's documentation), and it is returned in eval
    mode on ``map_location`` with the dtype it was trained in; the guide is its ``guide``
    method, ready to sample or predict.

    :param path: the checkpoint file, or a run directory (for its ``last.pt``).
    :param map_location: the device to load onto (as :func:`torch.load`'s).
    :param expected_class: refuse a checkpoint whose model is not of this class (or a
        subclass); ``Model.load(path)`` passes its class.
    :param average: when the run kept a moving average of the weights (a module state with
        ``average.<parameter name>`` entries, as
        :class:`~probnets.train.averaging.ExponentialMovingAverage` writes), load the averaged
        parameters; ``False`` loads the last iterate.
    :param arguments: constructor arguments replacing or completing the recorded ones, e.g.
        those the record cannot hold (a LayerDAG's ``blocks``, a custom activation).
    :raises FileNotFoundError: when ``path`` does not exist.
    :raises ValueError: for an empty or corrupted file, a checkpoint without a model record
        (written by a Trainer whose model does not record itself, or in a layout no
        :meth:`Loadable.legacy_record` reads), an unknown class, or a model of another class
        than ``expected_class``.
    """
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    state = load_checkpoint(path, map_location=map_location)
    record = _model_record_of(state, path, expected_class)
    cls = resolve_class(record["class"], path)
    if not issubclass(cls, torch.nn.Module):
        raise ValueError(
            f"{os.fspath(path)!r} names {record['class']} as its model, which is "
            "not a torch.nn.Module"
        )
    if expected_class is not None and not issubclass(cls, expected_class):
        expected = class_name(expected_class)
        article = "an" if expected_class.__name__[0] in "AEIOU" else "a"
        raise ValueError(f"{os.fspath(path)!r} holds a {record['class']}, not {article} {expected}")
    config = {**record.get("config", {}), **arguments}
    store = pyro.get_param_store()
    # Built in a scope of its own, so neither stale entries of the global store nor the
    # random numbers drawn while building affect the model or the caller.
    with store.scope(), torch.random.fork_rng(devices=[]):
        model = _build(cls, config, path)
        like = _floating_tensor(state.get("modules", []))
        if like is not None:
            model.to(device=like.device, dtype=like.dtype)
        if isinstance(model, Loadable):
            model.prepare_to_load()
        load_module_state(model, state.get("modules", []), path)
        if average:
            load_weight_average(model, state.get("modules", []))
    share_with_param_store(model)
    return model.eval()


def _model_record_of(
    state: Mapping[str, Any], path: str | os.PathLike[str], expected_class: type | None
) -> dict[str, Any]:
    extra = state.get("extra") or {}
    record = extra.get("model")
    if isinstance(record, dict) and isinstance(record.get("class"), str):
        return record
    record = _legacy_record(extra, os.fspath(path), expected_class)
    if record is not None:
        return record
    raise ValueError(
        f"{os.fspath(path)!r} records no model class and configuration (extra['model']): it "
        "was written by an older probnets, or by a Trainer whose model has no model_config(). "
        "Rebuild the model as it was trained and load its weights: model = Model(...); "
        "model.load_state_dict(torch.load(path, weights_only=True)['modules'][0])"
    )


def _legacy_record(
    extra: dict[str, Any], path: str, expected_class: type | None
) -> dict[str, Any] | None:
    """The record an older layout implies: ``expected_class``'s reading of it (whose
    :class:`ValueError` says what is missing), else the first class that recognises it."""
    if expected_class is not None:
        if issubclass(expected_class, Loadable):
            return expected_class.legacy_record(extra, path)
        return None
    for cls in [c for c in _REGISTERED.values() if issubclass(c, Loadable)]:
        with contextlib.suppress(ValueError):  # not a checkpoint of this class
            record = cls.legacy_record(extra, path)
            if record is not None:
                return record
    return None


def resolve_class(name: str, path: str | os.PathLike[str] = "<record>") -> type:
    """The class a record names: a registered one or a class defined in probnets."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    module_name, _, qualname = name.rpartition(".")
    cls: Any = None
    if module_name == _PACKAGE or module_name.startswith(_PACKAGE + "."):
        with contextlib.suppress(ImportError):
            cls = importlib.import_module(module_name)
            for part in qualname.split("."):
                cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and cls.__module__.startswith(_PACKAGE + ".")):
        raise ValueError(
            f"{os.fspath(path)!r} names the class {name!r}, which is neither defined in "
            "probnets nor registered; import the module that defines it and register it with "
            "probnets.loading.register_model"
        )
    return cls


def _build(cls: type, config: Mapping[str, Any], path: str | os.PathLike[str]) -> Any:
    """``cls`` built from ``config``, nested records built first."""
    config = {key: _build_nested(value, path) for key, value in config.items()}
    try:
        if issubclass(cls, Loadable):
            return cls.from_config(config)
        return cls(**config)
    except TypeError as error:
        raise ValueError(
            f"cannot rebuild {class_name(cls)} from {os.fspath(path)!r} with the recorded "
            f"arguments {sorted(config)}: {error}; pass the missing ones to load(path, "
            "name=value)"
        ) from None


def _build_nested(value: Any, path: str | os.PathLike[str]) -> Any:
    if isinstance(value, dict) and set(value) == {"class", "config"}:
        return _build(resolve_class(value["class"], path), value["config"], path)
    return value


def _floating_tensor(module_states: Sequence[Mapping[str, Any]]) -> torch.Tensor | None:
    for module_state in module_states:
        for value in module_state.values():
            if torch.is_tensor(value) and value.is_floating_point():
                return value
    return None


def load_module_state(
    model: torch.nn.Module, module_states: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]
) -> torch.nn.Module:
    """Load into ``model`` the one of a checkpoint's ``module_states`` whose keys are the
    model's; buffers the model leaves unset (``None``, set during training) are filled."""
    keys = set(model.state_dict())
    unset = _unset_buffers(model)
    for module_state in module_states:
        stored = set(module_state)
        if keys <= stored and stored - keys <= set(unset):
            for key in stored - keys:
                owner, name = unset[key]
                owner.register_buffer(name, torch.empty_like(module_state[key]))
            model.load_state_dict(module_state)
            return model
    raise CheckpointError(
        f"{os.fspath(path)!r} holds no module state with the parameters of "
        f"{class_name(type(model))} as recorded ({len(module_states)} module state(s) with "
        "other keys): was the checkpoint edited, or the class changed since?"
    )


def load_weight_average(model: torch.nn.Module, module_states: Sequence[Mapping[str, Any]]) -> bool:
    """Copy into ``model`` the moving average of its parameters that one of a checkpoint's
    ``module_states`` holds as ``average.<parameter name>`` entries; returns whether there was
    one."""
    prefix = "average."
    keys = set(model.state_dict())
    for module_state in module_states:
        averaged = {k[len(prefix) :]: v for k, v in module_state.items() if k.startswith(prefix)}
        if averaged and set(averaged) <= keys:
            model.load_state_dict(averaged, strict=False)
            return True
    return False


def _unset_buffers(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, str]]:
    """``{state-dict key: (module, name)}`` of the buffers registered as ``None``."""
    return {
        f"{prefix}.{name}" if prefix else name: (module, name)
        for prefix, module in model.named_modules()
        for name, value in module._buffers.items()
        if value is None
    }


def param_store_entries(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, Constraint]]:
    """``{name: (unconstrained parameter, constraint)}``: the param-store entries the
    ``pyro_method`` calls of the :class:`~pyro.nn.PyroModule` ``model`` read, under the names
    Pyro gives them (``a.b.weight``; ``a$$$b.weight`` inside a plain ``nn.Module``)."""
    entries: dict[str, tuple[torch.Tensor, Constraint]] = {}

    def visit(module: torch.nn.Module, fullname: str) -> None:
        if not isinstance(module, PyroModule):  # registered with pyro.module(fullname, ...)
            for name, value in module.named_parameters():
                entries[param_with_module_name(fullname, name)] = (value, constraints.real)
            return
        for name, parameter in module._parameters.items():
            constrained = name[: -len("_unconstrained")]
            if name.endswith("_unconstrained") and constrained in module._pyro_params:
                # a PyroParam's unconstrained value, set whenever the PyroParam is
                unconstrained = cast(torch.Tensor, parameter)
                constraint = module._pyro_params[constrained][0]
                entries[_join(fullname, constrained)] = (unconstrained, constraint)
            elif parameter is not None:
                entries[_join(fullname, name)] = (parameter, constraints.real)
        for name, child in module._modules.items():
            if child is not None:
                visit(child, _join(fullname, name))

    if isinstance(model, PyroModule):
        visit(model, model._pyro_name)
    return entries


def share_with_param_store(model: torch.nn.Module) -> None:
    """Make Pyro's param store hold ``model``'s own parameters under the names its
    ``pyro_method`` calls use, so the store and the model agree (a no-op for a module that
    is not a :class:`~pyro.nn.PyroModule`)."""
    entries = param_store_entries(model)
    if entries:
        pyro.get_param_store().set_state(
            {
                "params": {name: value for name, (value, _) in entries.items()},
                "constraints": {name: constraint for name, (_, constraint) in entries.items()},
            }
        )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


__all__ = [
    "Loadable",
    "class_name",
    "load",
    "load_module_state",
    "model_record",
    "param_store_entries",
    "recorded_model",
    "register_model",
    "resolve_class",
    "share_with_param_store",
]
