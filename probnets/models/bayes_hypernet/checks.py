"""Argument and data checks of the Bayesian hypernetwork, with errors that name the argument.

Data may come as tensors or numpy arrays; arrays are converted to tensors on the model's
device, floating-point ones in the model's dtype (what a user of ``fit``/``predict`` expects).
Tensors are not converted: a floating-point tensor of another dtype than the model's is refused
with the conversion to use, since silently casting a user's tensor hides a dtype mistake.
"""

import math
import numbers
from collections.abc import Container
from typing import Union, cast

import numpy as np
import torch

#: Data the model accepts: a tensor, or a NumPy array (converted to the model's dtype).
TensorOrArray = Union[torch.Tensor, np.ndarray]


def check_choice(name: str, value: object, choices: Container[object]) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_positive(name: str, value: object, kind: type[float] | type[int] = float) -> None:
    """``value`` must be a finite positive number (``kind=float``) or a positive int
    (``kind=int``); numpy scalars count, ``bool`` does not."""
    base = numbers.Real if kind is float else numbers.Integral
    ok = isinstance(value, base) and not isinstance(value, (bool, np.bool_))
    number = cast(float, value)  # a real number when ok
    if not ok or not (number > 0 and math.isfinite(number)):
        what = "a positive number (and finite)" if kind is float else "a positive int"
        raise ValueError(f"{name} must be {what}, got {value!r}")


def check_widths(name: str, value: object) -> None:
    """``value`` must be a non-empty list or tuple of positive ints."""
    if not (
        isinstance(value, (list, tuple))
        and value
        and all(
            isinstance(w, numbers.Integral) and not isinstance(w, (bool, np.bool_)) and int(w) > 0
            for w in value
        )
    ):
        raise ValueError(f"{name} must be a non-empty list of positive int widths, got {value!r}")


def conversion_hint(name: str, dtype: torch.dtype) -> str:
    """How to turn ``name`` into a tensor of ``dtype``."""
    short = {
        torch.float32: "float",
        torch.float64: "double",
        torch.float16: "half",
        torch.bfloat16: "bfloat16",
        torch.int64: "long",
    }.get(dtype)
    return f"{name}.{short}()" if short else f"{name}.to({dtype})"


def as_tensor(name: str, value: TensorOrArray, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a tensor: a numpy array is converted (on ``like``'s device, in its dtype
    if floating-point), a tensor is returned as it is; anything else is refused."""
    if isinstance(value, np.ndarray):
        tensor = torch.as_tensor(value, device=like.device)
        return tensor.to(like.dtype) if tensor.is_floating_point() else tensor
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or a numpy array, got {type(value).__name__}"
        )
    return value


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Refuse NaN and infinite values, saying how many rows hold them."""
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor.reshape(len(tensor), -1))).any(-1).sum().item()
        raise ValueError(f"{name} holds NaN or infinite values ({bad} of {len(tensor)} rows)")


def check_float_like(name: str, tensor: torch.Tensor, like: torch.Tensor) -> None:
    """``tensor`` must be floating-point in ``like``'s dtype (the model's)."""
    if not tensor.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got {tensor.dtype}; convert "
            f"it with {conversion_hint(name, like.dtype)}"
        )
    if tensor.dtype != like.dtype:
        raise TypeError(
            f"{name} has dtype {tensor.dtype} but the model computes in {like.dtype}; pass "
            f"{conversion_hint(name, like.dtype)} or convert the model with "
            f"model.{conversion_hint('', tensor.dtype)[1:]}"
        )
