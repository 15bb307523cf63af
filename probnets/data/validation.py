"""Input checks shared by models and commands: bad data fails early and says what was expected."""

from typing import Optional, Union

import torch


def check_images(images: torch.Tensor, name: str = "images",
                 size: Optional[Union[int, tuple[int, int]]] = None,
                 channels: bool = False) -> torch.Tensor:
    """Check a float image batch: a tensor of shape (N, H, W) (or (N, C, H, W) with
    ``channels=True``), finite, with values in [0, 1], and of spatial ``size`` when given.

    Returns ``images`` unchanged so calls can be chained.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor with values in [0, 1], got dtype "
            f"{images.dtype} (divide uint8 images by 255)")
    ndim = 4 if channels else 3
    layout = "(N, C, H, W)" if channels else "(N, H, W)"
    if images.dim() != ndim:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(images.shape)}")
    if size is not None:
        height, width = (size, size) if isinstance(size, int) else size
        if tuple(images.shape[-2:]) != (height, width):
            raise ValueError(
                f"{name} must be {height}x{width} images, got {tuple(images.shape[-2:])} "
                f"(full shape {tuple(images.shape)})")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"{name} must have values in [0, 1], got range [{images.min().item():.4g}, "
            f"{images.max().item():.4g}]")
    return images


def check_labels(labels: torch.Tensor, num_examples: int, name: str = "labels",
                 num_classes: Optional[int] = None) -> torch.Tensor:
    """Check integer labels of shape (N,) matching ``num_examples`` (and ``num_classes``)."""
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point():
        raise TypeError(
            f"{name} must be an integer tensor, got {getattr(labels, 'dtype', type(labels))}"
        )
    if labels.shape != (num_examples,):
        raise ValueError(f"{name} must have shape ({num_examples},), got {tuple(labels.shape)}")
    if num_classes is not None and labels.numel() and (
            labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes - 1}], got range "
            f"[{labels.min().item()}, {labels.max().item()}]")
    return labels
