"""A 1-D regression problem with a gap in the inputs, for looking at epistemic uncertainty."""

import torch

GAP = (-1.0, 1.0)
DATA_RANGE = (-3.0, 3.0)


def gap_function(x: torch.Tensor) -> torch.Tensor:
    """The noiseless target, :math:`\\sin(x)`."""
    return torch.sin(x)


def gap_regression(
    num_points: int = 120,
    noise: float = 0.1,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` with ``x`` uniform on ``[-3, -1] ∪ [1, 3]`` (no data in the gap ``(-1, 1)``),
    ``y = sin(x) + noise * ε``; ``x`` has shape ``(N, 1)``, ``y`` ``(N,)``. Half the points fall
    on each side; drawn from a generator seeded with ``seed``."""
    if not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"num_points must be an int >= 2, got {num_points!r}")
    g = torch.Generator().manual_seed(seed)
    half = num_points // 2
    x = torch.cat(
        [torch.rand(half, generator=g) * 2 - 3, torch.rand(num_points - half, generator=g) * 2 + 1]
    )
    y = gap_function(x) + noise * torch.randn(num_points, generator=g)
    return (x.unsqueeze(-1).to(device=device, dtype=dtype), y.to(device=device, dtype=dtype))


def gap_regions(
    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> dict[str, torch.Tensor]:
    """Evaluation inputs ``{"data": ..., "gap": ..., "outside": ...}``, each ``(G, 1)``: on the
    training range, inside the gap, and beyond the data (``|x|`` in ``[4, 6]``)."""

    def grid(*spans: tuple[float, float]) -> torch.Tensor:
        return (
            torch.cat([torch.linspace(a, b, 25) for a, b in spans])
            .unsqueeze(-1)
            .to(device=device, dtype=dtype)
        )

    return {
        "data": grid((-2.9, -1.1), (1.1, 2.9)),
        "gap": grid((-0.5, 0.5)),
        "outside": grid((-6.0, -4.0), (4.0, 6.0)),
    }
