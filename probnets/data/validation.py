"""Input checks shared by models, modules and commands: bad data fails early and says what
was expected.

Each check raises a ``TypeError`` (wrong kind or dtype, with the cast that fixes it) or a
``ValueError`` (wrong shape, size or values) whose message starts with the argument's name.
"""

import math
import numbers
from typing import Any, Optional, Union

import torch

_CASTS = {
    torch.float16: ".half()",
    torch.bfloat16: ".bfloat16()",
    torch.float32: ".float()",
    torch.float64: ".double()",
    torch.int64: ".long()",
}


def cast_hint(dtype: torch.dtype) -> str:
    """The tensor method that casts to ``dtype`` (``.float()``, ``.double()``, ...)."""
    return _CASTS.get(dtype, f".to({dtype})")


def _kind(value: Any) -> str:
    kind = type(value).__name__
    return f"numpy.{kind}" if type(value).__module__ == "numpy" else kind


def check_size(name: str, value: Any, minimum: int = 1) -> int:
    """Check a size or count given to a constructor: an integer (not a bool) ``>= minimum``."""
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {expected}, got {_kind(value)} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_tensor(
    name: str, value: Any, like: torch.Tensor, like_name: Optional[str] = None
) -> torch.Tensor:
    """Check an input of a module's ``forward``: a tensor with the dtype and device of
    ``like``, a parameter of the module (or the argument ``like_name``). Like torch's own
    layers, NumPy arrays are refused, here with the conversion that fixes the call; so is a
    dtype other than ``like``'s, with the cast to apply to the input (or to the module)."""
    source = "the module's parameters" if like_name is None else like_name
    if not isinstance(value, torch.Tensor):
        hint = ""
        if type(value).__module__ == "numpy":
            hint = f"; convert it with torch.as_tensor({name}, dtype={like.dtype})"
        raise TypeError(f"{name} must be a torch.Tensor, got {_kind(value)}{hint}")
    if value.dtype != like.dtype:
        module_cast = (
            f", or the module with {cast_hint(value.dtype)}"
            if like_name is None and value.is_floating_point()
            else ""
        )
        raise TypeError(
            f"{name} must have dtype {like.dtype} (that of {source}), got "
            f"{value.dtype}; convert it with {name}{cast_hint(like.dtype)}"
            f"{module_cast}"
        )
    if value.device != like.device:
        raise ValueError(
            f"{name} must be on {like.device} (the device of {source}), got "
            f"{value.device}; move it with {name}.to({str(like.device)!r})"
        )
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Check that a floating tensor holds no NaN or infinite value."""
    if value.numel() and not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(
            f"{name} must be finite, got {bad} NaN or infinite values of {value.numel()}"
        )
    return value


def check_images(
    images: torch.Tensor,
    name: str = "images",
    size: Optional[Union[int, tuple[int, int]]] = None,
    channels: bool = False,
) -> torch.Tensor:
    """Check a float image batch: a tensor of shape (N, H, W) (or (N, C, H, W) with
    ``channels=True``), finite, with values in [0, 1], and of spatial ``size`` when given.

    Returns ``images`` unchanged so calls can be chained.
    """
    if not isinstance(images, torch.Tensor):
        hint = (
            f"; convert it with torch.as_tensor({name})"
            if type(images).__module__ == "numpy"
            else ""
        )
        raise TypeError(f"{name} must be a torch.Tensor, got {_kind(images)}{hint}")
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor with values in [0, 1], got dtype "
            f"{images.dtype} (divide uint8 images by 255, e.g. {name}.float() / 255)"
        )
    ndim = 4 if channels else 3
    layout = "(N, C, H, W)" if channels else "(N, H, W)"
    if images.dim() != ndim:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(images.shape)}")
    if size is not None:
        height, width = (size, size) if isinstance(size, int) else size
        if tuple(images.shape[-2:]) != (height, width):
            raise ValueError(
                f"{name} must be {height}x{width} images, got {tuple(images.shape[-2:])} "
                f"(full shape {tuple(images.shape)})"
            )
    if not images.numel():
        return images
    # one pass over the batch (this runs on every training step): a NaN propagates to both
    # extremes and an infinity is one of them
    low, high = (float(v) for v in torch.aminmax(images))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if low < 0 or high > 1:
        raise ValueError(f"{name} must have values in [0, 1], got range [{low:.4g}, {high:.4g}]")
    return images


def check_labels(
    labels: torch.Tensor, num_examples: int, name: str = "labels", num_classes: Optional[int] = None
) -> torch.Tensor:
    """Check integer labels of shape (N,) matching ``num_examples`` (and ``num_classes``)."""
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point():
        raise TypeError(
            f"{name} must be an integer tensor, got {getattr(labels, 'dtype', type(labels))}"
        )
    if labels.shape != (num_examples,):
        raise ValueError(f"{name} must have shape ({num_examples},), got {tuple(labels.shape)}")
    if (
        num_classes is not None
        and labels.numel()
        and (labels.min() < 0 or labels.max() >= num_classes)
    ):
        raise ValueError(
            f"{name} must lie in [0, {num_classes - 1}], got range "
            f"[{labels.min().item()}, {labels.max().item()}]"
        )
    return labels
