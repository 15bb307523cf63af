"""Reduced-precision training: autocast regions and loss scaling for SVI.

``bf16`` runs the objective under :func:`torch.autocast` with bfloat16, which has float32's
exponent range, so gradients need no rescaling. ``16-mixed`` uses float16, whose smallest
normal number is 6.1e-5: small gradients of float16 activations flush to zero unless the
backward pass is seeded with a large factor ``S`` (Micikevicius et al. 2018, "Mixed Precision
Training", section 3.2) and the accumulated gradients are divided by ``S`` before the update.

The difficulty with Pyro is that ELBOs run ``backward`` themselves, inside
``loss_and_grads``, so there is no loss tensor to multiply. :class:`ScaledBackward` is a
:class:`torch.overrides.TorchFunctionMode` that multiplies the seed of every
``Tensor.backward`` / :func:`torch.autograd.backward` call made under it. Back-propagation is
linear in its seed, so every gradient accumulated into ``.grad`` by those calls is exactly
``S`` times the unscaled one, whatever the surrogate objective (score-function terms,
baselines, control variates) looks like. Gradients assigned to ``.grad`` directly, or
obtained with :func:`torch.autograd.grad`, are not scaled: estimators that need those must
accumulate their results with ``torch.autograd.backward(leaves, grads)``, as
:mod:`probnets.infer` does.

The scale itself is managed by :class:`torch.amp.GradScaler` (dynamic: halved after a step
whose gradients overflow, which is then skipped; doubled after ``growth_interval`` good steps).
"""

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import torch
from torch.overrides import TorchFunctionMode

PrecisionName: TypeAlias = Literal["32", "bf16", "16-mixed"]
"""The precisions a run can train in."""

AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "16-mixed": torch.float16}


class ScaledBackward(TorchFunctionMode):
    """Seed every backward pass run under this mode with ``scale`` instead of 1.

    :param float scale: the loss scale ``S``; gradients accumulated into ``.grad`` by
        ``Tensor.backward`` and :func:`torch.autograd.backward` come out multiplied by it.
    """

    def __init__(self, scale: float) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = float(scale)

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.backward:
            tensor, *rest = args
            gradient = rest[0] if rest else kwargs.pop("gradient", None)
            rest = rest[1:]
            return func(tensor, self._scaled_seed(tensor, gradient), *rest, **kwargs)
        if func is torch.autograd.backward:
            tensors, *rest = args
            grad_tensors = rest[0] if rest else kwargs.pop("grad_tensors", None)
            rest = rest[1:]
            if torch.is_tensor(tensors):
                tensors, grad_tensors = [tensors], [grad_tensors]
            else:
                tensors = list(tensors)
                if grad_tensors is None or torch.is_tensor(grad_tensors):
                    grad_tensors = [grad_tensors] * len(tensors)
            seeds = [self._scaled_seed(t, g) for t, g in zip(tensors, grad_tensors)]
            return func(tensors, seeds, *rest, **kwargs)
        return func(*args, **kwargs)

    def _scaled_seed(self, tensor: torch.Tensor, gradient: torch.Tensor | None) -> torch.Tensor:
        if gradient is None:
            if tensor.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            return torch.full_like(tensor, self.scale)
        return gradient * self.scale


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of ``precision`` (``"32"``: none) on ``device``."""
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=AUTOCAST_DTYPES[precision])


def check_precision_supported(precision: str, device: torch.device | str) -> None:
    """Raise a ValueError naming ``precision`` when ``device`` cannot autocast to it."""
    if precision == "32":
        return
    device_type = torch.device(device).type
    if not torch.amp.is_autocast_available(device_type):
        raise ValueError(
            f"precision {precision!r}: torch.autocast is not available on {device_type!r}; use '32'"
        )
    if device_type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision 'bf16': this GPU has no bfloat16 support; use '16-mixed'")


class Precision:
    """The precision part of a training step: the autocast region and, for ``"16-mixed"``,
    the dynamic loss scale.

    :param str precision: ``"32"``, ``"bf16"`` or ``"16-mixed"``.
    :param float initial_loss_scale: the first scale of ``"16-mixed"`` (halved on every
        overflowing step, doubled after 2000 good ones).
    """

    def __init__(
        self, precision: PrecisionName = "32", initial_loss_scale: float = 2.0**16
    ) -> None:
        if precision not in AUTOCAST_DTYPES and precision != "32":
            raise ValueError(
                f"precision must be one of ('32', 'bf16', '16-mixed'), got {precision!r}"
            )
        self.precision = precision
        self.initial_loss_scale = float(initial_loss_scale)
        # made on the data's device at the first step
        self.scaler: torch.amp.GradScaler | None = None
        self.overflow_steps = 0

    def prepare(self, device: torch.device | str) -> None:
        """Create the ``"16-mixed"`` scaler on ``device`` (once)."""
        if self.precision == "16-mixed" and self.scaler is None:
            self.scaler = torch.amp.GradScaler(
                torch.device(device).type, init_scale=self.initial_loss_scale
            )
            # The scaler creates its scale tensor on the first scale() call; the backward
            # passes are seeded by ScaledBackward instead, so make that call here.
            self.scaler.scale(torch.ones((), device=device))

    @contextlib.contextmanager
    def region(self, device: torch.device | str) -> Iterator[None]:
        """Autocast, and seed backward passes with the loss scale, inside the block."""
        self.prepare(device)
        scaling: contextlib.AbstractContextManager[Any] = (
            ScaledBackward(self.scaler.get_scale())
            if self.scaler is not None
            else contextlib.nullcontext()
        )
        with autocast(self.precision, device), scaling:
            yield

    def unscale(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Divide the gradients by the scale (call after any cross-rank reduction, so an
        overflow on one rank is seen by all)."""
        if self.scaler is not None and optimizer is not None:
            self.scaler.unscale_(optimizer)

    def is_overflow(self, loss: float, grads_finite: bool) -> bool:
        """A float16 overflow: finite loss, non-finite scaled gradients, and a scale that can
        still come down (below 1 the non-finite gradients are not the scale's doing)."""
        overflow = (
            self.scaler is not None
            and math.isfinite(loss)
            and not grads_finite
            and self.scaler.get_scale() >= 1.0
        )
        self.overflow_steps += int(overflow)
        return overflow

    def update(self) -> None:
        """Adjust the scale after a step (halve after an overflow, grow after good steps)."""
        if self.scaler is not None:
            self.scaler.update()

    def metrics(self) -> dict[str, float]:
        """The loss scale and the overflowed steps, for the metrics row (``"16-mixed"``)."""
        if self.scaler is None:
            return {}
        return {"loss_scale": self.scaler.get_scale(), "overflow_steps": self.overflow_steps}

    def state_dict(self) -> dict[str, Any] | None:
        """The loss scaler's state (``None`` without one)."""
        if self.scaler is None:
            return None
        return {"scaler": self.scaler.state_dict(), "overflow_steps": self.overflow_steps}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restore :meth:`state_dict`'s result (``None``: nothing to restore)."""
        if state is not None and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
            self.overflow_steps = state["overflow_steps"]


__all__ = [
    "AUTOCAST_DTYPES",
    "Precision",
    "PrecisionName",
    "ScaledBackward",
    "autocast",
    "check_precision_supported",
]
