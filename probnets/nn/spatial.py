"""A spatial transformer restricted to scale and translation (Jaderberg et al. 2015), as AIR
uses it to write objects onto a canvas and to read glimpses back.

A window placement ``z_where = (s, x, y)`` is the affine map from canvas coordinates to window
coordinates, both normalized to ``[-1, 1]``:

.. math::

    q = s\\,p + (x, y), \\qquad
    A(z_{\\rm where}) = \\begin{pmatrix} s & 0 & x \\\\ 0 & s & y \\end{pmatrix}.

:func:`place_window` samples the window at ``A p`` for every canvas pixel ``p`` (so an object
covers a fraction ``1/s`` of the canvas side, centred at ``(-x/s, -y/s)``); :func:`extract_window`
samples the canvas at the inverse map ``p = (q - (x, y)) / s`` for every window pixel ``q``.
Outside the window or canvas the value is zero (``padding_mode="zeros"``).

``align_corners`` is always passed explicitly to :func:`torch.nn.functional.affine_grid` and
:func:`~torch.nn.functional.grid_sample` (their default changed in PyTorch 1.3 and they warn
otherwise); with ``False`` (the default here) ``-1`` and ``1`` are the outer edges of the border
pixels, so a window of any size maps to the same region.

The inverse divides by ``s``; a scale within ``min_scale`` of zero (a guide can sample one) is
replaced by ``±min_scale`` so the glimpse stays finite.
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_SCALE = 1e-2


def _check_z_where(z_where: Any, batch: int) -> None:
    if not isinstance(z_where, torch.Tensor) or z_where.dim() != 2 or z_where.shape[-1] != 3:
        shape = tuple(z_where.shape) if isinstance(z_where, torch.Tensor) else type(z_where)
        raise ValueError(f"z_where must have shape (N, 3) holding (s, x, y), got {shape}")
    if z_where.shape[0] != batch:
        raise ValueError(f"z_where has {z_where.shape[0]} rows but the images/windows have {batch}")


def affine_matrix(z_where: Tensor) -> Tensor:
    """``(N, 3)`` placements ``(s, x, y)`` to ``(N, 2, 3)`` matrices ``[[s, 0, x], [0, s, y]]``."""
    s, x, y = z_where.unbind(-1)
    zero = torch.zeros_like(s)
    return torch.stack([s, zero, x, zero, s, y], dim=-1).reshape(-1, 2, 3)


def guard_scale(s: Tensor, min_scale: float = MIN_SCALE) -> Tensor:
    """``s`` with values closer than ``min_scale`` to zero moved to ``±min_scale`` (sign kept,
    zero goes to ``+min_scale``)."""
    sign = torch.where(s < 0, -torch.ones_like(s), torch.ones_like(s))
    return torch.where(s.abs() < min_scale, sign * min_scale, s)


def inverse_z_where(z_where: Tensor, min_scale: float = MIN_SCALE) -> Tensor:
    """The placement of the inverse map: ``(s, x, y) -> (1/s, -x/s, -y/s)``, with ``s`` guarded
    by :func:`guard_scale`."""
    s = guard_scale(z_where[..., :1], min_scale)
    return torch.cat([torch.ones_like(s), -z_where[..., 1:]], dim=-1) / s


def place_window(
    windows: Tensor, z_where: Tensor, image_size: int, align_corners: bool = False
) -> Tensor:
    """Write ``windows`` ``(N, w, w)`` onto zero canvases ``(N, H, H)`` (``H = image_size``)
    at the placements ``z_where`` ``(N, 3)``."""
    if windows.dim() != 3:
        raise ValueError(f"windows must have shape (N, w, w), got {tuple(windows.shape)}")
    n = windows.shape[0]
    _check_z_where(z_where, n)
    grid = F.affine_grid(
        affine_matrix(z_where), [n, 1, image_size, image_size], align_corners=align_corners
    )
    out = F.grid_sample(
        windows.unsqueeze(1),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=align_corners,
    )
    return out.squeeze(1)


def extract_window(
    images: Tensor,
    z_where: Tensor,
    window_size: int,
    align_corners: bool = False,
    min_scale: float = MIN_SCALE,
) -> Tensor:
    """Read ``(N, w, w)`` glimpses (``w = window_size``) from ``images`` ``(N, H, H)`` at the
    placements ``z_where``: the inverse of :func:`place_window`."""
    if images.dim() != 3:
        raise ValueError(f"images must have shape (N, H, W), got {tuple(images.shape)}")
    n = images.shape[0]
    _check_z_where(z_where, n)
    theta = affine_matrix(inverse_z_where(z_where, min_scale))
    grid = F.affine_grid(theta, [n, 1, window_size, window_size], align_corners=align_corners)
    out = F.grid_sample(
        images.unsqueeze(1),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=align_corners,
    )
    return out.squeeze(1)


def window_box(z_where: Tensor, image_size: int, min_scale: float = MIN_SCALE) -> Tensor:
    """Pixel boxes ``(x_min, y_min, x_max, y_max)`` ``(..., 4)`` covered by windows placed at
    ``z_where`` ``(..., 3)`` on an ``image_size`` canvas (``align_corners=False`` convention)."""
    s = guard_scale(z_where[..., 0], min_scale)
    x, y = z_where[..., 1], z_where[..., 2]

    def to_pixels(u: Tensor) -> Tensor:
        return (u + 1) / 2 * image_size

    lo_x, hi_x = to_pixels((-1 - x) / s), to_pixels((1 - x) / s)
    lo_y, hi_y = to_pixels((-1 - y) / s), to_pixels((1 - y) / s)
    return torch.stack(
        [
            torch.minimum(lo_x, hi_x),
            torch.minimum(lo_y, hi_y),
            torch.maximum(lo_x, hi_x),
            torch.maximum(lo_y, hi_y),
        ],
        dim=-1,
    )


__all__ = [
    "MIN_SCALE",
    "affine_matrix",
    "extract_window",
    "guard_scale",
    "inverse_z_where",
    "place_window",
    "window_box",
]
