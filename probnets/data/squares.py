"""A tiny multi-object scene set: bright squares on a dark canvas, for fast AIR checks."""

import torch


def squares(
    n: int, size: int = 24, side: int = 6, max_objects: int = 2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` canvases with 0..``max_objects`` non-overlapping ``side``-pixel squares of
    intensity 0.9 on a ``size``x``size`` canvas (counts uniform; chance count accuracy about
    ``1 / (max_objects + 1)``).

    :returns: ``(images (n, size, size) float32 in [0, 1], counts (n,) int64)``.
    """
    generator = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_objects + 1, (n,), generator=generator)
    images = torch.zeros(n, size, size)
    for i in range(n):
        placed = 0
        while placed < counts[i]:
            x, y = torch.randint(0, size - side + 1, (2,), generator=generator).tolist()
            if images[i, y : y + side, x : x + side].sum() == 0:
                images[i, y : y + side, x : x + side] = 0.9
                placed += 1
    return images, counts
