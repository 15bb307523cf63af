"""
Checks of what users hand to gated networks: sizes, and the data of ``fit`` / ``predict``.

Bad input fails before any training step, with a ``TypeError`` (wrong kind or dtype) or a
``ValueError`` (wrong shape, range or values) that names the argument, says what was expected
and what was given. NumPy arrays are accepted and converted to the network's dtype and
device, as a user coming from NumPy would expect; torch tensors are never cast silently,
because a silent cast hides a dtype mismatch elsewhere in the user's pipeline.
"""

import numbers
from typing import Union

import numpy as np
import torch

#: Data a gated network accepts: a tensor of its dtype, or a NumPy array (converted).
TensorOrArray = Union[torch.Tensor, np.ndarray]

_CAST_METHODS = {
    torch.float16: ".half()",
    torch.bfloat16: ".bfloat16()",
    torch.float32: ".float()",
    torch.float64: ".double()",
    torch.int64: ".long()",
}


def cast_hint(dtype: torch.dtype) -> str:
    """The tensor method that casts to ``dtype`` (``.float()``, ``.double()``, ...)."""
    return _CAST_METHODS.get(dtype, f".to({dtype})")


def check_count(name: str, value: object, low: int, expected: str | None = None) -> int:
    """``value`` as an ``int >= low``; bools and non-integers raise. ``expected`` words the
    requirement in the message (default ``"an int >= low"``)."""
    expected = expected or f"an int >= {low}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return int(value)


def check_positive(name: str, value: object) -> float:
    """``value`` as a finite float ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive number, got {type(value).__name__}")
    if not (0.0 < float(value) < float("inf")):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


def _from_numpy(
    name: str,
    value: np.ndarray,
    dtype: torch.dtype,
    device: torch.device | str | None,
    integer: bool,
) -> torch.Tensor:
    kind = value.dtype.kind
    if integer and kind not in "iub":
        raise TypeError(
            f"{name}: expected integer class labels, got a NumPy array of dtype {value.dtype} "
            "(convert with .astype(np.int64))"
        )
    if kind not in "iubf":
        raise TypeError(f"{name}: expected a numeric NumPy array, got dtype {value.dtype}")
    return torch.as_tensor(value, dtype=dtype, device=device)


def as_float_tensor(
    name: str, value: TensorOrArray, dtype: torch.dtype, device: torch.device | str | None
) -> torch.Tensor:
    """
    A floating tensor of ``dtype``: NumPy arrays are converted (to ``dtype`` on ``device``);
    tensors must already have ``dtype`` (the error says which cast to call); values must be
    finite.
    """
    if isinstance(value, np.ndarray):
        value = _from_numpy(name, value, dtype, device, integer=False)
    elif not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name}: expected a torch.Tensor or NumPy array, got {type(value).__name__}"
        )
    elif value.dtype != dtype:
        what = "floating" if value.is_floating_point() else "non-floating"
        raise TypeError(
            f"{name}: expected a {dtype} tensor (the network's dtype), got {what} {value.dtype};"
            f" convert it with {name}{cast_hint(dtype)} (or the network with "
            f"net{cast_hint(value.dtype)} if it is floating)"
        )
    if value.numel() and not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(
            f"{name}: expected finite values, got {bad} NaN or infinite of {value.numel()}"
        )
    return value


def as_label_tensor(
    name: str, value: TensorOrArray, num_classes: int, device: torch.device | str | None
) -> torch.Tensor:
    """int64 class labels in ``[0, num_classes)``; NumPy integer arrays are converted."""
    if isinstance(value, np.ndarray):
        value = _from_numpy(name, value, torch.int64, device, integer=True)
    elif not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name}: expected a torch.Tensor or NumPy array, got {type(value).__name__}"
        )
    elif value.dtype != torch.int64:
        raise TypeError(
            f"{name}: expected int64 class labels, got {value.dtype}; convert them with "
            f"{name}.long()"
        )
    if value.numel() and (value.min() < 0 or value.max() >= num_classes):
        raise ValueError(
            f"{name}: expected class labels in [0, {num_classes - 1}], got range "
            f"[{int(value.min())}, {int(value.max())}]"
        )
    return value


__all__ = ["as_float_tensor", "as_label_tensor", "cast_hint", "check_count", "check_positive"]
